"""Gate a test suite on a reproduction: ``assert_reproduces(run_dirs, task)``.

>>> from ticketbench.testing import assert_reproduces
>>> def test_lenet_reproduces():                                  # doctest: +SKIP
...     assert_reproduces(["results/lenet300-mnist"], "lenet300-mnist")
"""

from __future__ import annotations

from pathlib import Path

from ticketbench.references import load_references
from ticketbench.scoring import ClaimResult, score
from ticketbench.storage.discovery import load_run_set


def assert_reproduces(run_dirs: list[str | Path], task: str | None = None) -> list[ClaimResult]:
    """Score the runs against the task's references; raise AssertionError when a gating claim FAILs."""
    run_set = load_run_set([Path(p) for p in run_dirs])
    results = score(load_references(task or run_set.task), run_set)
    failed = [r for r in results if r.gate_failed]
    if failed:
        lines = [f"{r.claim.id}: {r.claim.statement} (measured {r.interval.mean if r.interval else 'n/a'}; "
                 f"{r.note or r.where})" for r in failed]
        raise AssertionError(f"{len(failed)} gating claim(s) of {run_set.task} FAIL:\n  " + "\n  ".join(lines))
    return results
