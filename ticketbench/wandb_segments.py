"""The offline W&B segments of a run directory: what ``ticketbench runs`` lists and a finished
run says to upload. Paths only, so that listing runs imports neither W&B nor Lightning."""

from __future__ import annotations

from pathlib import Path

from ticketbench.storage.directory import Directory


def offline_runs(run: Directory) -> list[Path]:
    """The offline W&B segments written in a run directory, oldest first."""
    return sorted((run.path / "wandb").glob("offline-run-*"))


def unsynced(run: Directory) -> list[Path]:
    """The offline segments not uploaded yet (``wandb sync`` marks the uploaded ones)."""
    return [p for p in offline_runs(run) if not any(p.glob("*.wandb.synced"))]
