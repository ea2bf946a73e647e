"""``ticketbench compare``: every method of one task and configuration against IMP.

For each arm other than IMP and each of its levels, the test accuracy (at early stop, or at the
end of training for tasks without validation) is compared with the IMP level of nearest P_m
(within a factor 1.25). With several seeds the difference is taken seed by seed and given with a
95% t-interval; with one seed it is a single value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ticketbench.atomic import save_figure
from ticketbench.controls import TICKET
from ticketbench.scoring import Unmeasurable, accuracy_pct, nearest_level
from ticketbench.stats import Interval
from ticketbench.storage.discovery import RunSet

REFERENCE = TICKET.arm


@dataclass
class Point:
    """One level of one arm: P_m, accuracy over seeds (in %), and its difference to IMP."""

    arm: str
    p_m: float
    accuracy: Interval
    imp_p_m: float | None
    delta: Interval | None


def points(run_set: RunSet) -> list[Point]:
    """Every level of every arm with its difference to IMP where IMP has a level near its P_m."""
    arms = sorted({arm for per_seed in run_set.seeds.values() for arm in per_seed})
    out = []
    for arm in arms:
        levels = sorted({lvl for per_seed in run_set.seeds.values() for lvl in per_seed.get(arm, {})})
        for level in levels:
            records = [s[arm][level] for s in run_set.seeds.values() if level in s.get(arm, {})]
            values = [v for v in map(accuracy_pct, records) if v is not None]
            if not values:
                continue
            p_m = sum(r["weights_remaining_percent"] for r in records) / len(records)
            deltas, imp_p_m = [], None
            if arm != REFERENCE:
                for per_seed in run_set.seeds.values():
                    if level not in per_seed.get(arm, {}) or REFERENCE not in per_seed:
                        continue
                    try:
                        imp = nearest_level(per_seed[REFERENCE], p_m)
                    except Unmeasurable:
                        continue
                    ours, theirs = accuracy_pct(per_seed[arm][level]), accuracy_pct(imp)
                    if ours is not None and theirs is not None:
                        deltas.append(ours - theirs)
                        imp_p_m = imp["weights_remaining_percent"]
            out.append(Point(arm, p_m, Interval.of(values), imp_p_m, Interval.of(deltas) if deltas else None))
    return out


def _fmt(iv: Interval | None, sign: bool = False) -> str:
    """``98.12``, or with several seeds ``98.12 ± 0.10``; differences ``+0.31 [-0.05, +0.67]``."""
    if iv is None:
        return "—"
    text = f"{iv.mean:+.2f}" if sign else f"{iv.mean:.2f}"
    if iv.n == 1:
        return text
    return f"{text} [{iv.low:+.2f}, {iv.high:+.2f}]" if sign else f"{text} ± {iv.high - iv.mean:.2f}"


def markdown(run_set: RunSet, found: list[Point]) -> str:
    seeds = sorted(run_set.seeds)
    spread = (", mean and 95% t-interval of the per-seed differences." if len(seeds) > 1
              else " (one seed: single values).")
    lines = [f"# {run_set.task}: methods against IMP", "",
             f"Configuration {run_set.fingerprint}; seeds {', '.join(map(str, seeds))}. Test accuracy (%) at "
             "early stop (or at the end of training without a validation split); Δ IMP = accuracy minus that of "
             "the IMP level of nearest P_m" + spread, "",
             "| arm | P_m (%) | accuracy | IMP level P_m (%) | Δ IMP (pp) |", "|---|---|---|---|---|"]
    for p in found:
        imp = "—" if p.imp_p_m is None else f"{p.imp_p_m:.1f}"
        lines.append(f"| {p.arm} | {p.p_m:.1f} | {_fmt(p.accuracy)} | {imp} | {_fmt(p.delta, sign=True)} |")
    return "\n".join(lines) + "\n"


def figure(run_set: RunSet, found: list[Point], out_dir: Path) -> list[Path]:
    """Accuracy against % weights remaining, one line per arm, IMP as the black reference line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), dpi=150)
    arms = sorted({p.arm for p in found}, key=lambda a: (a != REFERENCE, a))
    low = min(p.p_m for p in found)
    ticks = [t for t in (100, 51.2, 21.0, 8.6, 3.5, 1.4, 0.6) if t >= low * 0.8]
    for ax in axes:
        for arm in arms:
            mine = sorted((p for p in found if p.arm == arm), key=lambda p: -p.p_m)
            style = {"color": "black", "linewidth": 2.2, "zorder": 5} if arm == REFERENCE else {"linewidth": 1.2}
            ax.plot([p.p_m for p in mine], [p.accuracy.mean for p in mine], marker="o", ms=3.5,
                    label="IMP (reference)" if arm == REFERENCE else arm, **style)
            if any(p.accuracy.n > 1 for p in mine):
                ax.fill_between([p.p_m for p in mine], [p.accuracy.low for p in mine], [p.accuracy.high for p in mine],
                                alpha=0.15, color=ax.lines[-1].get_color(), linewidth=0)
        ax.set_xscale("log")
        ax.set_xlim(105, low * 0.8)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("Percent of weights remaining (P_m)")
        ax.grid(True, alpha=0.3)
    reference = [p.accuracy.mean for p in found if p.arm == REFERENCE] or [p.accuracy.mean for p in found]
    axes[1].set_ylim(min(reference) - 4, max(p.accuracy.mean for p in found) + 0.3)
    axes[0].set_ylabel("Test accuracy (%)")
    axes[0].set_title("all levels")
    axes[1].set_title(f"zoom: down to 4 pp below {REFERENCE.upper()}'s lowest")
    axes[0].legend(fontsize=7, ncol=2)
    n = len(run_set.seeds)
    fig.suptitle(f"{run_set.task}: pruning methods vs IMP ({n} seed{'s' * (n > 1)})")
    fig.tight_layout()
    paths = [out_dir / f"compare.{suffix}" for suffix in ("png", "svg")]
    for path in paths:
        save_figure(fig, path)
    plt.close(fig)
    return paths
