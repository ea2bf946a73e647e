"""Train one level: one ``Trainer.fit`` with a fresh optimizer, then the test set at the
early-stop weights and at the final weights; K replicas at once (K = 1: one run). A level can
write checkpoints as it trains and resume from them (see ticketbench.training.level_checkpoint)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.environments import LightningEnvironment

from ticketbench.config import TaskConfig
from ticketbench.data.tensors import BatchStream, ReplicaData
from ticketbench.device import default_device, use_tf32
from ticketbench.pruning.masks import Masks
from ticketbench.storage.provenance import state_digest
from ticketbench.training.arithmetic import record_fields
from ticketbench.training.callback import ReplicaPoints, ReplicaTickets, Validations
from ticketbench.training.level_checkpoint import Checkpointing, LevelCheckpoint, SaveLevel
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
    resumed_from: list[int]  # the steps from which a stopped level was resumed (none: trained in one go)
    channels_last: bool  # the layout it trained in (see ticketbench.training.arithmetic)
    # (step, loss, accuracy) of each validation; None without a validation split or when not all are known
    validations: Validations | None = None
    arithmetic: dict[str, Any] = field(default_factory=dict)  # what the record says of the arithmetic
    about: dict[str, Any] = field(default_factory=dict)  # further fields of the record (the runner's)


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
    progress bar's label (None: no bar); ``logger`` receives the training and validation metrics;
    ``resume``: one checkpoint per replica of this level stopped midway (the model is still at the
    level's start); ``checkpointing``: where and how often to write them."""

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
    resume: list[LevelCheckpoint] | None = None
    checkpointing: Checkpointing | None = None


def fit_level(plan: LevelPlan) -> Fitted:
    """The training of a level (see :func:`train_level`), without the evaluations that follow it."""
    task, data, model, resume = plan.task, plan.data, plan.model, plan.resume
    first = resume[0].step if resume else plan.start_step
    cadence = list(range(task.eval_every, task.max_steps, task.eval_every))
    blocks = Blocks(plan.streams, first, task.max_steps, cadence)
    use_tf32(task.precision)
    capture = plan.capture_rewind and (not resume or task.rewind_step >= first)
    level_start = [model.state(k) for k in range(model.size)] if resume else []
    if resume:
        model.load_states([c.state for c in resume])
    module = Classifier(model, data, blocks, task.optimizer, plan.level, precision=task.precision,
                        compile_mode=task.compile)
    callback = ReplicaTickets(model, plan.masks, start_step=first, rewind_step=task.rewind_step if capture else None,
                              initial_optimizer_states=[c.optimizer_state for c in resume] if resume
                              else plan.optimizer_states)
    if resume:
        callback.points = [_restored(c, plan.capture_rewind and not capture, start)
                           for c, start in zip(resume, level_start, strict=True)]
    callbacks: list[L.Callback] = [callback] + ([StepProgressBar(plan.progress)] if plan.progress else [])
    if plan.checkpointing:
        began = time.perf_counter()
        callbacks.append(SaveLevel(plan.checkpointing, lambda: _checkpoints(plan, module, callback, began)))
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


def _restored(ckpt: LevelCheckpoint, captured: bool, start: State) -> ReplicaPoints:
    """A replica's early-stop point and θ_k from its checkpoint (θ_k taken at the level's start is
    that start, which the checkpoint does not repeat)."""
    rewind = (ckpt.rewind_state or start) if captured else None
    return ReplicaPoints(rewind, ckpt.rewind_optimizer_state if captured else None, ckpt.best_step, ckpt.best_val_loss,
                         ckpt.best_val_acc, None, ckpt.best_test_acc, ckpt.diverged,
                         None if ckpt.validations is None else [tuple(v) for v in ckpt.validations])


def _test_early_stop(module: Classifier, points: list[ReplicaPoints]) -> None:
    """Measure the test accuracy of the early-stop weights not measured yet (the model keeps its weights)."""
    model = module.model
    due = [p.best_state is not None and p.best_test_acc is None for p in points]
    if not any(due):
        return
    current = [model.state(k) for k in range(model.size)]
    model.load_states([p.best_state if d else c for p, d, c in zip(points, due, current, strict=True)])
    for point, d, acc in zip(points, due, module.test_accuracy(), strict=True):
        if d:
            point.best_test_acc = acc
    model.load_states(current)


def _earlier(plan: LevelPlan) -> tuple[float, list[int]]:
    """The seconds a resumed level spent before, and the steps it resumed from (0 and none when it
    was not resumed)."""
    resume = plan.resume
    return (resume[0].seconds, [*resume[0].resumed_from, resume[0].step]) if resume else (0.0, [])


def _checkpoints(plan: LevelPlan, module: Classifier, callback: ReplicaTickets, began: float) -> list[LevelCheckpoint]:
    """The level's checkpoints now, one per replica (at a validation boundary)."""
    model = plan.model
    _test_early_stop(module, callback.points)
    optimizer = model.split_optimizer_state(module.optimizers(use_pl_optimizer=False).state_dict())
    before, resumed_from = _earlier(plan)
    later = plan.task.rewind_step > plan.start_step  # θ_k taken after the start: the checkpoint keeps it
    parameters = [name for name, _ in model.net.named_parameters()]
    return [LevelCheckpoint(plan.level, plan.start_step, callback.step, before + time.perf_counter() - began,
                            state_digest(plan.masks[k]), parameters, model.state(k), optimizer[k], p.best_step,
                            p.best_val_loss, p.best_val_acc, p.best_test_acc, p.diverged,
                            p.rewind_state if later else None, p.rewind_optimizer_state, resumed_from,
                            p.validations)
            for k, p in enumerate(callback.points)]


def train_level(plan: LevelPlan) -> list[LevelResult]:
    """Train one level (see :class:`LevelPlan`); one result per replica.

    On return the plan's model holds the final weights (the ones the next pruning round reads).
    Without a validation split there is no early stop: the early-stop fields stay empty."""
    began = time.perf_counter()
    fitted = fit_level(plan)
    module, callback = fitted.module, fitted.callback
    steps = module.step - plan.start_step
    test_final = module.test_accuracy()
    train_final = module.train_accuracy()
    _test_early_stop(module, callback.points)
    before, resumed_from = _earlier(plan)
    seconds = before + time.perf_counter() - began
    task = plan.task
    arithmetic = record_fields(task.precision, task.compile, default_device(), module.channels_last)
    return [LevelResult(
        early_stop_step=p.best_step, val_loss_at_early_stop=p.best_val_loss, val_acc_at_early_stop=p.best_val_acc,
        test_acc_at_early_stop=math.nan if p.best_test_acc is None else p.best_test_acc,
        test_acc_final=test_final[k], train_acc_final=train_final[k], start_step=plan.start_step, steps=steps,
        seconds=seconds, diverged=p.diverged, rewind_state=p.rewind_state,
        rewind_optimizer_state=p.rewind_optimizer_state, resumed_from=resumed_from, channels_last=module.channels_last,
        arithmetic=arithmetic, validations=p.validations if module.data.y_val.shape[1] else None,
    ) for k, p in enumerate(callback.points)]
