"""``LotteryTicket``: the pruning/rewinding Lightning callback for any LightningModule.

It keeps chosen parameters of the module under binary masks, captures the rewind point θ_k (every
parameter and buffer, and the optimizer state when asked) at optimizer step k, and keeps the
weights at the best value of a monitored metric (the early-stop point of the lottery-ticket
papers). It relies on nothing but Lightning's public hooks and the optimizers' step hooks, so it
works with automatic and manual optimization and under DDP: every rank trains under rank 0's
masks, and θ_k, the early-stop decision and its weights are rank 0's on every rank (BatchNorm
statistics, which DDP leaves to each rank, included).

    ticket = LotteryTicket(prune=["net.0.weight", "net.2.weight"], rewind_step=500, monitor="val_loss")
    trainer = L.Trainer(max_steps=5000, callbacks=[ticket])
    trainer.fit(module, datamodule)
    ticket.rewind_state, ticket.best_step, ticket.best_state    # θ_500, the early stop and its weights

A level of iterative magnitude pruning is one such fit: prune the final weights (see
:mod:`ticketbench.pruning.select`), load ``rewind_state`` into a fresh module, and fit again with
``masks=`` the new masks and ``start_step=k``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from copy import deepcopy
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ticketbench.errors import ArgumentTypeError, ConfigError, names, text, whole

Masks = dict[str, torch.Tensor]
State = dict[str, torch.Tensor]


def _cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else deepcopy(v)
            for k, v in state.items()}


def _shared_state(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
    """The module's parameters and buffers as rank 0 holds them, on every rank: under DDP the
    parameters agree across ranks, but BatchNorm statistics are each rank's own."""
    return trainer.strategy.broadcast(_cpu_copy(pl_module.state_dict()), src=0)


def _check_masks(masks: object) -> None:
    """Masks are bool tensors by parameter name."""
    if masks is None:
        return
    if not isinstance(masks, Mapping):
        raise ArgumentTypeError(f"LotteryTicket: masks must be bool tensors by parameter name, got "
                                f"{type(masks).__name__}")
    for name, mask in masks.items():
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise ArgumentTypeError(f"LotteryTicket: the mask of {name} must be a bool tensor, got "
                                    f"{getattr(mask, 'dtype', type(mask).__name__)}")


def _steps_of_fit(trainer: L.Trainer, pl_module: L.LightningModule) -> float:
    """The optimizer steps a fit takes at most (inf: not known before it runs). Under automatic
    optimization Lightning knows them from max_steps, or the epochs, the loader's length and
    gradient accumulation; a module that steps its optimizers itself may take several a batch."""
    if pl_module.automatic_optimization:
        return trainer.estimated_stepping_batches
    return trainer.max_steps if trainer.max_steps > 0 else math.inf


class LotteryTicket(L.Callback):
    """Masks, rewind point and early-stop weights for one fit of a LightningModule.

    Args:
        prune: the parameters to prune, by name relative to the module (``module.named_parameters()``),
            or a predicate ``(name, parameter) -> bool``.
        masks: the masks to train under (bool tensors by name, True = kept); all-True when omitted.
        rewind_step: capture θ_k after this many optimizer steps of the fit (0: at its start);
            None: no capture.
        rewind_optimizer: capture the state of every optimizer and learning-rate scheduler at step k
            too (``rewind_optimizer_state``, ``rewind_scheduler_state``; the schedulers after their
            step k, as the next step sees them).
        optimizer_state, scheduler_state: states to load into the fit's optimizers and schedulers
            (in ``configure_optimizers`` order) before its first step, e.g. those captured at step k
            by level 0, so that a rewound level continues momentum, Adam moments and step counts
            and the schedule from k; not loaded when the fit resumes from a Lightning checkpoint,
            which holds its own.
        start_step: the absolute step this fit starts from (a rewound level starts at k); the step
            count and the capture are absolute.
        monitor, mode: the metric in ``trainer.callback_metrics`` whose best value (``min`` or
            ``max``) marks the early-stop point; None: no early-stop point.
    """

    def __init__(self, prune: Iterable[str] | Callable[[str, nn.Parameter], bool], *,
                 masks: Masks | None = None, rewind_step: int | None = None, rewind_optimizer: bool = False,
                 start_step: int = 0, monitor: str | None = None, mode: str = "min",
                 optimizer_state: list[dict] | None = None, scheduler_state: list[dict] | None = None) -> None:
        owner = "LotteryTicket"
        if text(owner, "mode", mode) not in ("min", "max"):
            raise ConfigError(f"{owner}: mode must be 'min' or 'max', got {mode!r}")
        whole(owner, "start_step", start_step)
        if rewind_step is not None and whole(owner, "rewind_step", rewind_step) < start_step:
            raise ConfigError(f"{owner}: rewind_step {rewind_step} lies before start_step {start_step}")
        text(owner, "monitor", monitor, optional=True)
        for name, states in (("optimizer_state", optimizer_state), ("scheduler_state", scheduler_state)):
            if states is not None and not (isinstance(states, list) and all(isinstance(s, dict) for s in states)):
                raise ArgumentTypeError(f"{owner}: {name} must be a list of state dicts (one per {name[:-6]}), got "
                                        f"{type(states).__name__}")
        _check_masks(masks)
        self.prune = prune if callable(prune) else list(names(owner, "prune", prune))
        self.masks: Masks = dict(masks or {})
        self.rewind_step, self.rewind_optimizer, self.start_step = rewind_step, rewind_optimizer, start_step
        self.monitor, self.mode = monitor, mode
        self.step = start_step
        self.rewind_state: State | None = None
        self.rewind_optimizer_state: list[dict] | None = None
        self.rewind_scheduler_state: list[dict] | None = None
        self.optimizer_state, self.scheduler_state = optimizer_state, scheduler_state
        self._schedulers_due = False  # the optimizers' and schedulers' states at k wait for the batch's end
        self.best_step: int | None = None
        self.best_value = math.inf if mode == "min" else -math.inf
        self.best_state: State | None = None
        self._params: list[torch.Tensor] = []
        self._factors: list[torch.Tensor] = []
        self._handles: list[RemovableHandle] = []

    # -- set-up ------------------------------------------------------------------------------

    def names(self, module: nn.Module) -> list[str]:
        """The pruned parameters' names, checked against ``module``."""
        params = dict(module.named_parameters())
        if callable(self.prune):
            chosen = [n for n, p in params.items() if self.prune(n, p)]
            if not chosen:
                raise ConfigError("LotteryTicket: the prune predicate selects no parameter of the module")
            return chosen
        for name in self.prune:
            if name not in params:
                buffers = dict(module.named_buffers())
                what = "a buffer, not a parameter" if name in buffers else "not a parameter of the module"
                raise ConfigError(f"LotteryTicket: {name!r} is {what}; parameters: {', '.join(params)}")
        return list(self.prune)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        names = self.names(pl_module)
        for name in names:
            shape = pl_module.get_parameter(name).shape
            mask = self.masks.setdefault(name, torch.ones(shape, dtype=torch.bool))
            if mask.shape != shape or mask.dtype != torch.bool:
                raise ConfigError(f"LotteryTicket: the mask of {name} is {mask.dtype} {tuple(mask.shape)}, the "
                                  f"parameter {tuple(shape)}; masks are bool tensors of the parameter's shape")
        extra = sorted(set(self.masks) - set(names))
        if extra:
            raise ConfigError(f"LotteryTicket: masks given for {extra}, which are not pruned")
        for other in trainer.callbacks:  # type: ignore[attr-defined]
            shared = sorted(set(names) & set(other.masks)) if isinstance(other, LotteryTicket) and other is not self \
                else []
            if shared:
                raise ConfigError(f"LotteryTicket: {shared[0]} is pruned by two LotteryTicket callbacks of this "
                                  "Trainer; each parameter belongs to one")

    @property
    def state_key(self) -> str:
        """Unique among several of these callbacks in one Trainer (each prunes its own parameters),
        so that each restores its own state from a checkpoint."""
        chosen = getattr(self.prune, "__qualname__", repr(self.prune)) if callable(self.prune) else self.prune
        return self._generate_state_key(prune=chosen)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._module, self._trainer = pl_module, trainer
        self.masks = trainer.strategy.broadcast(_cpu_copy(self.masks), src=0)  # under DDP: rank 0's on every rank
        steps = _steps_of_fit(trainer, pl_module)
        if self.rewind_step is not None and math.isfinite(steps) and self.rewind_step > self.start_step + steps:
            raise ConfigError(f"LotteryTicket: rewind_step {self.rewind_step} lies beyond the last step of this fit "
                              f"({self.start_step + int(steps)} = start_step {self.start_step} + {int(steps)} "
                              "optimizer steps)")
        self._params = [pl_module.get_parameter(n) for n in self.masks]
        self._factors = [m.to(device=p.device, dtype=p.dtype) for m, p in zip(self.masks.values(), self._params,
                                                                             strict=True)]
        if trainer.ckpt_path is None:
            self._load_optimizer_states(trainer)
        self._enforce()
        self._handles = [opt.register_step_post_hook(self._after_step) for opt in trainer.optimizers]
        if self.rewind_step == self.step and not self.captured:
            self._capture(trainer, pl_module)

    def _load_optimizer_states(self, trainer: L.Trainer) -> None:
        schedulers = [config.scheduler for config in trainer.lr_scheduler_configs]
        for what, given, targets in (("optimizer", self.optimizer_state, trainer.optimizers),
                                     ("scheduler", self.scheduler_state, schedulers)):
            if given is None:
                continue
            if len(given) != len(targets):
                raise ConfigError(f"LotteryTicket: {what}_state holds {len(given)} state(s), the fit has "
                                  f"{len(targets)} {what}(s)")
            for target, state in zip(targets, given, strict=True):
                target.load_state_dict(deepcopy(state))

    @property
    def captured(self) -> bool:
        """Whether θ_k has been captured."""
        return self.rewind_state is not None

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove_hooks()
        if self.rewind_step is not None and not self.captured:
            raise ConfigError(f"LotteryTicket: the fit ended at step {self.step}, before rewind_step "
                              f"{self.rewind_step}; train longer or rewind earlier")

    # -- every optimizer step ------------------------------------------------------------------

    @torch.no_grad()
    def _enforce(self) -> None:
        if self._params:
            torch._foreach_mul_(self._params, self._factors)

    def _after_step(self, *_: object) -> None:
        self._enforce()
        self.step += 1
        if self.step == self.rewind_step and not self.captured:
            self._capture(self._trainer, self._module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: object) -> None:
        if self._schedulers_due:  # the batch that reached step k has stepped its schedulers now
            self._capture_optimizers(trainer)
            self._schedulers_due = False

    def _capture(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """θ_k now; the optimizers and schedulers as step k + 1 sees them: at the end of the batch
        that took step k (a scheduler steps after its optimizer), or now at the start of a fit."""
        self.rewind_state = _shared_state(trainer, pl_module)
        if self.rewind_optimizer:
            if self.step == self.start_step:
                self._capture_optimizers(trainer)
            else:
                self._schedulers_due = True

    def _capture_optimizers(self, trainer: L.Trainer) -> None:
        self.rewind_optimizer_state = trainer.strategy.broadcast(
            [deepcopy(opt.state_dict()) for opt in trainer.optimizers], src=0)
        self.rewind_scheduler_state = trainer.strategy.broadcast(
            [deepcopy(config.scheduler.state_dict()) for config in trainer.lr_scheduler_configs], src=0)

    # -- the early-stop point ------------------------------------------------------------------

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor is None or trainer.sanity_checking:
            return
        if self.monitor not in trainer.callback_metrics:
            logged = ", ".join(sorted(trainer.callback_metrics)) or "nothing"
            raise ConfigError(f"LotteryTicket: monitor {self.monitor!r} is not logged by the module (logged: "
                              f"{logged}); log it with self.log in validation, or choose another monitor")
        value = trainer.strategy.broadcast(float(trainer.callback_metrics[self.monitor]), src=0)  # one decision
        better = value < self.best_value if self.mode == "min" else value > self.best_value
        if math.isfinite(value) and better:
            self.best_step, self.best_value = self.step, value
            self.best_state = _shared_state(trainer, pl_module)

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"masks": _cpu_copy(self.masks), "step": self.step, "rewind_state": self.rewind_state,
                "rewind_optimizer_state": self.rewind_optimizer_state,
                "rewind_scheduler_state": self.rewind_scheduler_state, "best_step": self.best_step,
                "best_value": self.best_value, "best_state": self.best_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.masks = dict(state_dict["masks"])
        self.step, self.rewind_state = state_dict["step"], state_dict["rewind_state"]
        self.rewind_optimizer_state = state_dict["rewind_optimizer_state"]
        self.rewind_scheduler_state = state_dict.get("rewind_scheduler_state")
        self.best_step, self.best_value = state_dict["best_step"], state_dict["best_value"]
        self.best_state = state_dict["best_state"]
