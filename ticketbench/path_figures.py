"""Figures of instability analyses: the error along the linear path between the two copies
(one curve per analysed point) and instability against % weights remaining and against the
rewind step k. Means over seeds, with the seeds' range as a band."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ticketbench.atomic import save_figure
from ticketbench.storage.discovery import RunSet, path_group
from ticketbench.storage.schema import STABLE_BELOW

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _label(group: str) -> str:
    return {"instability": "winning tickets (level 0: dense)",
            "instability-same-noise": "same noise (negative control)"}.get(group, group.removeprefix("instability-"))


def _mean_band(values: list[list[float]]) -> tuple[list[float], list[float], list[float]]:
    columns = list(zip(*values, strict=True))
    return [sum(c) / len(c) for c in columns], [min(c) for c in columns], [max(c) for c in columns]


def _by_point(run_set: RunSet) -> dict[tuple[str, int, int], list[dict]]:
    """(analysis group, k, level) -> the records of every seed."""
    found: dict[tuple[str, int, int], list[dict]] = {}
    for arms in run_set.paths.values():
        for records in arms.values():
            for rec in records.values():
                found.setdefault((path_group(rec), rec["rewind_step"], rec["level"]), []).append(rec)
    return found


def path_figures(run_set: RunSet, out_dir: Path) -> list[Path]:
    """``instability_path`` (test error along the path, one panel per analysis group) and
    ``instability`` (instability against P_m, and against k where several k were analysed);
    PNG and SVG. None without instability records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = _by_point(run_set)
    if not points:
        return []
    groups = sorted({g for g, _, _ in points})
    written: list[Path] = []

    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.0), dpi=150, squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        for (g, k, _), recs in sorted(points.items()):
            if g != group:
                continue
            alphas = recs[0]["alphas"]
            mean, lo, hi = _mean_band([[100 * e for e in r["test_error"]] for r in recs])
            line, = ax.plot(alphas, mean, marker="o", ms=2.5,
                            label=f"k={k}, P_m {recs[0]['weights_remaining_percent']:.1f}% (n={len(recs)})")
            if len(recs) > 1:
                ax.fill_between(alphas, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_xlabel("α (0: copy 1, 1: copy 2)")
        ax.set_ylabel("Test error (%)")
        ax.set_title(f"{run_set.task}: {_label(group)}", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    written += _save(fig, out_dir / "instability_path")
    plt.close(fig)

    several_k = {g for g in groups if len({k for gg, k, lv in points if gg == g and lv == 0}) > 1}
    fig, axes = plt.subplots(1, 1 + bool(several_k), figsize=(5.6 * (1 + bool(several_k)), 4.0), dpi=150,
                             squeeze=False)
    ax = axes[0][0]
    for group in groups:
        for k in sorted({k for g, k, _ in points if g == group}):
            chosen = sorted((lv, recs) for (g, kk, lv), recs in points.items() if g == group and kk == k)
            x = [recs[0]["weights_remaining_percent"] for _, recs in chosen]
            if len(x) < 2 and group in several_k:
                continue  # a lone dense point per k: drawn against k on the right
            _instability_line(ax, x, [recs for _, recs in chosen], f"{_label(group)}, k={k}")
    ax.set_xscale("log")
    ticks = sorted({round(recs[0]["weights_remaining_percent"], 1) for recs in points.values()}, reverse=True)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("Percent of weights remaining (P_m)")
    _instability_axes(ax, run_set.task)
    if several_k:
        ax = axes[0][1]
        for group in sorted(several_k):
            chosen = sorted((k, recs) for (g, k, lv), recs in points.items() if g == group and lv == 0)
            _instability_line(ax, [k for k, _ in chosen], [recs for _, recs in chosen], f"{_label(group)}: dense")
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlabel("Rewind step k")
        _instability_axes(ax, run_set.task)
    written += _save(fig, out_dir / "instability")
    plt.close(fig)
    return written


def _instability_line(ax: Axes, x: list[float], recs: list[list[dict]], label: str) -> None:
    values = [[100 * r["instability_test"] for r in group] for group in recs]
    mean = [sum(v) / len(v) for v in values]
    line, = ax.plot(x, mean, marker="o", ms=3.5, label=label)
    if any(len(v) > 1 for v in values):
        ax.fill_between(x, [min(v) for v in values], [max(v) for v in values],
                        color=line.get_color(), alpha=0.2, linewidth=0)


def _instability_axes(ax: Axes, task: str) -> None:
    ax.axhline(100 * STABLE_BELOW, color="gray", linestyle=":", linewidth=1,
               label="stable below 2 pp (LMC 2020)")
    ax.set_ylabel("Instability, test (pp)")
    ax.set_title(f"{task}: instability (mean over seeds, range shaded)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def _save(fig: Figure, stem: Path) -> list[Path]:
    fig.tight_layout()
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        save_figure(fig, path)
    return paths
