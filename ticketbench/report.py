"""Tables and figures: per-level tables, the verdict table, and the paper-style figures."""

from __future__ import annotations

from pathlib import Path

from ticketbench.atomic import save_figure
from ticketbench.controls import CONTROLS, TICKET
from ticketbench.scoring import ClaimResult, accuracy_pct
from ticketbench.stats import Interval
from ticketbench.storage.analysis_dir import StabilityDir
from ticketbench.storage.discovery import RunSet, one_configuration
from ticketbench.storage.run_dir import RunDir
from ticketbench.storage.schema import STABLE_BELOW

ARM_STYLE = {c.arm: (c.label, c.color) for c in CONTROLS.values()}  # the arms of an IMP experiment


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def level_table(run_dirs: list[Path]) -> str:
    """A Markdown table: one row per level, for each run its early-stop step and test accuracies
    (%); columns are named by arm, and by arm and seed when the runs span several seeds. Tasks
    without a validation split (no early stop) show the final test accuracy only."""
    runs = [RunDir(Path(p)) for p in run_dirs]
    metas = [r.meta() for r in runs]
    one_configuration(runs, metas)
    several = len({m["seed"] for m in metas}) > 1
    names = [f"{m['arm']} seed {m['seed']}" if several else m["arm"] for m in metas]
    by_run = [{rec["level"]: rec for rec in r.records()} for r in runs]
    early = any(rec["early_stop_step"] is not None for recs in by_run for rec in recs.values())
    fields = [("early-stop step", lambda r: str(r["early_stop_step"])),
              ("test acc @ early stop %", lambda r: _pct(r["test_acc_at_early_stop"]))] if early else []
    fields.append(("test acc final %", lambda r: _pct(r["test_acc_final"])))
    header = ["level", "P_m %"] + [f"{name} {label}" for name in names for label, _ in fields]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for level in sorted({lvl for recs in by_run for lvl in recs}):
        p_m = next(recs[level] for recs in by_run if level in recs)["weights_remaining_percent"]
        row = [str(level), f"{p_m:.1f}"]
        for recs in by_run:
            row += [show(recs[level]) if level in recs else "—" for _, show in fields]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def path_table(run_dirs: list[Path]) -> str:
    """A Markdown table of instability analyses: one row per analysed point (analysis, rewind
    step, level, subnetwork, P_m), for each seed the instability on the test and the training set
    (pp), then the mean and range over seeds of the test instability and how many seeds are
    stable (< 2 pp)."""
    runs = [StabilityDir(Path(p)) for p in run_dirs]
    metas = [r.meta() for r in runs]
    one_configuration(runs, metas)
    seeds = sorted({m["seed"] for m in metas})
    by_point: dict[tuple[str, int, int, str], dict[int, dict]] = {}
    for run, meta in zip(runs, metas, strict=True):
        for rec in run.point_records():
            key = (meta["arm"], rec["rewind_step"], rec["level"], rec["control"])
            by_point.setdefault(key, {})[meta["seed"]] = rec
    header = ["analysis", "k", "level", "subnetwork", "P_m %", *[f"seed {s} test / train pp" for s in seeds],
              "mean test pp (range)", "stable"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (arm, k, level, control), recs in sorted(by_point.items()):
        first = next(iter(recs.values()))
        what = "dense" if level == 0 else ("winning ticket" if control == "none" else control)
        row = [arm, str(k), str(level), what, f"{first['weights_remaining_percent']:.1f}"]
        row += [f"{100 * recs[s]['instability_test']:.2f} / {100 * recs[s]['instability_train']:.2f}"
                if s in recs else "—" for s in seeds]
        test = [100 * r["instability_test"] for r in recs.values()]
        stable = sum(v < 100 * STABLE_BELOW for v in test)
        row += [f"{sum(test) / len(test):.2f} ({min(test):.2f} to {max(test):.2f})", f"{stable}/{len(test)}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def mean_table(run_dirs: list[Path]) -> str:
    """A Markdown table over seeds: one row per level; for each arm the number of seeds, the mean
    early-stop step, and the mean test accuracy (%) with its 95% t-interval (the accuracy the
    claims read: at early stop, or final on a task without a validation split)."""
    runs = [RunDir(Path(p)) for p in run_dirs]
    metas = [r.meta() for r in runs]
    one_configuration(runs, metas)
    by_arm: dict[str, list[dict[int, dict]]] = {}
    for run, meta in zip(runs, metas, strict=True):
        by_arm.setdefault(meta["arm"], []).append({rec["level"]: rec for rec in run.records()})
    records = [rec for seeds in by_arm.values() for recs in seeds for rec in recs.values()]
    early = any(rec["early_stop_step"] is not None for rec in records)
    header = ["level", "P_m %"]
    for arm in by_arm:
        header += [f"{arm} seeds"] + ([f"{arm} early-stop step"] if early else []) + [f"{arm} test acc %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for level in sorted({rec["level"] for rec in records}):
        row = [str(level), f"{next(r for r in records if r['level'] == level)['weights_remaining_percent']:.1f}"]
        for seeds in by_arm.values():
            found = [recs[level] for recs in seeds if level in recs]
            accs = [a for a in map(accuracy_pct, found) if a is not None]
            steps = [r["early_stop_step"] for r in found if r["early_stop_step"] is not None]
            row.append(str(len(found)) if found else "—")
            if early:
                row.append(f"{sum(steps) / len(steps):,.0f}" if steps else "—")
            row.append(_interval(Interval.of(accs)) if accs else "—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _interval(iv: Interval) -> str:
    return f"{iv.mean:.2f}" if iv.n == 1 else f"{iv.mean:.2f} [{iv.low:.2f}, {iv.high:.2f}]"


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def claim_row(result: ClaimResult) -> dict[str, str]:
    """One claim as display strings."""
    c, iv = result.claim, result.interval
    paper = {"within": f"{_fmt(c.paper)} ± {_fmt(c.tolerance)}", ">=": f">= {_fmt(c.paper - c.tolerance)}",
             "<=": f"<= {_fmt(c.paper + c.tolerance)}"}[c.comparator]
    if iv is None:
        measured = "—"
    elif iv.n == 1:
        measured = _fmt(iv.mean)
    else:
        measured = f"{_fmt(iv.mean)} [{_fmt(iv.low)}, {_fmt(iv.high)}]"
    verdict = result.verdict + (" (1 seed)" if result.one_seed else "")
    return {"claim": c.id, "mark": c.mark, "accepted": paper, "measured": measured,
            "n": str(iv.n if iv else 0), "verdict": verdict, "gates": "yes" if c.gating else "no",
            "where": result.where, "note": result.note}


def text_table(rows: list[dict[str, str]], cols: list[str]) -> str:
    """A fixed-width table for the terminal."""
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in cols}
    lines = ["  ".join(k.ljust(widths[k]) for k in cols), "  ".join("-" * widths[k] for k in cols)]
    lines += ["  ".join(r[k].ljust(widths[k]) for k in cols) for r in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def verdict_text(results: list[ClaimResult]) -> str:
    """The verdicts as a fixed-width table for the terminal."""
    cols = ["claim", "mark", "accepted", "measured", "n", "verdict", "gates"]
    return text_table([claim_row(r) for r in results], cols)


def verdict_markdown(results: list[ClaimResult], run_set: RunSet) -> str:
    """The Markdown report: which runs, then one row per claim with its statement and source."""
    seeds = run_set.all_seeds
    arms = sorted({a for s in [*run_set.seeds.values(), *run_set.paths.values()] for a in s})
    lines = [f"# Verdicts: {run_set.task}", "",
             f"Configuration `{run_set.fingerprint}`; seeds {', '.join(map(str, seeds))}; arms {', '.join(arms)}.",
             "Measured values are the mean over seeds with a 95% Student-t interval; accuracies in %, "
             "speed-ups as ratios of early-stop steps. Claims that do not gate (marks F/U, or another "
             "protocol) are context only.", "",
             "| claim | statement | source | mark | accepted | measured | n | read at | verdict | gates |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        row = claim_row(result)
        where = row["where"] + (f" — {row['note']}" if row["note"] and row["note"] != "1 seed" else "")
        lines.append(f"| {row['claim']} | {result.claim.statement} | {result.claim.source} | {row['mark']} | "
                     f"{row['accepted']} | {row['measured']} | {row['n']} | {where} | **{row['verdict']}** | "
                     f"{row['gates']} |")
    return "\n".join(lines) + "\n"


def _curves(run_set: RunSet, arm: str, quantity: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """P_m, mean, min and max over seeds of ``quantity`` per level of ``arm`` (accuracies in %)."""
    per_level: dict[int, list[float]] = {}
    p_m: dict[int, float] = {}
    for arms in run_set.seeds.values():
        for level, rec in arms.get(arm, {}).items():
            value = rec.get(quantity)
            if value is None:
                continue
            per_level.setdefault(level, []).append(100 * value if "acc" in quantity else value)
            p_m[level] = rec["weights_remaining_percent"]
    levels = sorted(per_level)
    return ([p_m[lv] for lv in levels], [sum(per_level[lv]) / len(per_level[lv]) for lv in levels],
            [min(per_level[lv]) for lv in levels], [max(per_level[lv]) for lv in levels])


def arm_label(run_set: RunSet, arm: str) -> str:
    """An arm's legend entry with the seeds it was run for: "random pruning (seed 0)" or
    "winning ticket (mean of 5 seeds)"."""
    seeds = sorted(s for s, arms in run_set.seeds.items() if arm in arms)
    label = ARM_STYLE[arm][0]
    return f"{label} (mean of {len(seeds)} seeds)" if len(seeds) > 1 else f"{label} (seed {seeds[0]})"


def _reference_points(results: list[ClaimResult], quantity: str, dense: float | None) -> list[tuple[float, float, str]]:
    """Paper claims drawn on a figure: absolute values as given, relative ones on the measured dense."""
    points = []
    for r in results:
        m, c = r.claim.metric, r.claim
        if m.p_m is None or m.arm != TICKET.arm:
            continue
        if quantity != "early_stop_step" and m.quantity == quantity:
            if m.kind == "value":
                points.append((m.p_m, c.paper, c.id))
            elif m.kind == "delta_to_dense" and dense is not None:
                points.append((m.p_m, dense + c.paper, c.id))
        elif quantity == "early_stop_step" and m.kind == "speedup_vs_dense" and dense is not None and c.paper > 0:
            points.append((m.p_m, dense / c.paper, c.id))
    return points


def _p_m_ticks(claimed: list[float]) -> list[float]:
    """Ticks of the P_m axis: the claims' P_m, and those of LeNet-300-100's levels in Frankle &
    Carbin's figures that are not within a factor 1.3 of one (their labels would overlap)."""
    marks = set(claimed)
    return sorted(marks | {t for t in (100, 51.3, 21.1, 13.5, 7.0, 3.6, 1.9, 1.0)
                           if all(max(t, m) / min(t, m) > 1.3 for m in marks)}, reverse=True)


def figures(results: list[ClaimResult], run_set: RunSet, out_dir: Path) -> list[Path]:
    """Test accuracy at early stop and early-stop step against % weights remaining (PNG and SVG);
    for tasks without a validation split, test accuracy at the end of training. None until the
    winning tickets have a finished level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a for a in ARM_STYLE if any(a in s for s in run_set.seeds.values())]
    if not any(arms_of_seed.get(TICKET.arm) for arms_of_seed in run_set.seeds.values()):
        return []  # drawn against the winning tickets' finished levels
    written = []
    early_stops = bool(_curves(run_set, TICKET.arm, "early_stop_step")[0])  # tasks without validation have none
    panels = [("test_acc_at_early_stop", "Test accuracy at early stop (%)", "accuracy"),
              ("early_stop_step", "Early-stop iteration (min. validation loss)", "early_stop")]
    if not early_stops:
        panels = [("test_acc_final", "Test accuracy at the end of training (%)", "accuracy")]
    for quantity, ylabel, stem in panels:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=150)
        curves = {arm: _curves(run_set, arm, quantity) for arm in arms}
        for arm, (x, mean, lo, hi) in curves.items():
            color = ARM_STYLE[arm][1]
            ax.plot(x, mean, marker="o", ms=3.5, color=color, label=arm_label(run_set, arm))
            ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)  # the seeds' range; none for one
        dense_x, dense_y, _, _ = curves.get(TICKET.arm, ([], [], [], []))
        dense = dense_y[0] if dense_x and dense_x[0] == 100.0 else None
        if dense is not None:
            ax.axhline(dense, color="gray", linestyle=":", linewidth=1, label="dense (measured)")
        refs = _reference_points(results, quantity, dense)
        if refs:
            ax.scatter([p for p, _, _ in refs], [v for _, v, _ in refs], marker="*", s=90, color="black",
                       zorder=5, label="paper claim (relative ones placed on the measured dense)")
        ax.set_xscale("log")
        claimed = [p for p, _, _ in refs]  # spanned too: a run on its first levels shows where the claims lie
        ax.set_xlim(105, min([x for c in curves.values() for x in c[0]] + claimed + [100]) * 0.85)
        ticks = [t for t in _p_m_ticks(claimed) if t >= ax.get_xlim()[1]]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("Percent of weights remaining (P_m)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{run_set.task}: {ylabel.split(' (')[0].lower()}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        for suffix in ("png", "svg"):
            path = out_dir / f"{stem}.{suffix}"
            save_figure(fig, path)
            written.append(path)
        plt.close(fig)
    return written
