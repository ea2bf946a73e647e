"""SynFlow: iterative synaptic flow pruning, data-free (Tanaka, Kunin, Yamins & Ganguli, "Pruning
neural networks without any data by iteratively conserving synaptic flow", NeurIPS 2020).

Every parameter is replaced by its absolute value, an all-ones input is passed forward, and
R = sum of the outputs; the score of weight w is |w ⊙ ∂R/∂w|. Pruning is global and iterative:
``ITERATIONS`` rounds with an exponential schedule, round i keeping density^(i / ITERATIONS) of
the weights, each round re-scoring the network masked by the previous one. In float64 (R is a
product over layers). BatchNorm layers run in eval mode so the statistics do not enter.
"""

from __future__ import annotations

import copy

import torch

from ticketbench.pruning.methods import Masks, PruneRequest, method
from ticketbench.pruning.select import prune_global

ITERATIONS = 100


def synflow_scores(model: torch.nn.Module, masks: Masks, input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """|w ⊙ ∂R/∂w| of the network with absolute weights, masked by ``masks``."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
        for n, m in masks.items():
            net.get_parameter(n).mul_(m)
    net.zero_grad()
    net(torch.ones((1, *input_shape), dtype=torch.float64)).sum().backward()
    return {n: (net.get_parameter(n).grad * net.get_parameter(n)).detach().abs() for n in masks}


@method("synflow", scope="global")
def synflow(request: PruneRequest) -> Masks:
    x, _ = request.examples(1)
    masks = request.masks
    total = sum(m.numel() for m in masks.values())
    for i in range(1, ITERATIONS + 1):
        scores = synflow_scores(request.model.cpu(), masks, tuple(x.shape[1:]))
        keep = round(request.density ** (i / ITERATIONS) * total)
        kept = sum(int(m.sum()) for m in masks.values())
        masks = prune_global(scores, masks, max(kept - keep, 0))
    return masks
