"""Float32 against bf16-mixed autocast on Conv-2's dense level: does the faster arithmetic move
what the claims read? Prints the Markdown tables of README.md and writes validation.png, from the
level records of the runs under float32/ and bf16/ (same seeds, same protocol otherwise).

    python results/conv2-cifar10-fidelity/compare.py

A quantity's shift is the bf16 mean over seeds minus the float32 mean; it counts as within the
seed-to-seed spread when the bf16 mean lies inside the range (min to max) of the float32 seeds.
Beside the shift of the means (systematic), the size of the change within a seed: the mean
absolute difference between a seed's two runs, against the mean absolute difference between two
float32 seeds. The validation curve is compared both ways at every validation step.
"""

from __future__ import annotations

import itertools
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ticketbench.atomic import save_figure  # noqa: E402
from ticketbench.controls import TICKET  # noqa: E402
from ticketbench.storage.discovery import load_run_set  # noqa: E402

HERE = Path(__file__).resolve().parent
ARITHMETIC = {"float32": "float32", "bf16": "bf16-mixed"}  # run folder -> what the table calls it
REFERENCE, FASTER = "float32", "bf16"


@dataclass(frozen=True)
class Quantity:
    """A number of a dense level record, as the claims read it."""

    name: str
    read: Callable[[dict], float]
    unit: str

    @property
    def digits(self) -> int:
        """Decimals shown: hundredths of a percentage point, whole steps."""
        return 2 if self.unit == "%" else 0


QUANTITIES = (
    Quantity("test accuracy at early stop", lambda r: 100 * r["test_acc_at_early_stop"], "%"),
    Quantity("early-stop step", lambda r: r["early_stop_step"], "steps"),
    Quantity("validation accuracy at early stop", lambda r: 100 * r["val_acc_at_early_stop"], "%"),
    Quantity("test accuracy at the last step", lambda r: 100 * r["test_acc_final"], "%"),
)


def dense_levels(root: Path) -> dict[str, dict[int, dict]]:
    """folder -> seed -> the dense level record, for the seeds both arithmetics finished."""
    found = {}
    for folder in ARITHMETIC:
        run_set = load_run_set([root / folder])
        found[folder] = {seed: arms[TICKET.arm][0] for seed, arms in run_set.seeds.items() if 0 in arms[TICKET.arm]}
    common = sorted(set.intersection(*(set(by_seed) for by_seed in found.values())))
    if not common:
        raise SystemExit(f"{root}: no seed has a finished dense level in both {' and '.join(ARITHMETIC)}")
    return {folder: {seed: by_seed[seed] for seed in common} for folder, by_seed in found.items()}


def _spread(values: list[float], digits: int) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    mean, low, high = statistics.fmean(values), min(values), max(values)
    return f"{mean:.{digits}f} ± {sd:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def _within(shifted: float, reference: list[float]) -> str:
    return "yes" if min(reference) <= shifted <= max(reference) else "**no**"


def paired_and_seed_differences(reference: list[float], faster: list[float]) -> tuple[float, float]:
    """Mean |faster - reference| over seeds (a seed's two runs), and mean |a - b| over pairs of
    reference seeds."""
    paired = statistics.fmean(abs(b - a) for a, b in zip(reference, faster, strict=True))
    return paired, statistics.fmean(abs(a - b) for a, b in itertools.combinations(reference, 2))


def per_seed_table(levels: dict[str, dict[int, dict]]) -> str:
    """One row per seed: each quantity under each arithmetic, and the level's seconds per step."""
    header = ["seed"] + [f"{q.name} ({q.unit}), {ARITHMETIC[f]}" for q in QUANTITIES for f in ARITHMETIC] + \
        [f"s / step, {ARITHMETIC[f]}" for f in ARITHMETIC]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for seed in levels[REFERENCE]:
        records = [levels[f][seed] for f in ARITHMETIC]
        row = [str(seed)] + [f"{q.read(r):.{q.digits}f}" for q in QUANTITIES for r in records] \
            + [f"{r['seconds'] / r['steps']:.3f}" for r in records]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def summary_table(levels: dict[str, dict[int, dict]]) -> str:
    """One row per quantity: mean ± sd (range) over seeds under each arithmetic, the shift of the
    means, the paired shifts seed by seed, and whether the bf16 mean lies in the float32 range."""
    header = ["quantity", *(f"{ARITHMETIC[f]}: mean ± sd (range)" for f in ARITHMETIC),
              "shift of the means", "shift seed by seed", "bf16 mean inside the float32 range",
              "mean \\|bf16 − float32\\| of a seed", "mean \\|difference\\| of two float32 seeds"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    seeds = list(levels[REFERENCE])
    for q in QUANTITIES:
        values = {f: [q.read(levels[f][s]) for s in seeds] for f in ARITHMETIC}
        shift = statistics.fmean(values[FASTER]) - statistics.fmean(values[REFERENCE])
        paired = ", ".join(f"{b - a:+.{q.digits}f}" for a, b in zip(values[REFERENCE], values[FASTER], strict=True))
        within_seed, between_seeds = paired_and_seed_differences(values[REFERENCE], values[FASTER])
        lines.append(f"| {q.name} ({q.unit}) | " + " | ".join(_spread(values[f], q.digits) for f in ARITHMETIC)
                     + f" | {shift:+.{q.digits}f} | {paired} | "
                     f"{_within(statistics.fmean(values[FASTER]), values[REFERENCE])} | "
                     f"{within_seed:.{q.digits}f} | {between_seeds:.{q.digits}f} |")
    return "\n".join(lines) + "\n"


def curves(levels: dict[str, dict[int, dict]], key: str = "acc") -> tuple[list[int], dict[str, list[list[float]]]]:
    """The validation steps and, per arithmetic, each seed's validation accuracy (%) at them (or
    its validation loss, ``key="loss"``)."""
    steps = next(iter(levels[REFERENCE].values()))["validation"]["step"]
    scale = 100 if key == "acc" else 1
    values = {}
    for folder, by_seed in levels.items():
        for seed, record in by_seed.items():
            if record["validation"]["step"] != steps:
                raise SystemExit(f"{folder} seed {seed}: validated at other steps than {REFERENCE}")
        values[folder] = [[scale * v for v in r["validation"][key]] for r in by_seed.values()]
    return steps, values


def curve_summary(levels: dict[str, dict[int, dict]]) -> str:
    """The validation curves compared step by step, in one paragraph."""
    steps, accuracy = curves(levels)
    at = {f: list(zip(*runs, strict=True)) for f, runs in accuracy.items()}  # per step: one value per seed
    shifts = [statistics.fmean(b) - statistics.fmean(a) for a, b in zip(at[REFERENCE], at[FASTER], strict=True)]
    outside = [s for s, a, b in zip(steps, at[REFERENCE], at[FASTER], strict=True)
               if not min(a) <= statistics.fmean(b) <= max(a)]
    ranges = [max(a) - min(a) for a in at[REFERENCE]]
    largest = max(range(len(steps)), key=lambda i: abs(shifts[i]))
    within_seed, between_seeds = (statistics.fmean(d) for d in zip(
        *(paired_and_seed_differences(a, b) for a, b in zip(at[REFERENCE], at[FASTER], strict=True)), strict=True))
    return (f"Validation accuracy at {len(steps)} validations (every {steps[0]} steps): the bf16-mixed mean "
            f"lies outside the float32 seeds' range at {len(outside)} of them"
            + (f" (steps {', '.join(map(str, outside))})" if outside else "")
            + f"; the shift of the means is {statistics.fmean(shifts):+.2f} pp on average over the steps, "
            f"at most {abs(shifts[largest]):.2f} pp (step {steps[largest]}), while the float32 seeds span "
            f"{statistics.median(ranges):.2f} pp at the median step. Within a seed, the bf16-mixed curve differs "
            f"from the float32 one by {within_seed:.2f} pp on average over the validations; two float32 seeds "
            f"differ by {between_seeds:.2f} pp.\n")


def figure(levels: dict[str, dict[int, dict]], path: Path) -> None:
    """Validation accuracy and loss against step: the mean over seeds and the seeds' range, per
    arithmetic, with each seed's early stop marked."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in zip(axes, ("acc", "loss"), ("validation accuracy (%)", "validation loss"), strict=True):
        steps, values = curves(levels, key)
        for (folder, runs), color in zip(values.items(), ("tab:blue", "tab:orange"), strict=True):
            at = list(zip(*runs, strict=True))
            ax.plot(steps, [statistics.fmean(a) for a in at], color=color,
                    label=f"{ARITHMETIC[folder]} (mean of {len(runs)} seeds, band: range)")
            ax.fill_between(steps, [min(a) for a in at], [max(a) for a in at], color=color, alpha=0.2)
            for record in levels[folder].values():
                at_stop = record["val_acc_at_early_stop"] * 100 if key == "acc" else record["val_loss_at_early_stop"]
                ax.plot(record["early_stop_step"], at_stop, "v", color=color)
        ax.set_xlabel("training step (dense level)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(top=1.6)
    axes[0].legend(loc="lower right")
    fig.suptitle("Conv-2, CIFAR-10: float32 vs bf16-mixed (▼ early stop: minimum validation loss)")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def report(root: Path) -> str:
    """The generated part of the README."""
    levels = dense_levels(root)
    return "\n".join((per_seed_table(levels), summary_table(levels), curve_summary(levels)))


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    figure(dense_levels(root), root / "validation.png")
    print(report(root), end="")
