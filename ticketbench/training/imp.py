"""The iterative magnitude pruning (IMP) level loop and its controls.

Level 0 trains the dense network from θ0 and captures θ_k at the rewind step k. Every later
level L prunes the previous level's *final* weights by magnitude (one round of the task's
schedule), rewinds the kept weights to θ_k, and trains again from step k with a fresh
optimizer. What is rewound: every parameter and buffer (θ_k, BatchNorm statistics included) and
the learning-rate schedule (positioned at k); the optimizer state only when the task's
``optimizer.at_rewind`` is ``rewind`` — by default each level starts with empty momentum / Adam
moments, as in Frankle & Carbin and open_lth.

Controls reuse the winning-ticket (IMP) run of the same task, seed and configuration, level by
level, and start at level 1 (their level 0 would be the dense network again):

- ``reinit``: the IMP mask of level L on a fresh initialisation drawn from another seed stream;
- ``random-prune``: a uniformly random mask with the IMP mask's per-layer counts, on θ_k.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ticketbench.config import TaskConfig
from ticketbench.data import BatchStream, load_arrays, make_split
from ticketbench.data.tensors import DeviceSplit
from ticketbench.models import build_model
from ticketbench.pruning.masks import Masks, apply_masks, full_masks, layer_remaining_percent, remaining_percent
from ticketbench.pruning.schedule import next_masks, pruned_tensors
from ticketbench.pruning.select import random_masks
from ticketbench.runs import CONTROLS, RunDir, RunError, finite_or_none
from ticketbench.seeding import derive_seed, generator
from ticketbench.tracking import Tracker, WandbOptions
from ticketbench.training.level import LevelResult, default_device, train_level
from ticketbench.training.progress import Eta


def require_ticket(imp: RunDir, level: int, control: str) -> None:
    """Controls train on the winning-ticket run's masks: refuse clearly when they are not there yet."""
    if not imp.mask_path(level).is_file():
        raise RunError(f"level {level} of the {control} control needs the winning-ticket mask "
                       f"{imp.mask_path(level)}; run the same command with --control none first")


@dataclass
class Start:
    """Where a level begins: the masked model at its rewind point, its masks, the step, and the
    optimizer state to resume (None: a fresh optimizer)."""

    model: nn.Module
    masks: Masks
    step: int
    optimizer_state: dict | None = None
    about: dict = field(default_factory=dict)  # extra fields for the level's record


def starting_point(task: TaskConfig, seed: int, control: str, level: int, run: RunDir, imp: RunDir) -> Start:
    """The start of ``level`` of one arm."""
    optimizer_state = None
    if control == "reinit":
        model = build_model(task.model, derive_seed(seed, "reinit"))
    else:
        model = build_model(task.model, seed)
        if level > 0:
            model.load_state_dict(imp.load_rewind())
            if task.optimizer.at_rewind == "rewind":
                optimizer_state = imp.load_rewind_optimizer()
    if control == "none":
        names = list(pruned_tensors(model, task.pruning))
        masks = full_masks(model, names) if level == 0 else run.load_masks(level)
    else:
        require_ticket(imp, level, control)
        masks = imp.load_masks(level)
        if control == "random-prune":
            counts = {n: int(m.sum()) for n, m in masks.items()}
            masks = random_masks(masks, counts, generator(seed, "random-prune", level))
    apply_masks(model, masks)
    return Start(model, masks, 0 if level == 0 else task.rewind_step, optimizer_state)


def record(task: TaskConfig, seed: int, arm: str, level: int, masks: Masks, result: LevelResult) -> dict:
    """The per-level record (stable schema; accuracies are fractions in [0, 1])."""
    return {
        "task": task.name, "seed": seed, "arm": arm, "level": level,
        "weights_remaining_percent": remaining_percent(masks),
        "layer_remaining_percent": layer_remaining_percent(masks),
        "early_stop_step": result.early_stop_step,
        "val_loss_at_early_stop": finite_or_none(result.val_loss_at_early_stop),
        "val_acc_at_early_stop": finite_or_none(result.val_acc_at_early_stop),
        "test_acc_at_early_stop": finite_or_none(result.test_acc_at_early_stop),
        "test_acc_final": finite_or_none(result.test_acc_final),
        "train_acc_final": finite_or_none(result.train_acc_final),
        "start_step": result.start_step, "steps": result.steps,
        "seconds": round(result.seconds, 2), "diverged": result.diverged,
    }


def train_arm(task: TaskConfig, seed: int, arm: str, run: RunDir, todo: list[int],
              begin: Callable[[int, DeviceSplit], Start], after: Callable[[int, Start, LevelResult], None],
              data_dir: str | None = None, progress: bool = False, echo: Callable[[str], None] = print,
              wandb: WandbOptions | None = None) -> None:
    """Train the levels ``todo`` of one arm: ``begin(level, split)`` gives each level's start,
    ``after(level, start, result)`` runs once it is trained (before its record marks it done).
    Level 0 captures θ_k; ``wandb`` with a resolved mode logs to W&B (see ticketbench.tracking)."""
    device = default_device()
    augment = task.augment == "crop-flip"
    split = make_split(load_arrays(task.dataset, data_dir), task.dataset, task.normalize, task.val_size, seed,
                       device, stratified=task.split == "stratified", augment=augment)
    stream = BatchStream(len(split.y_train), task.batch_size, seed, augment=augment)
    tracker = Tracker(run, task, seed, wandb) if wandb is not None and wandb.mode != "off" else None
    eta = Eta(sum(task.max_steps - (task.rewind_step if lvl else 0) for lvl in todo))
    failed = True
    try:
        for level in todo:
            start = begin(level, split)
            run.save_masks(level, start.masks)
            capture = level == 0
            label = f"[{arm} seed {seed}] level {level}/{task.levels - 1}" if progress else None
            result = train_level(task, start.model.to(device), start.masks, split, stream, start.step, capture,
                                 start.optimizer_state, level, label, tracker.logger if tracker else None)
            if capture:
                run.save_rewind(result.rewind_state, result.rewind_optimizer_state)
                if tracker:
                    tracker.rewind_point(run.rewind_files())
            after(level, start, result)
            rec = record(task, seed, arm, level, start.masks, result) | start.about
            run.save_record(rec)
            if tracker:
                tracker.level_done(rec, run.records(), run.mask_path(level))
            echo(f"{level_line(rec)}  | {eta.level_done(result.steps, result.seconds)}")
        if tracker:
            tracker.experiment_done()
        failed = False
    finally:
        if tracker:
            segments = tracker.finish(failed)
            if segments:
                echo(f"W&B offline run, to upload: wandb sync {' '.join(map(str, segments))}")


def run_imp(task: TaskConfig, seed: int, control: str = "none", out: Path = Path("runs"),
            data_dir: str | None = None, progress: bool = False, echo: Callable[[str], None] = print,
            wandb: WandbOptions | None = None) -> RunDir:
    """Train every level of one arm that is not finished yet; return its run directory."""
    if control not in CONTROLS:
        raise RunError(f"unknown control {control!r}; valid: {', '.join(CONTROLS)}")
    run, imp = RunDir.for_run(out, task, seed, control), RunDir.for_run(out, task, seed, "none")
    todo = [lvl for lvl in range(0 if control == "none" else 1, task.levels) if not run.has_level(lvl)]
    if todo and control != "none":
        require_ticket(imp, todo[0], control)
    run.start(task, seed, CONTROLS[control], 0 if control == "none" else 1,
              pruned_tensors(build_model(task.model, seed), task.pruning), control=control)
    if not todo:
        echo(f"{run.path}: all {task.levels} levels already finished")
        return run

    def after(level: int, start: Start, _: LevelResult) -> None:
        if control == "none":  # the next level's mask, from this level's final weights
            roles = pruned_tensors(start.model, task.pruning)
            run.save_masks(level + 1, next_masks(start.model, start.masks, roles, task.pruning))

    train_arm(task, seed, CONTROLS[control], run, todo,
              lambda level, _: starting_point(task, seed, control, level, run, imp), after,
              data_dir, progress, echo, wandb)
    return run


def level_line(rec: dict) -> str:
    """One line per finished level for the terminal."""
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}%"

    early = "" if rec["early_stop_step"] is None else (
        f"early stop {rec['early_stop_step']}  test acc there {pct(rec['test_acc_at_early_stop'])}  ")
    return (f"[{rec['arm']} seed {rec['seed']}] level {rec['level']:2d}  P_m {rec['weights_remaining_percent']:6.2f}%  "
            f"{early}final test acc {pct(rec['test_acc_final'])}  {rec['seconds']:.0f} s"
            + ("  DIVERGED" if rec["diverged"] else ""))
