"""Random pruning, the control every pruning method must beat.

``random``: each layer keeps the target fraction of its weights, chosen uniformly at random (the
random baseline of Frankle et al., "Pruning Neural Networks at Initialization: Why Are We Missing
the Mark?", ICLR 2021). ``random-global``: the kept weights are drawn uniformly from all prunable
weights together, so layers keep the target fraction only in expectation.
"""

from __future__ import annotations

import torch

from ticketbench.pruning.methods import PruneRequest, Scores, method


def _uniform(request: PruneRequest) -> Scores:
    return {n: torch.rand(m.shape, generator=request.generator) for n, m in request.masks.items()}


method("random", scope="layerwise")(_uniform)
method("random-global", scope="global")(_uniform)
