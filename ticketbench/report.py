"""Tables of per-level records across the arms of one task and seed."""

from __future__ import annotations

from pathlib import Path

from ticketbench.runs import RunDir


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def level_table(run_dirs: list[Path]) -> str:
    """A Markdown table: one row per level, for each arm its early-stop step and test accuracies (%)."""
    runs = [RunDir(Path(p)) for p in run_dirs]
    arms = [r.meta()["arm"] for r in runs]
    by_level: dict[int, dict[str, dict]] = {}
    for arm, run in zip(arms, runs, strict=True):
        for rec in run.records():
            by_level.setdefault(rec["level"], {})[arm] = rec
    header = ["level", "P_m %"]
    for arm in arms:
        header += [f"{arm} early-stop step", f"{arm} test acc @ early stop %", f"{arm} test acc final %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for level in sorted(by_level):
        recs = by_level[level]
        p_m = next(iter(recs.values()))["weights_remaining_percent"]
        row = [str(level), f"{p_m:.1f}"]
        for arm in arms:
            rec = recs.get(arm)
            row += ["—", "—", "—"] if rec is None else [
                str(rec["early_stop_step"]), _pct(rec["test_acc_at_early_stop"]), _pct(rec["test_acc_final"])]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
