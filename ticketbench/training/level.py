"""Train one level: one ``Trainer.fit`` with a fresh optimizer, then the test set at the
early-stop weights and at the final weights."""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from torch import nn

from ticketbench.config import TaskConfig
from ticketbench.data.tensors import BatchStream, DeviceSplit
from ticketbench.pruning.masks import Masks
from ticketbench.training.callback import PruneRewind, State
from ticketbench.training.module import Blocks, Classifier, train_accuracy
from ticketbench.training.progress import StepProgressBar

logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
warnings.filterwarnings("ignore", message=".*but have no logger configured.*")  # W&B off: metrics stay local


@dataclass
class LevelResult:
    """What one level measured (accuracies are fractions in [0, 1])."""

    early_stop_step: int | None
    val_loss_at_early_stop: float
    val_acc_at_early_stop: float
    test_acc_at_early_stop: float
    test_acc_final: float
    train_acc_final: float
    start_step: int
    steps: int
    seconds: float
    diverged: bool
    rewind_state: State | None
    rewind_optimizer_state: dict | None


def _test_accuracy(trainer: L.Trainer, module: Classifier) -> float:
    trainer.test(module, verbose=False)
    return float(trainer.callback_metrics["test/acc"])


def train_level(task: TaskConfig, model: nn.Module, masks: Masks, split: DeviceSplit, stream: BatchStream,
                start_step: int, capture_rewind: bool, optimizer_state: dict | None = None, level: int = 0,
                progress: str | None = None, logger: Logger | None = None) -> LevelResult:
    """Train ``model`` (already at its rewind point) under ``masks`` from ``start_step`` to the end.

    On return ``model`` holds its final weights (the ones the next pruning round reads). Without
    a validation split there is no early stop: the early-stop fields stay empty. ``progress`` is the
    progress bar's label (None: no bar); ``logger`` receives the training and validation metrics.
    """
    began = time.perf_counter()
    cadence = list(range(task.eval_every, task.max_steps, task.eval_every))
    blocks = Blocks(stream, start_step, task.max_steps, cadence + [task.rewind_step])
    module = Classifier(model, split, blocks, task.optimizer, level)
    callback = PruneRewind(masks, task.eval_every, task.rewind_step if capture_rewind else None, optimizer_state)
    callbacks: list[L.Callback] = [callback] + ([StepProgressBar(progress)] if progress else [])
    trainer = L.Trainer(
        accelerator=split.device.type, devices=1, max_epochs=1, val_check_interval=1,
        limit_val_batches=1.0 if len(split.y_val) else 0, check_val_every_n_epoch=None, num_sanity_val_steps=0,
        logger=logger or False, log_every_n_steps=1, enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=progress is not None, callbacks=callbacks,
    )
    trainer.fit(module)
    steps = trainer.global_step
    test_final = _test_accuracy(trainer, module)
    train_final = train_accuracy(model, split)
    final_state = {k: v.clone() for k, v in model.state_dict().items()}
    test_early = float("nan")
    if callback.best_state is not None:
        model.load_state_dict(callback.best_state)
        test_early = _test_accuracy(trainer, module)
        model.load_state_dict(final_state)
    return LevelResult(
        early_stop_step=callback.best_step, val_loss_at_early_stop=callback.best_val_loss,
        val_acc_at_early_stop=callback.best_val_acc, test_acc_at_early_stop=test_early,
        test_acc_final=test_final, train_acc_final=train_final, start_step=start_step, steps=steps,
        seconds=time.perf_counter() - began, diverged=callback.diverged, rewind_state=callback.rewind_state,
        rewind_optimizer_state=callback.rewind_optimizer_state,
    )


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
