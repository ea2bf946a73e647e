"""The rows of ``ticketbench runs``: every run directory's task, arm, seed, levels, status and
W&B segments."""

from __future__ import annotations

from typing import Any

import torch

from ticketbench.storage.analysis_dir import StabilityDir
from ticketbench.storage.run_dir import RunDir, levels_asked
from ticketbench.wandb_segments import offline_runs, unsynced


def run_status(meta: dict[str, Any], records: list[dict[str, Any]], checkpoint: int | None = None) -> str:
    """complete, incomplete (the same command resumes it), in progress (a level stopped midway at
    step ``checkpoint``, which the same command resumes from) or diverged, from a run's meta and records."""
    diverged = [r["level"] for r in records if r.get("diverged")]
    if diverged:
        return f"diverged at level {diverged[0]}"
    asked = levels_asked(meta)
    if asked is not None and len(records) >= asked:
        return "complete"
    return "incomplete" if checkpoint is None else f"in progress (checkpoint at step {checkpoint:,})"


def _checkpoint_step(run: RunDir, records: list[dict[str, Any]]) -> int | None:
    """The step of the checkpoint of the level after the last finished one, if there is one."""
    path = run.progress_path(records[-1]["level"] + 1 if records else run.meta().get("first_level", 0))
    if not path.is_file():
        return None
    try:
        return int(torch.load(path, weights_only=True, mmap=True)["step"])
    except Exception:  # noqa: BLE001 - damaged: resuming will say so in one line
        return None


def run_row(run: RunDir | StabilityDir) -> dict[str, str]:
    """One run directory as display strings for ``ticketbench runs`` (P_m reached: of the last
    finished level); for an instability analysis the points analysed of those asked, and the
    density of the last point record in file order (k, level, control)."""
    meta = run.meta()
    if isinstance(run, StabilityDir):
        records = run.point_records()
        asked: int | None = len(meta.get("points", [])) or None
        status = "complete" if asked is not None and len(records) >= asked else "incomplete"
        unit = " points"
    else:
        records, asked, unit = run.records(), levels_asked(meta), ""
        status = run_status(meta, records, _checkpoint_step(run, records))
    done = (f"{len(records)}/{asked}" if asked is not None else str(len(records))) + unit
    last = records[-1] if records else None
    segments, pending = len(offline_runs(run)), len(unsynced(run))
    wandb = f"{segments} offline, {pending} to sync" if segments else "-"
    return {"task": meta["task"], "run": str(run.path), "arm": meta["arm"], "seed": str(meta["seed"]),
            "levels": done, "P_m reached": f"{last['weights_remaining_percent']:.1f}%" if last else "-",
            "status": status, "W&B": wandb}
