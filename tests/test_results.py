"""The committed evidence in results/ is consistent: records match their masks, tables match records."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketbench.compare import markdown, points
from ticketbench.controls import ARMS
from ticketbench.pruning.masks import layer_remaining_percent, load_masks, remaining_percent
from ticketbench.report import level_table
from ticketbench.runs import RunDir
from ticketbench.scoring import load_run_set

RESULTS = Path(__file__).resolve().parent.parent / "results"
RUNS = sorted(p.parent for p in RESULTS.glob("*/*/meta.json"))
TASKS = sorted({p.parent for p in RUNS})
IN_PROGRESS = sorted(p.parent for p in RESULTS.glob("in-progress/*/*/meta.json"))


@pytest.mark.parametrize("path", RUNS + IN_PROGRESS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_records_match_their_masks(path: Path) -> None:
    run = RunDir(path)
    meta, records = run.meta(), run.records()
    assert records, "a committed run has at least one finished level"
    levels = [r["level"] for r in records]
    assert levels == list(range(levels[0], levels[0] + len(levels))), "levels are contiguous"
    for rec in records:
        assert (rec["task"], rec["seed"], rec["arm"]) == (meta["task"], meta["seed"], meta["arm"])
        masks = load_masks(run.mask_path(rec["level"]))
        assert rec["weights_remaining_percent"] == pytest.approx(remaining_percent(masks))
        assert rec["layer_remaining_percent"] == pytest.approx(layer_remaining_percent(masks))
        assert rec["steps"] == meta["config"]["max_steps"] - rec["start_step"] or rec["diverged"]


@pytest.mark.parametrize("task_dir", TASKS, ids=lambda p: p.name)
def test_results_readme_table_is_generated_from_the_records(task_dir: Path) -> None:
    """The README's table of the IMP arm and its controls (pruning methods are in COMPARE.md)."""
    runs = sorted(p for p in task_dir.iterdir() if (p / "meta.json").is_file() and RunDir(p).meta()["arm"] in ARMS)
    assert level_table(runs) in (task_dir / "README.md").read_text()


@pytest.mark.parametrize("task_dir", [t for t in TASKS if (t / "COMPARE.md").is_file()], ids=lambda p: p.name)
def test_method_comparison_is_generated_from_the_records(task_dir: Path) -> None:
    run_set = load_run_set([task_dir])
    assert markdown(run_set, points(run_set)) == (task_dir / "COMPARE.md").read_text()
