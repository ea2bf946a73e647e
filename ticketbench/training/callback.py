"""The pruning/rewinding callback: masks enforced after every optimizer step, θ_k captured at
the rewind step, and the weights at minimum validation loss kept for the early-stop test, for
each of the K replicas being trained."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import lightning as L
import torch
from torch.utils.hooks import RemovableHandle

from ticketbench.faults import fault_point
from ticketbench.pruning.masks import Masks
from ticketbench.training.replicas import Replicas, State


@dataclass
class ReplicaPoints:
    """What the callback recorded for one replica."""

    rewind_state: State | None = None
    rewind_optimizer_state: dict | None = None
    best_step: int | None = None
    best_val_loss: float = math.inf
    best_val_acc: float = math.nan
    best_state: State | None = None
    diverged: bool = False


@dataclass(eq=False)
class PruneRewind(L.Callback):
    """Keeps the pruned weights at exactly zero and records the points of interest of a level.

    - Masks (one per replica): applied at the start of training and re-applied in place after
      every optimizer step by one fused ``torch._foreach_mul_`` (an optimizer step post-hook), so
      weight decay and momentum can never revive a pruned weight.
    - Rewind point: when ``capture_step`` is reached, each replica's parameters and buffers are
      copied (θ_k) with its optimizer state; a level that resumes optimizer states gets them as
      ``initial_optimizer_states``, loaded before its first step.
    - Early stop: after each validation on the ``eval_every`` cadence, each replica keeps the step
      and weights of its lowest validation loss so far (the earliest one on ties). A NaN or
      infinite validation loss, or training loss of a block of steps, marks a replica as diverged;
      training stops when all have.
    """

    masks: list[Masks]
    eval_every: int
    capture_step: int | None = None
    initial_optimizer_states: list[dict] | None = None
    points: list[ReplicaPoints] = field(default_factory=list)
    _handles: list[RemovableHandle] = field(default_factory=list, repr=False)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model: Replicas = pl_module.model
        self.points = [ReplicaPoints() for _ in range(model.size)]
        stacked = model.stack(self.masks)
        params = [model.tensor(n) for n in stacked]
        factors = [m.to(device=p.device, dtype=p.dtype) for m, p in zip(stacked.values(), params, strict=True)]

        def enforce(*_: object) -> None:
            with torch.no_grad():
                torch._foreach_mul_(params, factors)

        enforce()
        if self.initial_optimizer_states is not None:
            trainer.optimizers[0].load_state_dict(model.stack_optimizer_state(self.initial_optimizer_states))
        self._handles = [opt.register_step_post_hook(enforce) for opt in trainer.optimizers]
        self._maybe_capture(pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: object) -> None:
        self._maybe_capture(pl_module)
        # one host read per block of steps: a non-finite training loss is divergence on every task,
        # with or without a validation split
        for point, loss in zip(self.points, pl_module.train_loss.tolist(), strict=True):
            point.diverged = point.diverged or not math.isfinite(loss)
        self._stop_when_all_diverged(trainer)

    def _stop_when_all_diverged(self, trainer: L.Trainer) -> None:
        if all(p.diverged for p in self.points):
            trainer.should_stop = True

    def _maybe_capture(self, pl_module: L.LightningModule) -> None:
        if self.capture_step is None or pl_module.step != self.capture_step or self.points[0].rewind_state is not None:
            return
        model: Replicas = pl_module.model
        optimizer_states = model.split_optimizer_state(pl_module.trainer.optimizers[0].state_dict())
        for k, point in enumerate(self.points):
            point.rewind_state, point.rewind_optimizer_state = model.state(k), optimizer_states[k]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = pl_module.step
        if trainer.sanity_checking or (step % self.eval_every and step != pl_module.blocks.stop):
            return
        fault_point(f"level {pl_module.level} step {step}")
        if not pl_module.data.y_val.shape[1]:  # no validation split
            return
        losses, accs = pl_module.val_loss.tolist(), pl_module.val_acc.tolist()
        for k, (point, loss, acc) in enumerate(zip(self.points, losses, accs, strict=True)):
            if point.diverged:
                continue
            if not math.isfinite(loss):
                point.diverged = True
            elif loss < point.best_val_loss:
                point.best_step, point.best_val_loss, point.best_val_acc = step, loss, acc
                point.best_state = pl_module.model.state(k)
        self._stop_when_all_diverged(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
