"""The committed evidence in results/ is consistent: records match their masks, tables match records."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from ticketbench.compare import markdown, points
from ticketbench.controls import ARMS
from ticketbench.pruning.masks import layer_remaining_percent, load_masks, remaining_percent
from ticketbench.references import load_references
from ticketbench.report import level_table, verdict_markdown
from ticketbench.scoring import score, verdicts_json
from ticketbench.storage.analysis_dir import StabilityDir
from ticketbench.storage.discovery import load_run_set
from ticketbench.storage.run_dir import RunDir
from ticketbench.storage.schema import ANALYSIS_ARMS
from ticketbench.training.level_checkpoint import LevelCheckpoint

RESULTS = Path(__file__).resolve().parent.parent / "results"
# results/<task>/<run>, results/<variant>/<task>/<run> for a variant of a task's configuration, and
# results/<study>/<variant>/<task>/<run> for a study of several variants
ALL = sorted(p.parent for depth in (2, 3, 4) for p in RESULTS.glob("*/" * depth + "meta.json")
             if "sweeps" not in p.parts and "in-progress" not in p.parts)
ANALYSES = [p for p in ALL if json.loads((p / "meta.json").read_text())["arm"] in ANALYSIS_ARMS]
RUNS = [p for p in ALL if p not in ANALYSES]
TASKS = sorted({p.parent for p in RUNS})
IN_PROGRESS = sorted(p.parent for p in RESULTS.glob("in-progress/*/*/meta.json"))


@pytest.mark.parametrize("path", RUNS + IN_PROGRESS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_records_match_their_masks(path: Path) -> None:
    run = RunDir(path)
    meta, records = run.meta(), run.records()
    levels = [r["level"] for r in records]
    in_progress = [int(p.stem.split("_")[1]) for p in sorted((path / "progress").glob("level_*.pt"))]
    assert records or in_progress, "a committed run has a finished level or a level in progress"
    assert not set(in_progress) & set(levels), "a finished level has no checkpoint left"
    if "at_levels" in meta:  # a control trained at chosen levels
        assert set(levels) <= set(meta["at_levels"])
    else:
        first = meta.get("first_level", levels[0] if levels else 0)
        assert levels == list(range(first, first + len(levels))), "levels are contiguous from the first"
        assert in_progress in ([], [first + len(levels)]), "the level in progress is the next one"
    config = meta["config"]
    for level in in_progress:  # resumable: it loads against the level's mask, within the level's steps
        start = 0 if level == 0 else config["rewind_step"]
        LevelCheckpoint.load(run.progress_path(level), level, start, config["max_steps"], run.load_masks(level))
    for rec in records:
        assert (rec["task"], rec["seed"], rec["arm"]) == (meta["task"], meta["seed"], meta["arm"])
        masks = load_masks(run.mask_path(rec["level"]))
        assert rec["weights_remaining_percent"] == pytest.approx(remaining_percent(masks))
        assert rec["layer_remaining_percent"] == pytest.approx(layer_remaining_percent(masks))
        assert rec["steps"] == meta["config"]["max_steps"] - rec["start_step"] or rec["diverged"]


@pytest.mark.parametrize("task_dir", TASKS, ids=lambda p: p.name)
def test_results_readme_table_is_generated_from_the_records(task_dir: Path) -> None:
    """The README's table of the IMP arm and its controls (pruning methods are in COMPARE.md): the
    README of the task's folder, or of the nearest folder above it that has one."""
    runs = sorted(p for p in task_dir.iterdir() if (p / "meta.json").is_file() and RunDir(p).meta()["arm"] in ARMS)
    readme = next(d / "README.md" for d in (task_dir, *task_dir.parents) if (d / "README.md").is_file())
    assert level_table(runs) in readme.read_text()


@pytest.mark.parametrize("task_dir", [t for t in TASKS if (t / "COMPARE.md").is_file()], ids=lambda p: p.name)
def test_method_comparison_is_generated_from_the_records(task_dir: Path) -> None:
    run_set = load_run_set([task_dir])
    assert markdown(run_set, points(run_set)) == (task_dir / "COMPARE.md").read_text()


@pytest.mark.parametrize("task_dir", sorted(p.parent for p in RESULTS.rglob("VERDICTS.md")), ids=lambda p: p.name)
def test_committed_verdicts_are_what_score_makes_of_the_records(task_dir: Path) -> None:
    """VERDICTS.md and verdicts.json are ``ticketbench score <folder>`` of the committed runs, with
    the references of today's code: a record or a claim changed without scoring again shows here."""
    run_set = load_run_set([task_dir])
    results = score(load_references(run_set.task), run_set)
    assert verdicts_json(results, run_set) == json.loads((task_dir / "verdicts.json").read_text())
    assert verdict_markdown(results, run_set) == (task_dir / "VERDICTS.md").read_text()


@pytest.mark.parametrize("path", ANALYSES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_analysed_points_match_their_imp_masks_and_copies(path: Path) -> None:
    run = StabilityDir(path)
    meta, records = run.meta(), run.point_records()
    assert records, "a committed analysis has at least one analysed point"
    imp = RunDir(path.parent / f"imp-seed{meta['seed']}-{meta['fingerprint']}")
    for rec in records:
        expected = 100.0 if rec["level"] == 0 else remaining_percent(load_masks(imp.mask_path(rec["level"])))
        assert rec["weights_remaining_percent"] == pytest.approx(expected)
        ends = (rec["test_error"][0] + rec["test_error"][-1]) / 2
        assert rec["instability_test"] == pytest.approx(max(rec["test_error"]) - ends)
        if rec["bn"] == "none":  # the endpoints are the trained copies themselves
            assert [1 - rec["test_error"][0], 1 - rec["test_error"][-1]] == pytest.approx(rec["copy_test_acc_final"],
                                                                                          abs=1e-6)


FIDELITY = RESULTS / "conv2-cifar10-fidelity"


def test_the_arithmetic_comparison_is_generated_from_the_records() -> None:
    """Conv-2's dense level in float32 and bf16-mixed: the README's tables are what compare.py
    makes of the committed records."""
    spec = importlib.util.spec_from_file_location("fidelity_compare", FIDELITY / "compare.py")
    compare = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = compare  # its dataclass looks its module up
    spec.loader.exec_module(compare)
    assert compare.report(FIDELITY) in (FIDELITY / "README.md").read_text()
