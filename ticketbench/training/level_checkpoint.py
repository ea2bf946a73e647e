"""A level in progress: saved at validation boundaries, so that a level stopped midway resumes
from its last checkpoint instead of its start (``ticketbench run --checkpoint-every MINUTES``).

One file per replica, ``<run>/progress/level_NN.pt``, written atomically and removed once the
level's record is written. It holds what the rest of the level depends on and nothing else: the
step reached, the weights and buffers, the optimizer state, the early-stop point so far (its
step, validation loss and accuracy, and the test accuracy of its weights, measured when the
checkpoint is written, so that the weights themselves need not be kept), the validation curve so
far, the divergence flag,
θ_k when the level captured it after its start, and the seconds spent. Of a pruned tensor it
keeps the kept entries only, and of its optimizer state too: a pruned weight is 0 after every
step whatever its momentum or moments, which act on nothing else (the optimizers are
elementwise), so they resume as 0. The data order is a
function of the seed and the step, so a resumed level draws the same batches; on the same
machine and torch version it ends with the same record as an uninterrupted one (``seconds``
aside; the record lists the steps it resumed from).

Signals: SIGUSR1 asks a running level to write its checkpoint at the next validation.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ticketbench.atomic import atomic_write
from ticketbench.errors import RunError
from ticketbench.pruning.masks import Masks
from ticketbench.storage.provenance import on_cpu, state_digest
from ticketbench.training.callback import Validations
from ticketbench.training.replicas import State

FORMAT = 1
OptimizerState = dict[str, Any]


@dataclass
class LevelCheckpoint:
    """One replica's level in progress (see the module docstring)."""

    level: int
    start_step: int  # where the level began (0, or the rewind step k)
    step: int  # the absolute step reached
    seconds: float  # spent on the level so far
    masks: str  # state_digest of the level's masks
    parameters: list[str]  # the model's parameters in the optimizer's order
    state: State
    optimizer_state: OptimizerState
    best_step: int | None = None
    best_val_loss: float = float("inf")
    best_val_acc: float = float("nan")
    best_test_acc: float | None = None
    diverged: bool = False
    rewind_state: State | None = None
    rewind_optimizer_state: dict | None = None
    resumed_from: list[int] = field(default_factory=list)  # steps at which earlier segments ended
    validations: Validations | None = None  # the curve so far (None: not kept)

    def save(self, path: Path, masks: Masks) -> None:
        """Write it to ``path``, the tensors pruned by ``masks`` reduced to their kept entries."""
        data = {"format": FORMAT, **asdict(self)}
        data["state"] = {n: v[masks[n]] if n in masks else v for n, v in on_cpu(self.state).items()}
        data["optimizer_state"] = _per_entry(on_cpu(self.optimizer_state), self.parameters, masks, _kept)
        atomic_write(path, lambda f: torch.save(on_cpu(data), f))

    @classmethod
    def load(cls, path: Path, level: int, start_step: int, stop_step: int, masks: Masks) -> LevelCheckpoint:
        """The checkpoint at ``path``, checked to belong to this level, its start and its masks."""
        remedy = "delete it, and the level trains from its start"
        try:
            data = torch.load(path, weights_only=True)
            assert isinstance(data, dict) and data.pop("format") == FORMAT
            ckpt = cls(**data)
        except Exception as err:  # noqa: BLE001 - truncated, not a torch file, another layout
            raise RunError(f"{path}: not a readable level checkpoint ({type(err).__name__}); {remedy}") from None
        if (ckpt.level, ckpt.start_step) != (level, start_step) or not start_step < ckpt.step < stop_step:
            raise RunError(f"{path}: a checkpoint of level {ckpt.level} at step {ckpt.step} (from {ckpt.start_step}), "
                           f"not of level {level} between steps {start_step} and {stop_step}; {remedy}")
        if ckpt.masks != state_digest(masks):
            raise RunError(f"{path}: trained under other masks than {level}'s mask file; {remedy}")
        try:
            ckpt.state = {n: _expanded(v, masks[n]) if n in masks else v for n, v in ckpt.state.items()}
            ckpt.optimizer_state = _per_entry(ckpt.optimizer_state, ckpt.parameters, masks, _expanded)
        except (RuntimeError, KeyError, IndexError) as err:  # entries that do not fit the masks
            raise RunError(f"{path}: not a readable level checkpoint ({type(err).__name__}); {remedy}") from None
        return ckpt


def _kept(value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The entries of a tensor of ``mask``'s shape that the mask keeps (other tensors as they are)."""
    return value[mask] if value.shape == mask.shape else value


def _expanded(value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_kept`: the kept entries back in a tensor of ``mask``'s shape, 0 elsewhere."""
    if value.shape == mask.shape or value.ndim != 1:
        return value
    full = torch.zeros(mask.shape, dtype=value.dtype)
    full[mask] = value
    return full


def _per_entry(optimizer_state: OptimizerState, parameters: list[str], masks: Masks,
               apply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> OptimizerState:
    """``optimizer_state`` with ``apply(tensor, mask)`` on the per-entry tensors of every pruned parameter."""
    state = {}
    for index, entries in optimizer_state["state"].items():
        mask = masks.get(parameters[index])
        state[index] = {key: apply(v, mask) if mask is not None and isinstance(v, torch.Tensor) else v
                        for key, v in entries.items()}
    return {**optimizer_state, "state": state}


@dataclass
class Checkpointing:
    """Where a level writes its checkpoints (one path per replica, with the replica's masks) and
    how often (seconds of wall clock, checked at each validation; SIGUSR1 asks for one at the next)."""

    paths: list[Path]
    masks: list[Masks]
    every: float


class SaveLevel(L.Callback):
    """Writes the level's checkpoints when due (after the callback that tracks the early stop)."""

    def __init__(self, checkpointing: Checkpointing, write: Callable[[], list[LevelCheckpoint]]) -> None:
        self.checkpointing, self.write = checkpointing, write
        self.last = time.monotonic()
        self.asked = False
        self._previous: Any = None

    def _ask(self, *_: object) -> None:
        self.asked = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._previous = signal.signal(signal.SIGUSR1, self._ask)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        signal.signal(signal.SIGUSR1, self._previous or signal.SIG_DFL)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.asked or time.monotonic() - self.last >= self.checkpointing.every:
            for path, masks, ckpt in zip(self.checkpointing.paths, self.checkpointing.masks, self.write(), strict=True):
                ckpt.save(path, masks)
            self.last, self.asked = time.monotonic(), False
