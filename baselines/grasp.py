"""GraSP: gradient signal preservation at initialisation (Wang, Zhang & Grosse, "Picking Winning
Tickets Before Training by Preserving Gradient Flow", ICLR 2020).

Sign convention. With g the loss gradient and H the Hessian at the initial weights w, the paper
scores each weight by S(-w) = -w ⊙ Hg (to first order, how removing the weight changes the
gradient norm) and removes the weights with the *highest* S, keeping the lowest. ticketbench keeps
the highest scores, so this method returns the negation, w ⊙ Hg: the kept set is the paper's.
Hg is the gradient of g_stopped · g; both gradients use ``EXAMPLES_PER_CLASS`` examples of each
class (as in the comparisons of the SynFlow paper) and logits divided by ``TEMPERATURE`` (the
authors' code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ticketbench.pruning.methods import PruneRequest, Scores, method

EXAMPLES_PER_CLASS = 10
TEMPERATURE = 200.0


@method("grasp", scope="global")
def grasp(request: PruneRequest) -> Scores:
    model = request.model
    params = [model.get_parameter(n) for n in request.masks]
    x, y = request.per_class(EXAMPLES_PER_CLASS)
    g = torch.autograd.grad(F.cross_entropy(model(x) / TEMPERATURE, y), params)
    grads = torch.autograd.grad(F.cross_entropy(model(x) / TEMPERATURE, y), params, create_graph=True)
    hg = torch.autograd.grad(sum((a.detach() * b).sum() for a, b in zip(g, grads, strict=True)), params)
    return {n: (p * h).detach() for n, p, h in zip(request.masks, params, hg, strict=True)}
