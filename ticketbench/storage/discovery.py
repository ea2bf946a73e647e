"""Finding the runs under a directory and grouping them: one task under one configuration, by seed
and arm, with the instability analyses' points as arms of their own."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ticketbench.errors import RunError
from ticketbench.storage.analysis_dir import StabilityDir
from ticketbench.storage.directory import Directory
from ticketbench.storage.run_dir import RunDir, levels_asked
from ticketbench.storage.schema import ANALYSIS_ARMS

Records = dict[int, dict]  # level -> record


def open_run(path: Path) -> RunDir | StabilityDir:
    """The run directory ``path`` (it holds meta.json): a :class:`StabilityDir` when it holds an
    instability analysis, else a :class:`RunDir` of levels."""
    run = RunDir(Path(path))
    return StabilityDir(run.path) if run.meta()["arm"] in ANALYSIS_ARMS else run


@dataclass
class RunSet:
    """The runs of one task under one configuration: seed -> arm -> level -> record. ``paths``
    holds the instability analyses' records the same way, under the arms ``instability@k<K>``,
    ``instability-<control>@k<K>`` and ``instability-same-noise@k<K>`` (see :func:`path_arm`).
    ``reached`` holds, for the arms still in progress (fewer levels finished than asked), the P_m
    of their last finished level (infinite before the first): claims below it are not answered yet."""

    task: str
    fingerprint: str
    runs: list[Directory]
    seeds: dict[int, dict[str, Records]] = field(default_factory=dict)
    paths: dict[int, dict[str, Records]] = field(default_factory=dict)
    reached: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def all_seeds(self) -> list[int]:
        """The seeds of the level records and of the analysed paths."""
        return sorted(self.seeds.keys() | self.paths.keys())

    def arms(self, seed: int) -> dict[str, Records]:
        """Every arm of ``seed`` a claim can read: the level records and the analysed paths."""
        return self.seeds.get(seed, {}) | self.paths.get(seed, {})

    @property
    def root(self) -> Path:
        """The directory that holds the runs (where verdicts and reports are written)."""
        return Path(os.path.commonpath([str(r.path.resolve().parent) for r in self.runs]))


def discover(paths: list[Path]) -> list[RunDir | StabilityDir]:
    """Run directories named directly or found under the given directories."""
    found: list[RunDir | StabilityDir] = []
    for path in map(Path, paths):
        if (path / "meta.json").is_file():
            found.append(open_run(path))
        elif path.is_dir():
            found += [open_run(m.parent) for m in sorted(path.glob("**/meta.json"))]
            orphan = next((d.parent for d in sorted(path.glob("**/levels")) if not (d.parent / "meta.json").is_file()),
                          None)
            if orphan is not None:
                raise RunError(f"{orphan}: holds levels but no meta.json; restore meta.json, or move the directory "
                               "away to leave it out")
        else:
            raise RunError(f"{path} does not exist")
    if not found:
        raise RunError(f"no run directories (with meta.json) under {', '.join(map(str, paths))}")
    unique = {run.path.resolve(): run for run in found}  # a directory named twice counts once
    return list(unique.values())


def one_configuration(runs: list[Directory], metas: list[dict]) -> tuple[str, str]:
    """The (task, fingerprint) the runs share; refuse a mix, or one arm and seed given twice (a copy)."""
    keys = sorted({(m["task"], m["fingerprint"]) for m in metas})
    if len(keys) > 1:
        raise RunError("runs of different tasks or configurations cannot be combined: "
                       + ", ".join(f"{t} ({f})" for t, f in keys))
    first: dict[tuple[str, int], Path] = {}
    for run, meta in zip(runs, metas, strict=True):
        key = (meta["arm"], meta["seed"])
        if key in first:
            both = f"{run.path} is given twice" if first[key].resolve() == run.path.resolve() else \
                f"{first[key]} and {run.path} are both arm {meta['arm']} seed {meta['seed']}"
            raise RunError(f"{both}; give each arm and seed once")
        first[key] = run.path
    return keys[0]


def load_run_set(paths: list[Path]) -> RunSet:
    """Group runs by seed and arm; refuse to mix tasks or configurations, or to count a run twice."""
    runs = discover(paths)
    metas = [r.meta() for r in runs]
    task, fingerprint = one_configuration(runs, metas)
    run_set = RunSet(task=task, fingerprint=fingerprint, runs=runs)
    for run, meta in zip(runs, metas, strict=True):
        if isinstance(run, StabilityDir):
            for rec in run.point_records():
                run_set.paths.setdefault(meta["seed"], {}).setdefault(path_arm(rec), {})[rec["level"]] = rec
        else:
            records = run.records()
            run_set.seeds.setdefault(meta["seed"], {})[meta["arm"]] = {r["level"]: r for r in records}
            asked = levels_asked(meta)
            if asked is not None and len(records) < asked and not any(r["diverged"] for r in records):
                last = records[-1]["weights_remaining_percent"] if records else math.inf  # inf: none finished
                run_set.reached.setdefault(meta["seed"], {})[meta["arm"]] = last
    return run_set


def path_group(rec: dict) -> str:
    """The analysis (``instability`` or ``instability-same-noise``) of an instability record, with
    ``-<control>`` for subnetworks of a control."""
    return rec["arm"] if rec["control"] == "none" else f"{rec['arm']}-{rec['control']}"


def path_arm(rec: dict) -> str:
    """The arm name under which claims read an instability record: its :func:`path_group` and ``@k<K>``."""
    return f"{path_group(rec)}@k{rec['rewind_step']}"
