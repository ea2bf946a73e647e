"""The IMP level loop, the one loop of the suite: begin a level, fit it, prune, record, tell the
observers. It drives arm kinds (:mod:`ticketbench.engine.arms`, :mod:`ticketbench.engine.method_arm`)
through a runner (:mod:`ticketbench.engine.suite_runner` for the suite's tasks,
:mod:`ticketbench.engine.module_runner` for a user's LightningModule)."""

from __future__ import annotations

import logging
import typing
from collections.abc import Callable, Sequence
from contextlib import ExitStack, nullcontext
from typing import Any

from ticketbench.atomic import remove_partial_writes
from ticketbench.engine.arms import Arm, Start
from ticketbench.engine.record import level_record
from ticketbench.errors import RunError
from ticketbench.storage.directory import Protocol
from ticketbench.training.level import LevelResult

log = logging.getLogger(__name__)


class Runner(typing.Protocol):
    """How levels train. ``writes``: whether this process writes the run directories (under DDP
    only rank 0 does)."""

    protocol: Protocol
    writes: bool

    def load(self, arms: Sequence[Arm]) -> None:
        """Everything training needs that can fail (the data), before anything is written."""

    def groups(self, arms: Sequence[Arm]) -> list[list[Arm]]:
        """The arms due for a level, in the groups that train together."""

    def data(self, arm: Arm) -> object:
        """What an arm's :meth:`~Arm.start` may read (the training data of its seed)."""

    def begin(self, level: int, arms: Sequence[Arm], starts: Sequence[Start]) -> object:
        """Check how ``level`` of ``arms`` begins (e.g. midway, from checkpoints); writes nothing."""

    def fit(self, level: int, arms: Sequence[Arm], starts: Sequence[Start], begun: object) -> list[LevelResult]:
        """Train the level; each ``start.model`` then holds its final weights."""

    def level_written(self, level: int, arms: Sequence[Arm]) -> None:
        """After the level's files are written (DDP: the ranks meet)."""

    def follow(self, arm: Arm) -> None:
        """In a process that does not write: until the writer has prepared ``arm``'s run directory."""


class Observer:
    """Told of every finished level and of the end of the experiment."""

    def rewind_point(self, arm: Arm) -> None:
        """θ_k of ``arm`` was written."""

    def levels_done(self, arms: Sequence[Arm], records: Sequence[dict[str, Any]],
                    results: Sequence[LevelResult]) -> None:
        """A group of arms finished a level."""

    def experiment_done(self) -> None:
        """Every level asked for is finished."""

    def close(self, failed: bool) -> None:
        """The run ends (``failed``: by an exception)."""


def run_levels(runner: Runner, arms: list[Arm], observers: Sequence[Observer]) -> None:
    """Train the levels still to do of every arm, the lowest level first."""
    pending = {id(arm): list(arm.todo) for arm in arms}
    while any(pending.values()):
        level = min(todo[0] for todo in pending.values() if todo)
        for group in runner.groups([arm for arm in arms if pending[id(arm)][:1] == [level]]):
            starts = [arm.start(level, runner.data(arm)) for arm in group]
            begun = runner.begin(level, group, starts)
            for arm, start in zip(group, starts, strict=True):
                if runner.writes:
                    arm.begin(level, start)
            results = runner.fit(level, group, starts, begun)
            records = [_record(runner, observers, arm, level, start, result, len(group))
                       for arm, start, result in zip(group, starts, results, strict=True)]
            runner.level_written(level, group)
            for observer in observers:
                observer.levels_done(group, records, results)
            for arm, result in zip(group, results, strict=True):
                pending[id(arm)] = [] if result.diverged else pending[id(arm)][1:]


def _record(runner: Runner, observers: Sequence[Observer], arm: Arm, level: int, start: Start,
            result: LevelResult, together: int) -> dict[str, Any]:
    """The record of a trained level; the process that writes keeps what the level leaves."""
    record = level_record(runner.protocol, arm.seed, arm.name, level, start.about, start.masks, result, together)
    if runner.writes and arm.keep(level, start, result, record, runner.protocol.levels):
        for observer in observers:
            observer.rewind_point(arm)
    return record


def run_arms(runner: Runner, arms: list[Arm], observers: Callable[[list[Arm]], list[Observer]]) -> None:
    """Train the arms with levels to do; say which are finished already.

    What training needs loads first (the data), then every run directory is locked for the whole
    run (by the process that writes); what an interrupted write left is removed, meta.json is
    written or checked, and the levels finished meanwhile are skipped. ``observers`` are made for
    the arms that train. An arm with a diverged level trains no further, and the run ends with a
    :class:`RunError` naming it (after the other arms have trained)."""
    if any(arm.todo for arm in arms):
        runner.load(arms)
    with ExitStack() as held:
        for arm in arms:
            held.enter_context(arm.run.lock() if runner.writes else nullcontext())
        for arm in arms:
            if runner.writes:
                remove_partial_writes(arm.run.path)
                arm.prepare()  # meta.json written for a new run, checked (and every record with it) for an old one
            else:
                runner.follow(arm)
            stopped = arm.check()
            arm.todo = [] if stopped is not None else [lvl for lvl in arm.todo if not arm.done(lvl)]
            if not arm.todo and runner.writes:
                log.info(f"{arm.run.path}: {arm.finished if stopped is None else f'diverged at level {stopped}'}")
        training = [arm for arm in arms if arm.todo]
        if training:
            watching = observers(training)
            failed = True
            try:
                run_levels(runner, training, watching)
                for observer in watching:
                    observer.experiment_done()
                failed = False
            finally:
                for observer in watching:
                    observer.close(failed)
    diverged = [(arm.run, level) for arm in arms if (level := arm.check()) is not None]
    if diverged:
        run, level = diverged[0]
        others = f" (and {len(diverged) - 1} more arm(s))" if len(diverged) > 1 else ""
        raise RunError(f"{run.path}: level {level} diverged (non-finite training or validation loss){others}; it is "
                       "recorded as diverged and no later level is trained; lower the learning rate "
                       "(--set optimizer.lr=...)")
