"""The public :class:`~ticketbench.LotteryTicket` callback specialised to the suite's
:class:`~ticketbench.training.module.Classifier`, which trains K stacked replicas at once: one
mask, rewind point and early-stop point per replica."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import lightning as L
import torch

from ticketbench.callback import LotteryTicket
from ticketbench.faults import fault_point
from ticketbench.pruning.masks import Masks
from ticketbench.storage.schema import finite_or_none
from ticketbench.training.replicas import Replicas, State

Validations = list[tuple[int, float | None, float | None]]  # (step, loss, accuracy) of each validation
PREFIX = "model.net."  # where the Classifier keeps the replicas' (stacked) tensors


@dataclass
class ReplicaPoints:
    """What the callback recorded for one replica."""

    rewind_state: State | None = None
    rewind_optimizer_state: dict | None = None
    best_step: int | None = None
    best_val_loss: float = math.inf
    best_val_acc: float = math.nan
    best_state: State | None = None
    best_test_acc: float | None = None  # the test accuracy of the early-stop weights, once measured
    diverged: bool = False
    # (step, loss, accuracy) of every validation of the level so far, non-finite values as None;
    # None when a part of it is unknown (a level resumed from a checkpoint that did not keep it)
    validations: Validations | None = field(default_factory=list)


def _like_parameters(optimizer: torch.optim.Optimizer) -> None:
    """Lay out every per-entry state tensor as its parameter is laid out (a fused optimizer step
    walks a parameter and its moments in memory order: a channels-last weight needs channels-last
    moments)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param).copy_(value)


class ReplicaTickets(LotteryTicket):
    """:class:`LotteryTicket` over the K replicas of a ``Classifier``.

    The masks, their enforcement after every optimizer step and the step count are the parent's,
    applied to the stacked tensors (replica k's mask is slice k). What differs is per replica:
    θ_k and the optimizer state at the rewind step are split into one state per replica; the
    early-stop point is each replica's lowest validation loss (the earliest on ties), read from
    the module's per-replica ``val_loss`` / ``val_acc`` after each validation, which are kept
    as the replica's validation curve; a NaN or infinite
    validation loss, or mean training loss of a block of steps, marks a replica as diverged, and
    training stops when all have. ``initial_optimizer_states`` (one per replica) are loaded before
    the first step of a level that resumes them. It keeps no Lightning checkpoint state: a level
    stopped midway resumes from the suite's own level checkpoint (ticketbench.training.level_checkpoint),
    which restores :attr:`points`.
    """

    def __init__(self, model: Replicas, masks: list[Masks], *, start_step: int, rewind_step: int | None,
                 initial_optimizer_states: list[dict] | None = None) -> None:
        stacked = {PREFIX + n: m for n, m in model.stack(masks).items()}
        super().__init__(list(stacked), masks=stacked, rewind_step=rewind_step, start_step=start_step)
        self.model, self.initial_optimizer_states = model, initial_optimizer_states
        self.points = [ReplicaPoints() for _ in range(model.size)]

    @property
    def captured(self) -> bool:
        return self.points[0].rewind_state is not None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.initial_optimizer_states is not None:
            optimizer = trainer.optimizers[0]
            optimizer.load_state_dict(self.model.stack_optimizer_state(self.initial_optimizer_states))
            _like_parameters(optimizer)
        super().on_train_start(trainer, pl_module)

    def _capture(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        optimizer_states = self.model.split_optimizer_state(trainer.optimizers[0].state_dict())
        for k, point in enumerate(self.points):
            point.rewind_state, point.rewind_optimizer_state = self.model.state(k), optimizer_states[k]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: object) -> None:
        # one host read per block of steps: a non-finite training loss is divergence on every task,
        # with or without a validation split
        for point, loss in zip(self.points, pl_module.train_loss.tolist(), strict=True):
            point.diverged = point.diverged or not math.isfinite(loss)
        self._stop_when_all_diverged(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fault_point(f"level {pl_module.level} step {self.step}")
        if not pl_module.data.y_val.shape[1]:  # no validation split
            return
        losses, accs = pl_module.val_loss.tolist(), pl_module.val_acc.tolist()
        for k, (point, loss, acc) in enumerate(zip(self.points, losses, accs, strict=True)):
            if point.diverged:
                continue
            if point.validations is not None:
                point.validations.append((self.step, finite_or_none(loss), finite_or_none(acc)))
            if not math.isfinite(loss):
                point.diverged = True
            elif loss < point.best_val_loss:
                point.best_step, point.best_val_loss, point.best_val_acc = self.step, loss, acc
                point.best_state, point.best_test_acc = self.model.state(k), None
        self._stop_when_all_diverged(trainer)

    def _stop_when_all_diverged(self, trainer: L.Trainer) -> None:
        if all(p.diverged for p in self.points):
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if all(p.diverged for p in self.points):  # stopped before the rewind step: nothing to rewind to
            self._remove_hooks()
            return
        super().on_train_end(trainer, pl_module)
