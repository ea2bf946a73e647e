"""Magnitude pruning at initialisation: keep the largest |w| of the initial weights, ranked across
all layers (the magnitude-at-init baseline of Frankle et al., "Pruning Neural Networks at
Initialization: Why Are We Missing the Mark?", ICLR 2021)."""

from __future__ import annotations

from ticketbench.pruning.methods import PruneRequest, Scores, method


@method("magnitude-init", scope="global")
def magnitude_at_init(request: PruneRequest) -> Scores:
    return {n: request.model.get_parameter(n).detach().abs() for n in request.masks}
