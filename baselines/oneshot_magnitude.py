"""One-shot magnitude pruning after training, with rewinding: train the dense network once, keep
the largest |w| of its trained weights ranked across all layers, rewind the kept weights to the
initialisation (or rewind point) and train again (Frankle & Carbin, "The Lottery Ticket
Hypothesis", ICLR 2019, one-shot pruning; ranked globally as in Frankle et al., ICLR 2021)."""

from __future__ import annotations

from ticketbench.pruning.methods import PruneRequest, Scores, method


@method("oneshot-magnitude", scope="global", after_training=True)
def oneshot_magnitude(request: PruneRequest) -> Scores:
    assert request.trained is not None, "after_training methods receive the trained dense network"
    return {n: request.trained.get_parameter(n).detach().abs() for n in request.masks}
