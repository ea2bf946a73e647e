"""Train one level: one ``Trainer.fit`` with a fresh optimizer, then the test set at the
early-stop weights and at the final weights; K replicas at once (K = 1: one run)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import lightning as L
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.environments import LightningEnvironment

from ticketbench.config import TaskConfig
from ticketbench.data.tensors import BatchStream, ReplicaData
from ticketbench.device import use_tf32
from ticketbench.pruning.masks import Masks
from ticketbench.training.callback import ReplicaTickets
from ticketbench.training.module import Blocks, Classifier
from ticketbench.training.progress import StepProgressBar
from ticketbench.training.replicas import Replicas, State


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


def _test_accuracy(trainer: L.Trainer, module: Classifier) -> list[float]:
    trainer.test(module, verbose=False)
    return module.test_acc.tolist()


@dataclass
class Fitted:
    """A level's Lightning objects after ``Trainer.fit``."""

    trainer: L.Trainer
    module: Classifier
    callback: ReplicaTickets


@dataclass
class LevelPlan:
    """What one level trains: the K replicas of ``model`` (already at their rewind point) under
    their ``masks``, replica k on its own data ``streams[k]``, from ``start_step`` to the task's
    last step. ``capture_rewind``: take θ_k at the task's rewind step (level 0);
    ``optimizer_states``: the replicas' optimizer states to resume (None: fresh); ``progress``: the
    progress bar's label (None: no bar); ``logger`` receives the training and validation metrics."""

    task: TaskConfig
    model: Replicas
    masks: list[Masks]
    data: ReplicaData
    streams: list[BatchStream]
    start_step: int = 0
    capture_rewind: bool = False
    optimizer_states: list[dict] | None = None
    level: int = 0
    progress: str | None = None
    logger: Logger | None = None


def fit_level(plan: LevelPlan) -> Fitted:
    """The training of a level (see :func:`train_level`), without the evaluations that follow it."""
    task, data = plan.task, plan.data
    cadence = list(range(task.eval_every, task.max_steps, task.eval_every))
    blocks = Blocks(plan.streams, plan.start_step, task.max_steps, cadence)
    use_tf32(task.precision)
    module = Classifier(plan.model, data, blocks, task.optimizer, plan.level, precision=task.precision,
                        compile_mode=task.compile)
    callback = ReplicaTickets(plan.model, plan.masks, start_step=plan.start_step,
                              rewind_step=task.rewind_step if plan.capture_rewind else None,
                              initial_optimizer_states=plan.optimizer_states)
    callbacks: list[L.Callback] = [callback] + ([StepProgressBar(plan.progress)] if plan.progress else [])
    trainer = L.Trainer(
        accelerator=data.device.type, devices=1, max_epochs=1, val_check_interval=1,
        limit_val_batches=1.0 if data.y_val.shape[1] else 0, check_val_every_n_epoch=None, num_sanity_val_steps=0,
        logger=plan.logger or False, log_every_n_steps=1, enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=plan.progress is not None, callbacks=callbacks,
        # One process on one device: no SLURM detection (its srun warning, its own requeue handler);
        # scheduling and requeueing belong to ticketbench's executors.
        plugins=[LightningEnvironment()],
    )
    trainer.fit(module)
    return Fitted(trainer, module, callback)


def train_level(plan: LevelPlan) -> list[LevelResult]:
    """Train one level (see :class:`LevelPlan`); one result per replica.

    On return the plan's model holds the final weights (the ones the next pruning round reads).
    Without a validation split there is no early stop: the early-stop fields stay empty."""
    began = time.perf_counter()
    fitted = fit_level(plan)
    trainer, module, callback = fitted.trainer, fitted.module, fitted.callback
    model = plan.model
    steps = module.steps_taken
    test_final = _test_accuracy(trainer, module)
    train_final = module.train_accuracy()
    test_early = [math.nan] * model.size
    if any(p.best_state is not None for p in callback.points):
        final = [model.state(k) for k in range(model.size)]
        model.load_states([p.best_state or f for p, f in zip(callback.points, final, strict=True)])
        test_early = [acc if p.best_state else math.nan
                      for acc, p in zip(_test_accuracy(trainer, module), callback.points, strict=True)]
        model.load_states(final)
    seconds = time.perf_counter() - began
    return [LevelResult(
        early_stop_step=p.best_step, val_loss_at_early_stop=p.best_val_loss, val_acc_at_early_stop=p.best_val_acc,
        test_acc_at_early_stop=test_early[k], test_acc_final=test_final[k], train_acc_final=train_final[k],
        start_step=plan.start_step, steps=steps, seconds=seconds, diverged=p.diverged, rewind_state=p.rewind_state,
        rewind_optimizer_state=p.rewind_optimizer_state,
    ) for k, p in enumerate(callback.points)]
