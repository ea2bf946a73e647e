"""What an experiment shows when its last level is done: the report figures and the verdicts of
every run of its configuration (all arms and seeds beside the run that finished), as plain data
for whoever logs it (W&B: :meth:`ticketbench.tracking.Tracker.experiment_done`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ticketbench.compare import figure as compare_figure
from ticketbench.compare import points
from ticketbench.errors import ConfigError
from ticketbench.references import load_references
from ticketbench.report import ARM_STYLE, claim_row, figures
from ticketbench.scoring import score
from ticketbench.storage.directory import Protocol
from ticketbench.storage.discovery import load_run_set


@dataclass
class Summary:
    """PNG figures, one row per claim (as the verdict table prints it), and each claim's verdict."""

    figures: list[Path] = field(default_factory=list)
    claim_rows: list[dict[str, str]] = field(default_factory=list)
    verdicts: dict[str, str] = field(default_factory=dict)


def experiment_summary(run: Path, protocol: Protocol, out_dir: Path) -> Summary:
    """The summary of the configuration of the run directory ``run``, its figures drawn in ``out_dir``."""
    fingerprint = protocol.fingerprint()
    siblings = [m.parent for m in sorted(run.parent.glob("*/meta.json"))
                if json.loads(m.read_text())["fingerprint"] == fingerprint]
    run_set = load_run_set(siblings)
    try:
        results = score(load_references(protocol.name), run_set)
    except ConfigError:  # a user task without packaged references: figures without claims
        results = []
    pngs = [p for p in figures(results, run_set, out_dir) if p.suffix == ".png"]
    if any(arm not in ARM_STYLE for seed in run_set.seeds.values() for arm in seed):  # pruning methods
        pngs += [p for p in compare_figure(run_set, points(run_set), out_dir) if p.suffix == ".png"]
    return Summary(pngs, [claim_row(r) for r in results], {r.claim.id: r.verdict for r in results})
