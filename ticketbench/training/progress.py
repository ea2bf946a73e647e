"""Terminal progress: Lightning's progress bar counting the optimizer steps of a level, and the ETA
of the levels still to train."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

from ticketbench.catalog import duration


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar in optimizer steps (one ``training_step`` runs a block of steps) with
    the level in its description; the per-validation and test bars are switched off (the
    validation metrics show in the postfix instead)."""

    def __init__(self, description: str) -> None:
        super().__init__()
        self.description = description

    def init_train_tqdm(self) -> Tqdm:
        bar = super().init_train_tqdm()
        bar.leave, bar.unit = False, "step"
        return bar

    def init_validation_tqdm(self) -> Tqdm:
        return Tqdm(disable=True)

    def init_test_tqdm(self) -> Tqdm:
        return Tqdm(disable=True)

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        super().on_train_epoch_start(trainer)
        blocks = trainer.lightning_module.blocks
        self.train_progress_bar.total = blocks.stop - blocks.start
        self.train_progress_bar.set_description(self.description)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        bar = self.train_progress_bar
        if not bar.disable:
            bar.n = pl_module.step - pl_module.blocks.start
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()


@dataclass
class Eta:
    """Seconds per training step measured over the levels finished in this invocation, times the
    steps still to train."""

    steps_left: int
    seconds: float = 0.0
    steps: int = 0
    began: float = field(default_factory=time.perf_counter)

    def level_done(self, steps: int, seconds: float) -> str:
        self.steps_left -= steps
        self.steps += steps
        self.seconds += seconds
        if self.steps_left <= 0:
            return f"done in {duration(time.perf_counter() - self.began)}"
        left = self.seconds / self.steps * self.steps_left
        finish = time.strftime("%H:%M", time.localtime(time.time() + left))
        return f"ETA {duration(left)} for the remaining levels (about {finish})"
