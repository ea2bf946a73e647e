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
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from ticketbench.atomic import remove_partial_writes
from ticketbench.config import TaskConfig
from ticketbench.controls import CONTROLS, TICKET
from ticketbench.data import BatchStream, load_arrays, task_split
from ticketbench.data.tensors import DeviceSplit, ReplicaData
from ticketbench.device import default_device
from ticketbench.models import build_model
from ticketbench.pruning.masks import Masks, apply_masks, full_masks, layer_remaining_percent, remaining_percent
from ticketbench.pruning.schedule import next_masks, pruned_tensors
from ticketbench.runs import RunDir, RunError, finite_or_none
from ticketbench.tracking import ReplicaLogger, open_tracker
from ticketbench.training.arithmetic import record_fields
from ticketbench.training.level import LevelPlan, LevelResult, train_level
from ticketbench.training.level_checkpoint import Checkpointing, LevelCheckpoint
from ticketbench.training.progress import Eta
from ticketbench.training.replicas import Replicas, check_batchable
from ticketbench.wandb_mode import WandbOptions


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


def starting_point(task: TaskConfig, seed: int, name: str, level: int, run: RunDir, imp: RunDir) -> Start:
    """The start of ``level`` of the arm of control ``name`` (``none``: the winning tickets)."""
    control = CONTROLS[name]
    optimizer_state = None
    model = build_model(task.model, control.init_seed(seed))
    if level > 0 and not control.fresh_init:
        model.load_state_dict(imp.load_rewind(model.state_dict() if task.rewind_step == 0 else None))
        if task.optimizer.at_rewind == "rewind":
            optimizer_state = imp.load_rewind_optimizer()
    names = list(pruned_tensors(model, task.pruning))
    if control is TICKET:
        masks = full_masks(model, names) if level == 0 else run.load_masks(level, model, names)
        if level > 1 and run.mask_path(level - 1).is_file():
            before = run.load_masks(level - 1, model, names)
            revived = [n for n in names if bool((masks[n] & ~before[n]).any())]
            if revived:
                raise RunError(f"{run.mask_path(level)} keeps weights of {revived[0]} that level {level - 1} pruned; "
                               f"a mask was edited or copied: remove it with the records from level {level - 1} on "
                               "(the same command trains them again)")
    else:
        require_ticket(imp, level, control.name)
        masks = control.masks(imp.load_masks(level, model, names), seed, level)
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
        **record_fields(task.precision, task.compile, default_device(), result.channels_last),
        **({"resumed_from_steps": result.resumed_from} if result.resumed_from else {}),
    }


@dataclass
class Arm:
    """One run directory to train: its seed and arm, the levels it trains (``todo``: those not
    finished yet), ``begin(level, split)`` giving each level's start and ``after(level, start,
    result)`` run once it is trained (before its record marks it done); ``finished`` is what to say
    when nothing is left to do; ``prepare`` writes (or checks) the run directory's meta.json, once
    every arm has passed its checks."""

    seed: int
    name: str
    run: RunDir
    levels: list[int]
    begin: Callable[[int, DeviceSplit], Start]
    after: Callable[[int, Start, LevelResult], None]
    finished: str
    prepare: Callable[[], None]
    todo: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.todo = [level for level in self.levels if not self.run.has_level(level)]


def resume_points(paths: list[Path], level: int, starts: list[Start], stop: int,
                  echo: Callable[[str], None]) -> list[LevelCheckpoint] | None:
    """The checkpoints ``paths`` of ``level`` stopped midway, one per arm, when every arm has one at
    the same step."""
    if not all(path.is_file() for path in paths):
        return None
    found = [LevelCheckpoint.load(path, level, start.step, stop, start.masks) for path, start in zip(paths, starts,
                                                                                                  strict=True)]
    if len({c.step for c in found}) > 1:
        echo(f"level {level}: the checkpoints of the arms training together stopped at different steps "
             f"({', '.join(str(c.step) for c in found)}); the level trains from its start")
        return None
    echo(f"level {level}: resumes from step {found[0].step} ({', '.join(str(p) for p in paths)})")
    return found


def train_arms(task: TaskConfig, arms: list[Arm], arrays: dict[str, np.ndarray], progress: bool = False,
               echo: Callable[[str], None] = print, wandb: WandbOptions | None = None,
               checkpoint_every: float | None = None) -> None:
    """Train the levels still to do of every arm on the dataset ``arrays``; arms due for the same
    level train together as replicas in one process (see ticketbench.training.replicas), each on
    its own seed's split and data order. Level 0 captures θ_k; ``wandb`` with a resolved mode logs
    each arm to its own W&B run. A level stopped midway resumes from its checkpoints; with
    ``checkpoint_every`` (seconds) a level writes them as it trains."""
    device = default_device()
    splits = {seed: task_split(arrays, task, seed, device) for seed in dict.fromkeys(a.seed for a in arms)}
    streams = {seed: BatchStream(len(split.y_train), task.batch_size, seed, augment=split.augments)
               for seed, split in splits.items()}
    trackers = [open_tracker(a.run, task, a.seed, wandb) for a in arms]
    eta = Eta(sum(task.max_steps - (task.rewind_step if lvl else 0) for a in arms for lvl in a.todo))
    pending = [list(a.todo) for a in arms]
    failed = True
    try:
        while any(pending):
            level = min(p[0] for p in pending if p)
            group = [i for i, p in enumerate(pending) if p and p[0] == level]
            starts = [arms[i].begin(level, splits[arms[i].seed]) for i in group]
            paths = [arms[i].run.progress_path(level) for i in group]
            resume = resume_points(paths, level, starts, task.max_steps, echo)  # checked before anything is written
            for i, start in zip(group, starts, strict=True):
                arms[i].run.save_masks(level, start.masks)
            model = Replicas([start.model.to(device) for start in starts])
            first = arms[group[0]]
            who = f"{first.name} seed {first.seed}" if len(group) == 1 else f"{len(group)} replicas"
            label = f"[{who}] level {level}/{task.levels - 1}" if progress else None
            loggers = [trackers[i].logger for i in group if trackers[i]]
            plan = LevelPlan(task, model, [s.masks for s in starts], ReplicaData([splits[arms[i].seed] for i in group]),
                             [streams[arms[i].seed] for i in group], starts[0].step, level == 0,
                             None if starts[0].optimizer_state is None else [s.optimizer_state for s in starts],
                             level, label,
                             (loggers[0] if len(group) == 1 else ReplicaLogger(loggers)) if loggers else None,
                             resume,
                             Checkpointing(paths, [s.masks for s in starts], checkpoint_every) if checkpoint_every
                             else None)
            results = train_level(plan)
            lines = []
            for k, (i, start, result) in enumerate(zip(group, starts, results, strict=True)):
                arm, tracker = arms[i], trackers[i]
                start.model.load_state_dict(model.state(k))
                if level == 0:
                    arm.run.save_rewind(result.rewind_state, result.rewind_optimizer_state)
                    if tracker:
                        tracker.rewind_point(arm.run.rewind_files())
                if not result.diverged:  # a diverged arm stops: nothing to prune from non-finite weights
                    arm.after(level, start, result)
                together = {"replicas": len(group)} if len(group) > 1 else {}
                rec = record(task, arm.seed, arm.name, level, start.masks, result) | start.about | together
                arm.run.ask_levels(task.levels, arm.levels if arm.levels != list(range(arm.levels[0], task.levels))
                                   else None)
                arm.run.save_record(rec)
                arm.run.progress_path(level).unlink(missing_ok=True)
                if tracker:
                    tracker.level_done(rec, arm.run.records(), arm.run.mask_path(level))
                pending[i] = [] if result.diverged else pending[i][1:]
                lines.append(level_line(rec))
            lines[-1] += f"  | {eta.level_done(results[0].steps * len(group), results[0].seconds)}"
            echo("\n".join(lines))
        for tracker in trackers:
            if tracker:
                tracker.experiment_done()
        failed = False
    finally:
        for tracker in trackers:
            if tracker:
                tracker.close(failed, echo)


def imp_arm(task: TaskConfig, seed: int, control: str = "none", out: Path = Path("runs"),
            ticket_alongside: bool = False, at_levels: list[int] | None = None) -> Arm:
    """One arm of the IMP experiment (the winning tickets, or a control of them) with its levels
    not finished yet. ``ticket_alongside``: the winning-ticket arm of this seed trains in the same
    invocation, so its masks need not exist yet; ``at_levels``: a control trains only these levels
    (each depends on the winning tickets' mask of that level alone)."""
    if control not in CONTROLS:
        raise RunError(f"unknown control {control!r}; valid: {', '.join(CONTROLS)}")
    chosen = CONTROLS[control]
    run, imp = RunDir.for_arm(out, task, seed, chosen.arm), RunDir.for_arm(out, task, seed, TICKET.arm)

    def after(level: int, start: Start, _: LevelResult) -> None:
        if chosen is TICKET:  # the next level's mask, from this level's final weights
            roles = pruned_tensors(start.model, task.pruning)
            run.save_masks(level + 1, next_masks(start.model, start.masks, roles, task.pruning))

    first = 0 if chosen is TICKET else 1
    arm = Arm(seed, chosen.arm, run, at_levels or list(range(first, task.levels)),
              lambda level, _: starting_point(task, seed, control, level, run, imp), after,
              f"all {task.levels} levels already finished",
              lambda: run.start(task, seed, chosen.arm, first,
                                pruned_tensors(build_model(task.model, seed), task.pruning), control=control))
    if arm.todo and chosen is not TICKET and not ticket_alongside:
        require_ticket(imp, arm.todo[0], control)
    return arm


def run_arms(task: TaskConfig, arms: list[Arm], data_dir: str | None = None, progress: bool = False,
             echo: Callable[[str], None] = print, wandb: WandbOptions | None = None,
             checkpoint_every: float | None = None) -> list[RunDir]:
    """Train the arms with levels to do (together); say which are finished already.

    Several arms must be stackable, and the data must load (both checked before any run
    directory is written). Every run directory is locked for the whole run; what an interrupted
    write left is removed, and the levels finished meanwhile are skipped. An arm with a diverged
    level trains no further, and the run ends with a :class:`RunError` naming it (after the other
    arms have trained)."""
    if len(arms) > 1:
        check_batchable(build_model(task.model, 0), task.model)
    arrays = load_arrays(task.dataset, data_dir) if any(arm.todo for arm in arms) else {}  # before writing
    with ExitStack() as held:
        for arm in arms:
            held.enter_context(arm.run.lock())
        for arm in arms:
            remove_partial_writes(arm.run.path)
            arm.prepare()  # meta.json written for a new run, checked (and every record with it) for an old one
            arm.run.records()
            stopped = arm.run.diverged_level()
            arm.todo = [] if stopped is not None else [lvl for lvl in arm.todo if not arm.run.has_level(lvl)]
            if not arm.todo:
                echo(f"{arm.run.path}: {arm.finished if stopped is None else f'diverged at level {stopped}'}")
        if any(arm.todo for arm in arms):
            train_arms(task, [a for a in arms if a.todo], arrays, progress, echo, wandb, checkpoint_every)
    diverged = [(arm.run, level) for arm in arms if (level := arm.run.diverged_level()) is not None]
    if diverged:
        run, level = diverged[0]
        others = f" (and {len(diverged) - 1} more arm(s))" if len(diverged) > 1 else ""
        raise RunError(f"{run.path}: level {level} diverged (non-finite training or validation loss){others}; it is "
                       "recorded as diverged and no later level is trained; lower the learning rate "
                       "(--set optimizer.lr=...)")
    return [arm.run for arm in arms]


def run_imp(task: TaskConfig, seed: int, control: str = "none", out: Path = Path("runs"),
            data_dir: str | None = None, progress: bool = False, echo: Callable[[str], None] = print,
            wandb: WandbOptions | None = None) -> RunDir:
    """Train every level of one arm that is not finished yet; return its run directory."""
    return run_arms(task, [imp_arm(task, seed, control, out)], data_dir, progress, echo, wandb)[0]


def level_line(rec: dict) -> str:
    """One line per finished level for the terminal."""
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}%"

    early = "" if rec["early_stop_step"] is None else (
        f"early stop {rec['early_stop_step']}  test acc there {pct(rec['test_acc_at_early_stop'])}  ")
    return (f"[{rec['arm']} seed {rec['seed']}] level {rec['level']:2d}  P_m {rec['weights_remaining_percent']:6.2f}%  "
            f"{early}final test acc {pct(rec['test_acc_final'])}  {rec['seconds']:.0f} s"
            + ("  DIVERGED" if rec["diverged"] else ""))
