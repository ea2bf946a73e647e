"""The runner of the suite's tasks: the arms due for a level train together as stacked replicas in
one process (see :mod:`ticketbench.training.replicas`), each on its own seed's split and data
order; a level stopped midway resumes from its checkpoints, and with ``checkpoint_every`` writes
them as it trains (see :mod:`ticketbench.training.level_checkpoint`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ticketbench.config import TaskConfig
from ticketbench.data import BatchStream, load_arrays, task_split
from ticketbench.data.tensors import DeviceSplit, ReplicaData
from ticketbench.device import default_device
from ticketbench.engine.arms import Arm, Network, Start, imp_arm
from ticketbench.engine.loop import Observer, run_arms
from ticketbench.engine.observers import Terminal, Tracking
from ticketbench.models import build_model
from ticketbench.pruning.masks import Masks
from ticketbench.pruning.schedule import pruned_tensors
from ticketbench.storage.run_dir import RunDir
from ticketbench.training.level import LevelPlan, LevelResult, train_level
from ticketbench.training.level_checkpoint import Checkpointing, LevelCheckpoint
from ticketbench.training.replicas import Replicas, check_batchable
from ticketbench.wandb_mode import WandbOptions

log = logging.getLogger(__name__)


@dataclass
class TaskNetwork(Network):
    """The network of a suite task: its model, seeded; its pruned tensors and schedule."""

    task: TaskConfig

    def __post_init__(self) -> None:
        self.protocol, self.pruning, self.rewind_step = self.task, self.task.pruning, self.task.rewind_step
        self.rewinds_optimizer = self.task.optimizer.at_rewind == "rewind"

    def build(self, seed: int) -> nn.Module:
        return build_model(self.task.model, seed)

    def roles(self, model: nn.Module) -> dict[str, str]:
        return pruned_tensors(model, self.task.pruning)


def resume_points(paths: list[Path], level: int, starts: Sequence[Start], stop: int) -> list[LevelCheckpoint] | None:
    """The checkpoints ``paths`` of ``level`` stopped midway, one per arm, when every arm has one at
    the same step."""
    if not all(path.is_file() for path in paths):
        return None
    found = [LevelCheckpoint.load(path, level, start.step, stop, start.masks)
             for path, start in zip(paths, starts, strict=True)]
    if len({c.step for c in found}) > 1:
        log.info(f"level {level}: the checkpoints of the arms training together stopped at different steps "
                 f"({', '.join(str(c.step) for c in found)}); the level trains from its start")
        return None
    log.info(f"level {level}: resumes from step {found[0].step} ({', '.join(str(p) for p in paths)})")
    return found


@dataclass
class SuiteRunner:
    """Trains the levels of a suite task (``data_dir``: where its dataset is; ``progress``: show
    Lightning's bar; ``checkpoint_every``: seconds between checkpoints of a level in progress)."""

    task: TaskConfig
    data_dir: str | None = None
    progress: bool = False
    checkpoint_every: float | None = None
    tracking: Tracking | None = None
    writes: bool = True
    splits: dict[int, DeviceSplit] = field(default_factory=dict)
    streams: dict[int, BatchStream] = field(default_factory=dict)

    @property
    def protocol(self) -> TaskConfig:
        return self.task

    def load(self, arms: Sequence[Arm]) -> None:
        task = self.task
        if any(len(group) > 1 for group in self.groups(arms)):
            check_batchable(build_model(task.model, 0), task.model)
        seeds = [seed for seed in dict.fromkeys(arm.seed for arm in arms) if seed not in self.splits]
        arrays = load_arrays(task.dataset, self.data_dir) if seeds else {}
        for seed in seeds:
            self.splits[seed] = task_split(arrays, task, seed, default_device())
        for arm in arms:
            split = self.splits[arm.seed]
            self.streams[arm.noise] = BatchStream(len(split.y_train), task.batch_size, arm.noise,
                                                  augment=split.augments)

    def groups(self, arms: Sequence[Arm]) -> list[list[Arm]]:
        return [list(arms)]

    def data(self, arm: Arm) -> DeviceSplit:
        return self.splits[arm.seed]

    def begin(self, level: int, arms: Sequence[Arm], starts: Sequence[Start]) -> list[LevelCheckpoint] | None:
        return resume_points([arm.run.progress_path(level) for arm in arms], level, starts, self.task.max_steps)

    def fit(self, level: int, arms: Sequence[Arm], starts: Sequence[Start],
            begun: list[LevelCheckpoint] | None) -> list[LevelResult]:
        task, first = self.task, arms[0]
        model = Replicas([start.model.to(default_device()) for start in starts])
        masks: list[Masks] = [start.masks for start in starts]
        who = f"{first.name} seed {first.seed}" if len(arms) == 1 else f"{len(arms)} replicas"
        states = [start.optimizer_state for start in starts]
        plan = LevelPlan(
            task, model, masks, ReplicaData([self.splits[arm.seed] for arm in arms]),
            [self.streams[arm.noise] for arm in arms], starts[0].step, first.captures_rewind(level),
            None if states[0] is None else states, level,
            f"[{who}] level {level}/{task.levels - 1}" if self.progress else None,
            self.tracking.logger(arms) if self.tracking else None, begun,
            Checkpointing([arm.run.progress_path(level) for arm in arms], masks, self.checkpoint_every)
            if self.checkpoint_every else None)
        results = train_level(plan)
        for k, start in enumerate(starts):
            start.model.load_state_dict(model.state(k))
        return results

    def level_written(self, level: int, arms: Sequence[Arm]) -> None:
        """One process writes everything: nothing to wait for."""

    def follow(self, arm: Arm) -> None:
        """One process writes everything: nothing to wait for."""


def suite_arm(task: TaskConfig, seed: int, control: str = "none", out: Path = Path("runs"),
              ticket_alongside: bool = False, at_levels: list[int] | None = None) -> Arm:
    """One arm of the IMP experiment on a suite task (see :func:`ticketbench.engine.arms.imp_arm`)."""
    return imp_arm(TaskNetwork(task), out, seed, control, ticket_alongside, at_levels)


def train_suite(task: TaskConfig, arms: list[Arm], data_dir: str | None = None, progress: bool = False,
                wandb: WandbOptions | None = None, checkpoint_every: float | None = None) -> list[RunDir]:
    """Train the levels still to do of ``arms`` of ``task`` (``wandb`` with a resolved mode: each arm
    logs to its W&B run); return their run directories."""
    runner = SuiteRunner(task, data_dir, progress, checkpoint_every)

    def observers(training: list[Arm]) -> list[Observer]:
        runner.tracking = Tracking(training, wandb)
        return [Terminal.for_arms(training), runner.tracking]

    run_arms(runner, arms, observers)
    return [arm.run for arm in arms]


def run_imp(task: TaskConfig, seed: int, control: str = "none", out: Path = Path("runs"),
            data_dir: str | None = None, progress: bool = False,
            wandb: WandbOptions | None = None) -> RunDir:
    """Train every level of one arm that is not finished yet; return its run directory."""
    return train_suite(task, [suite_arm(task, seed, control, out)], data_dir, progress, wandb)[0]
