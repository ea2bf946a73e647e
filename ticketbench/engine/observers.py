"""Observers of the level loop: the terminal (a line per finished level with the ETA) and W&B
(one tracker per arm)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger

from ticketbench.engine.arms import Arm
from ticketbench.engine.loop import Observer
from ticketbench.engine.record import level_line
from ticketbench.summary import experiment_summary
from ticketbench.tracking import ReplicaLogger, Tracker, open_tracker
from ticketbench.training.level import LevelResult
from ticketbench.training.progress import Eta
from ticketbench.wandb_mode import WandbOptions

log = logging.getLogger(__name__)


@dataclass
class Terminal(Observer):
    """One line per finished level; the last line of a group adds the ETA of the levels left."""

    eta: Eta

    @classmethod
    def for_arms(cls, arms: Sequence[Arm]) -> Terminal:
        steps = sum(arm.steps(level) for arm in arms for level in arm.todo)
        return cls(Eta(steps))

    def levels_done(self, arms: Sequence[Arm], records: Sequence[dict[str, Any]],
                    results: Sequence[LevelResult]) -> None:
        lines = [level_line(record) for record in records]
        lines[-1] += f"  | {self.eta.level_done(results[0].steps * len(arms), results[0].seconds)}"
        log.info("\n".join(lines))


class Tracking(Observer):
    """Each arm's W&B run (see :mod:`ticketbench.tracking`): its metrics come through
    :meth:`logger`, its levels, θ_k and the end of the experiment through the loop."""

    def __init__(self, arms: Sequence[Arm], options: WandbOptions | None) -> None:
        self.trackers: dict[int, Tracker] = {}
        for arm in arms:
            tracker = open_tracker(arm.run, arm.network.protocol, arm.seed, options)
            if tracker:
                self.trackers[id(arm)] = tracker

    def logger(self, arms: Sequence[Arm]) -> Logger | None:
        """Where the metrics of ``arms`` training together go (None: nowhere)."""
        loggers = [self.trackers[id(arm)].logger for arm in arms if id(arm) in self.trackers]
        if not loggers:
            return None
        return loggers[0] if len(arms) == 1 else ReplicaLogger(loggers)

    def rewind_point(self, arm: Arm) -> None:
        if id(arm) in self.trackers:
            self.trackers[id(arm)].rewind_point(arm.run.rewind_files())

    def levels_done(self, arms: Sequence[Arm], records: Sequence[dict[str, Any]],
                    results: Sequence[LevelResult]) -> None:
        for arm, record in zip(arms, records, strict=True):
            if id(arm) in self.trackers:
                self.trackers[id(arm)].level_done(record, arm.run.records(), arm.run.mask_path(record["level"]))

    def experiment_done(self) -> None:
        for tracker in self.trackers.values():
            with tempfile.TemporaryDirectory() as tmp:
                summary = experiment_summary(tracker.run.path, tracker.task, Path(tmp))
                tracker.experiment_done(summary.figures, summary.claim_rows, summary.verdicts)

    def close(self, failed: bool) -> None:
        for tracker in self.trackers.values():
            tracker.close(failed)
