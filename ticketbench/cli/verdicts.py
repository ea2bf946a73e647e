"""The commands that read finished run directories: ``score``, ``check`` and ``report`` (the
paper's claims against references) and ``compare`` (every method against IMP)."""

from __future__ import annotations

import sys
import typing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ticketbench.cli import values
from ticketbench.cli.options import option
from ticketbench.cli.registry import command
from ticketbench.errors import ConfigError, RunError

if typing.TYPE_CHECKING:
    from ticketbench.scoring import ClaimResult
    from ticketbench.storage.discovery import RunSet

RUNS_HELP = "run directories, or directories holding them (seeds and arms of one task)"


def run_dirs() -> Any:
    return option(nargs="+", type=values.directory, help=RUNS_HELP)


def references() -> Any:
    return option("--references", help="a references YAML file (default: the task's own)")


@dataclass(frozen=True)
class ScoreOptions:
    """The options of ``score``."""

    runs: list[Path] = run_dirs()
    references: str | None = references()


@dataclass(frozen=True)
class CheckOptions:
    """The options of ``check``."""

    runs: list[Path] = run_dirs()
    references: str | None = references()
    baseline: Path | None = option("--baseline", type=values.directory,
                                   help="stored runs of the same task to compare level by level")
    tolerance: float = option("--tolerance", type=values.tolerance, default=0.5,
                              help="allowed drop of mean test accuracy below the baseline, in pp (default 0.5)")
    allow_fail: str = option("--allow-fail", default="", metavar="ID,...",
                             help="claims whose FAIL (or NOT RUN) is a documented finding: reported, but not "
                                  "failing the check")


@dataclass(frozen=True)
class ReportOptions:
    """The options of ``report``."""

    runs: list[Path] = run_dirs()
    references: str | None = references()
    out: Path | None = option("--out", type=values.directory,
                              help="where to write the figures (default: beside the runs)")


@dataclass(frozen=True)
class CompareOptions:
    """The options of ``compare``."""

    runs: list[Path] = run_dirs()
    out: Path | None = option("--out", type=values.directory,
                              help="where to write COMPARE.md, compare.png/svg (default: by the runs)")


def _scored(options: ScoreOptions | CheckOptions | ReportOptions) -> tuple[RunSet, list[ClaimResult]]:
    """The runs named and the verdicts of their claims, printed."""
    from ticketbench.references import load_references
    from ticketbench.scoring import score
    from ticketbench.storage.discovery import load_run_set

    run_set = load_run_set(options.runs)
    results = score(load_references(options.references or run_set.task), run_set)
    return run_set, results


@command("score", ScoreOptions, help="verdicts of the paper's claims; writes verdicts.json and VERDICTS.md")
def score(options: ScoreOptions) -> None:
    from ticketbench.atomic import write_json, write_text
    from ticketbench.report import verdict_markdown
    from ticketbench.scoring import verdicts_json

    run_set, results = _scored(options)
    out = _beside(run_set, options.runs)
    _print_verdicts(results)
    write_json(out / "verdicts.json", verdicts_json(results, run_set))
    write_text(out / "VERDICTS.md", verdict_markdown(results, run_set))
    print(f"wrote {out / 'verdicts.json'} and VERDICTS.md")


@command("check", CheckOptions, help="exit 1 when a gating claim FAILs or accuracy regressed (for CI)")
def check(options: CheckOptions) -> int:
    from ticketbench.scoring import regressions
    from ticketbench.storage.discovery import load_run_set

    run_set, results = _scored(options)
    _print_verdicts(results)
    allowed = {i for i in options.allow_fail.split(",") if i}
    unknown = sorted(allowed - {r.claim.id for r in results})
    if unknown:
        ids = ", ".join(r.claim.id for r in results)
        raise ConfigError(f"--allow-fail names unknown claim {unknown[0]!r}; claims: {ids}")
    failures = []
    for r in (r for r in results if r.claim.gating and r.pending):
        print(f"check: claim {r.claim.id} waits for levels in progress ({r.note})", file=sys.stderr)
    for r in (r for r in results if r.gate_failed or r.gate_unanswered):
        what = "FAILs" if r.gate_failed else "cannot be answered by these runs"
        line = f"claim {r.claim.id} {what}" + (f" ({r.note})" if r.note else "")
        if r.claim.id in allowed:
            print(f"check: {line} — allowed as a documented finding", file=sys.stderr)
        else:
            failures.append(line)
    if options.baseline is not None:
        failures += regressions(run_set, load_run_set([options.baseline]), options.tolerance)
    for line in failures:
        print(f"check: {line}", file=sys.stderr)
    counts = Counter(r.verdict for r in results)
    summary = ", ".join(f"{counts[v]} {v}" for v in ("PASS", "FAIL", "INCONCLUSIVE", "NOT RUN") if counts[v])
    print(f"check: {'FAILED' if failures else 'passed'} ({len(failures)} problem(s); claims: {summary})")
    return 1 if failures else 0


@command("report", ReportOptions, help="figures: accuracy and early-stop step against %% weights remaining")
def report(options: ReportOptions) -> None:
    from ticketbench.path_figures import path_figures
    from ticketbench.report import figures

    run_set, results = _scored(options)
    out = options.out or _beside(run_set, options.runs)
    _print_verdicts(results)
    out.mkdir(parents=True, exist_ok=True)
    written = figures(results, run_set, out) + path_figures(run_set, out)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("no figures: the winning tickets have no finished level and there is no instability analysis")


def _print_verdicts(results: list[ClaimResult]) -> None:
    from ticketbench.report import verdict_text

    print(verdict_text(results), end="")


@command("compare", CompareOptions, help="every method against IMP: one table and one figure")
def compare(options: CompareOptions) -> None:
    from ticketbench.atomic import write_text
    from ticketbench.compare import figure, markdown, points
    from ticketbench.storage.discovery import load_run_set

    run_set = load_run_set(options.runs)
    found = points(run_set)
    if not found:
        raise RunError("no finished levels to compare")
    out = options.out or _beside(run_set, options.runs)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(run_set, found)
    write_text(out / "COMPARE.md", text)
    print(text, end="")
    for path in [out / "COMPARE.md", *figure(run_set, found, out)]:
        print(f"wrote {path}")


def _beside(run_set: RunSet, named: list[Path]) -> Path:
    """Where results about the runs go by default: the directory holding them all, when it is one
    the user named or the parent of a run directory named (never a directory above what was named)."""
    root = run_set.root
    if any(root == p.resolve() or ((p / "meta.json").is_file() and root == p.resolve().parent) for p in named):
        return root
    raise RunError(f"the runs named lie in different directories, whose common parent is {root}; name one "
                   "directory that holds them all (or give --out where the command has it)")
