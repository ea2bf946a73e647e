"""The copies of an instability analysis as an arm kind of the level loop.

Each analysis point is trained twice from the same masked θ_k: copy c is an arm of one level (the
point's), whose data order is its own stream of the seed (copy 0's for both under
``same_noise``), and what its level leaves is the trained copy in the analysis's ``copies/``, with
the digest of the θ_k it started from, instead of a level record. A copy already trained from the
same θ_k is done; one trained from another θ_k trains again. The copies run through
:func:`ticketbench.engine.loop.run_arms` one at a time (:class:`CopyRunner`), so each trains
exactly as a level of the suite does."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ticketbench.atomic import atomic_write
from ticketbench.controls import TICKET
from ticketbench.engine.arms import Arm, Network, Start
from ticketbench.engine.suite_runner import SuiteRunner
from ticketbench.errors import RunError
from ticketbench.seeding import derive_seed
from ticketbench.storage.analysis_dir import StabilityDir
from ticketbench.storage.provenance import on_cpu
from ticketbench.storage.run_dir import RunDir
from ticketbench.storage.schema import finite_or_none
from ticketbench.training.level import LevelResult


@dataclass
class Copy:
    """A trained copy: its final parameters and buffers, and what its level measured."""

    state: dict[str, torch.Tensor]
    test_acc_final: float | None
    steps: int
    seconds: float
    diverged: bool
    start: str  # digest of the θ_k it was trained from


def cached(path: Path) -> dict[str, Any] | None:
    """The contents of a cache file in ``copies/``; None when there is none or it does not load
    (it is then removed and trained again)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 - any damage means: train it again
        path.unlink()
        return None


class CopyArm(Arm):
    """Copy ``index`` of the point ``name`` at ``level``, trained from ``start`` (whose digest is
    ``origin``) into ``run``'s ``copies/``."""

    def __init__(self, network: Network, run: StabilityDir, seed: int, name: str, level: int, index: int,
                 start: Start, origin: str, same_noise: bool) -> None:
        self.network, self.seed, self.name, self.out = network, seed, f"{name}-copy{index}", run.path.parent.parent
        self.levels, self.todo = [level], [level]
        self.run = run  # type: ignore[assignment]  # an analysis directory, not one of levels
        self.imp = RunDir.for_arm(self.out, network.protocol, seed, TICKET.arm)
        self.path = run.copy_path(name, index)
        self.point_start, self.origin = start, origin
        self._noise = derive_seed(seed, "instability-copy", 0 if same_noise else index)
        self.copy: Copy | None = None  # the copy, once found or trained (read from disk once)

    @property
    def noise(self) -> int:
        return self._noise

    @property
    def finished(self) -> str:
        return f"{self.name} already trained"

    def steps(self, level: int) -> int:
        return self.network.protocol.max_steps - self.point_start.step  # type: ignore[attr-defined]

    def captures_rewind(self, level: int) -> bool:
        return False

    def prepare(self) -> None:
        """The analysis wrote meta.json for its points."""

    def check(self) -> int | None:
        """A diverged copy is recorded in its point's record, and the analysis goes on."""
        return None

    def done(self, level: int) -> bool:
        found = cached(self.path)
        if found is not None and found.get("start") == self.origin:
            self.copy = Copy(**found)
        return self.copy is not None

    def start(self, level: int, data: object) -> Start:
        begin = self.point_start
        return Start(copy.deepcopy(begin.model), begin.masks, begin.step, begin.optimizer_state)

    def begin(self, level: int, start: Start) -> None:
        """The masks are the point's (its IMP run's, or every weight)."""

    def keep(self, level: int, start: Start, result: LevelResult, record: dict[str, Any], levels: int) -> bool:
        trained = Copy(on_cpu(start.model.state_dict()), finite_or_none(result.test_acc_final), result.steps,
                       result.seconds, result.diverged, self.origin)
        atomic_write(self.path, lambda f: torch.save(vars(trained), f))
        self.copy = trained
        return False

    def trained(self) -> Copy:
        """The copy this arm trained (or found trained)."""
        if self.copy is None:
            raise RunError(f"{self.path} was not trained; run the same command to train the copy again")
        return self.copy


@dataclass
class CopyRunner(SuiteRunner):
    """Trains copies one at a time (a copy equals the same level trained alone), from the start."""

    def groups(self, arms: list[Arm]) -> list[list[Arm]]:  # type: ignore[override]
        return [[arm] for arm in arms]

    def begin(self, level: int, arms: list[Arm], starts: list[Start]) -> None:  # type: ignore[override]
        """Copies have no checkpoints of a level in progress: a killed copy trains again."""
