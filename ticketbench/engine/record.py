"""The one record of a finished level, for every arm kind and both runners, and its terminal line."""

from __future__ import annotations

from typing import Any

from ticketbench.pruning.masks import layer_remaining_percent, remaining_percent
from ticketbench.storage.directory import Protocol
from ticketbench.storage.schema import finite_or_none
from ticketbench.training.callback import Validations
from ticketbench.training.level import LevelResult


def level_record(protocol: Protocol, seed: int, arm: str, level: int, start_about: dict[str, Any],
                 masks: dict, result: LevelResult, replicas: int = 1) -> dict[str, Any]:
    """The per-level record (stable schema; accuracies are fractions in [0, 1]); ``start_about``:
    what the arm adds about the level's start (a method's target density), ``replicas``: how many
    arms trained together."""
    return {
        "task": protocol.name, "seed": seed, "arm": arm, "level": level,
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
        **result.arithmetic,
        **({"resumed_from_steps": result.resumed_from} if result.resumed_from else {}),
        **({"validation": validation_curve(result.validations)} if result.validations is not None else {}),
        **result.about,
    } | start_about | ({"replicas": replicas} if replicas > 1 else {})


def validation_curve(validations: Validations) -> dict[str, list]:
    """A level's validations as columns: ``step``, ``loss``, ``acc`` (null where not finite)."""
    steps, losses, accs = (list(column) for column in zip(*validations, strict=True)) if validations else ([], [], [])
    return {"step": steps, "loss": losses, "acc": accs}


def level_line(rec: dict) -> str:
    """One line per finished level for the terminal."""
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}%"

    early = "" if rec["early_stop_step"] is None else (
        f"early stop {rec['early_stop_step']}  test acc there {pct(rec['test_acc_at_early_stop'])}  ")
    return (f"[{rec['arm']} seed {rec['seed']}] level {rec['level']:2d}  P_m {rec['weights_remaining_percent']:6.2f}%  "
            f"{early}final test acc {pct(rec['test_acc_final'])}  {rec['seconds']:.0f} s"
            + ("  DIVERGED" if rec["diverged"] else ""))
