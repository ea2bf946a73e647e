"""``run --method``: one level per density, records in the IMP schema, sanity checks, ``compare``."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import slow_params
from test_cli import TINY, ticketbench

from ticketbench.config import TaskConfig
from ticketbench.engine.method_arm import run_method
from ticketbench.engine.suite_runner import run_imp
from ticketbench.pruning.masks import load_masks
from ticketbench.pruning.methods import method_names


def _counts(path: Path) -> dict[str, int]:
    return {n: int(m.sum()) for n, m in load_masks(path).items()}


@pytest.mark.parametrize("name", slow_params(method_names(), ["synflow"]))
def test_each_method_trains_one_level_per_density_in_the_imp_schema(name: str, tiny_task: TaskConfig,
                                                                     tmp_path: Path, fake_data_dir: Path) -> None:
    imp = run_imp(tiny_task, 0, out=tmp_path, data_dir=str(fake_data_dir))
    run = run_method(tiny_task, 0, name, [50.0, 20.0], tmp_path, str(fake_data_dir))
    records = run.records()
    trained_dense = name == "oneshot-magnitude"
    assert [r["level"] for r in records] == ([0, 1, 2] if trained_dense else [1, 2])
    assert set(records[-1]) == set(imp.records()[-1]) | {"method", "target_density_percent"}
    total = sum(m.numel() for m in load_masks(run.mask_path(1)).values())
    for r in records[-2:]:
        assert r["method"] == name and r["arm"] == name
        kept = round(r["target_density_percent"] / 100 * total)
        assert r["weights_remaining_percent"] == pytest.approx(100 * kept / total)
        assert sum(_counts(run.mask_path(r["level"])).values()) == kept


def test_sanity_checks_keep_the_layer_counts_and_change_positions_or_init(tiny_task: TaskConfig, tmp_path: Path,
                                                                          fake_data_dir: Path) -> None:
    runs = {s: run_method(tiny_task, 0, "snip", [30.0], tmp_path, str(fake_data_dir), sanity=s)
            for s in (None, "shuffle", "reinit")}
    plain, shuffled, reinit = (load_masks(runs[s].mask_path(1)) for s in (None, "shuffle", "reinit"))
    assert runs["shuffle"].path.name.startswith("snip+shuffle-seed0-")
    assert _counts(runs[None].mask_path(1)) == _counts(runs["shuffle"].mask_path(1))
    assert all(not (plain[n] == shuffled[n]).all() for n in plain), "every layer's kept positions move"
    assert all((plain[n] == reinit[n]).all() for n in plain), "reinit keeps the method's masks"
    trained = {s: runs[s].records()[0]["val_loss_at_early_stop"] for s in runs}
    assert trained[None] != trained["reinit"], "reinit trains other weights"


def test_method_errors_exit_2_with_one_line(tmp_path: Path, fake_data_dir: Path) -> None:
    def error(*args: str) -> str:
        result = ticketbench("run", "lenet300-mnist", *TINY, "--out", str(tmp_path), "--wandb", "off", *args,
                             data=fake_data_dir)
        assert result.returncode == 2, result.stdout + result.stderr
        (line,) = result.stderr.strip().splitlines()
        return line

    assert error("--method", "snap").startswith("ticketbench: error: unknown method 'snap'; valid methods: grasp")
    assert "each density is a % of weights remaining in (0, 100]" in error("--method", "snip", "--densities", "0,50")
    assert "expected comma-separated percentages" in error("--method", "snip", "--densities", "half")
    assert "--control and --method exclude each other" in error("--method", "snip", "--control", "reinit")
    assert "--sanity applies to a --method" in error("--sanity", "shuffle")
    assert "--iterative applies to a --method" in error("--iterative")
    assert "--iterative needs decreasing --densities, got 20,50" in error("--method", "snip", "--iterative",
                                                                         "--densities", "20,50")
    assert not (tmp_path / "lenet300-mnist").exists()
    first = ticketbench("run", "lenet300-mnist", *TINY, "--out", str(tmp_path), "--wandb", "off", "--method", "random",
                        "--densities", "50", data=fake_data_dir)
    assert first.returncode == 0, first.stderr
    assert "was run with densities [50.0], not [40.0]" in error("--method", "random", "--densities", "40")


def test_compare_tables_every_method_against_imp(tmp_path: Path, fake_data_dir: Path) -> None:
    common = ["lenet300-mnist", *TINY, "--out", str(tmp_path), "--wandb", "off"]
    assert ticketbench("run", *common, "--levels", "4", data=fake_data_dir).returncode == 0
    method = ticketbench("run", *common, "--method", "random", "--densities", "80,51.2", data=fake_data_dir)
    assert method.returncode == 0, method.stderr
    result = ticketbench("compare", str(tmp_path / "lenet300-mnist"), "--out", str(tmp_path / "cmp"))
    assert result.returncode == 0, result.stderr
    rows = [line.split(" | ") for line in (tmp_path / "cmp" / "COMPARE.md").read_text().splitlines()
            if line.startswith("| random")]
    assert [(r[1], r[3]) for r in rows] == [("80.0", "80.0"), ("51.2", "51.3")], "nearest IMP level per density"
    assert all(r[4].rstrip(" |").startswith(("+", "-")) for r in rows)
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000


def test_iterative_masks_shrink_level_by_level(tiny_task: TaskConfig, tmp_path: Path, fake_data_dir: Path) -> None:
    for name in ("snip", "oneshot-magnitude"):
        run = run_method(tiny_task, 0, name, [60.0, 30.0], tmp_path, str(fake_data_dir),
                         iterative=True)
        assert run.path.name.startswith(f"{name}-iterative-seed0-")
        first, second = load_masks(run.mask_path(1)), load_masks(run.mask_path(2))
        assert all(not (second[n] & ~first[n]).any() for n in first), "the second mask lies inside the first"
    once_run = run_method(tiny_task, 0, "oneshot-magnitude", [60.0, 30.0], tmp_path, str(fake_data_dir))
    once = load_masks(once_run.mask_path(2))
    assert any(not (once[n] == second[n]).all() for n in once), "iterating scores other trained weights"


def test_compare_gives_a_t_interval_of_the_per_seed_differences(tmp_path: Path) -> None:
    from conftest import write_run

    from ticketbench.compare import points
    from ticketbench.storage.discovery import load_run_set

    for seed, (imp, snip) in enumerate([(0.980, 0.970), (0.982, 0.975), (0.978, 0.968)]):
        write_run(tmp_path, seed, "imp", [(0, 0.98, 3000), (3, imp, 2800)])
        write_run(tmp_path, seed, "snip", [(3, snip, 3000)])
    (point,) = [p for p in points(load_run_set([tmp_path])) if p.arm == "snip"]
    deltas = [-1.0, -0.7, -1.0]  # pp, seed by seed
    assert point.delta.n == 3 and point.delta.mean == pytest.approx(sum(deltas) / 3)
    half = 4.302653 * (sum((d + 0.9) ** 2 for d in deltas) / 2) ** 0.5 / 3**0.5  # t(0.975, df 2)
    assert (point.delta.low, point.delta.high) == pytest.approx((-0.9 - half, -0.9 + half), abs=1e-4)
