"""SNIP: connection sensitivity at initialisation (Lee, Ajanthan & Torr, "SNIP: Single-shot Network
Pruning based on Connection Sensitivity", ICLR 2019).

The score of weight w is |g ⊙ w|, g the gradient of the cross-entropy loss on one batch of
``EXAMPLES_PER_CLASS`` training examples of each class, at the initial weights; the highest
scores are kept, ranked across all layers.
"""

from __future__ import annotations

import torch.nn.functional as F

from ticketbench.pruning.methods import PruneRequest, Scores, method

EXAMPLES_PER_CLASS = 10


@method("snip", scope="global")
def snip(request: PruneRequest) -> Scores:
    model = request.model
    x, y = request.per_class(EXAMPLES_PER_CLASS)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return {n: (model.get_parameter(n).grad * model.get_parameter(n)).detach().abs() for n in request.masks}
