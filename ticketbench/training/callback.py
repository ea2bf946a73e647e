"""The pruning/rewinding callback: masks enforced after every optimizer step, θ_k captured at
the rewind step, and the weights at minimum validation loss kept for the early-stop test."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import lightning as L
import torch
from torch.utils.hooks import RemovableHandle

from ticketbench.pruning.masks import Masks, apply_masks

State = dict[str, torch.Tensor]


def snapshot(module: torch.nn.Module) -> State:
    """A detached copy of every parameter and buffer."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@dataclass(eq=False)
class PruneRewind(L.Callback):
    """Keeps the pruned weights at exactly zero and records the points of interest of a level.

    - Masks: applied at the start of training and re-applied in place after every optimizer
      step by one fused ``torch._foreach_mul_`` (an optimizer step post-hook), so weight decay
      and momentum can never revive a pruned weight.
    - Rewind point: when ``capture_step`` is reached, the model's parameters and buffers are
      copied into :attr:`rewind_state` (θ_k) and the optimizer state into
      :attr:`rewind_optimizer_state`; a level that resumes an optimizer state gets it as
      ``initial_optimizer_state``, loaded before its first step.
    - Early stop: after each validation on the ``eval_every`` cadence, the step and weights of the
      lowest validation loss so far are kept (the earliest one on ties). NaN or infinite
      validation loss marks the level as diverged.
    """

    masks: Masks
    eval_every: int
    capture_step: int | None = None
    initial_optimizer_state: dict | None = None
    rewind_state: State | None = None
    rewind_optimizer_state: dict | None = None
    best_step: int | None = None
    best_val_loss: float = math.inf
    best_val_acc: float = math.nan
    best_state: State | None = None
    diverged: bool = False
    _handles: list[RemovableHandle] = field(default_factory=list, repr=False)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        apply_masks(model, self.masks)
        if self.initial_optimizer_state is not None:
            trainer.optimizers[0].load_state_dict(self.initial_optimizer_state)
        params = [model.get_parameter(n) for n in self.masks]
        factors = [m.to(device=p.device, dtype=p.dtype) for m, p in zip(self.masks.values(), params, strict=True)]

        def enforce(*_: object) -> None:
            with torch.no_grad():
                torch._foreach_mul_(params, factors)

        self._handles = [opt.register_step_post_hook(enforce) for opt in trainer.optimizers]
        self._maybe_capture(pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: object) -> None:
        self._maybe_capture(pl_module)

    def _maybe_capture(self, pl_module: L.LightningModule) -> None:
        if self.capture_step is not None and self.rewind_state is None and pl_module.step == self.capture_step:
            self.rewind_state = snapshot(pl_module.model)
            self.rewind_optimizer_state = copy.deepcopy(pl_module.trainer.optimizers[0].state_dict())

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = pl_module.step
        if trainer.sanity_checking or (step % self.eval_every and step != pl_module.blocks.stop):
            return
        if "val/loss" not in trainer.callback_metrics:  # no validation split
            return
        loss = float(trainer.callback_metrics["val/loss"])
        if not math.isfinite(loss):
            self.diverged = True
            trainer.should_stop = True
        elif loss < self.best_val_loss:
            self.best_step, self.best_val_loss = step, loss
            self.best_val_acc = float(trainer.callback_metrics["val/acc"])
            self.best_state = snapshot(pl_module.model)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
