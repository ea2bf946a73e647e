"""IMP on a user's own LightningModule and DataModule (``LotteryExperiment``): ordinary run
directories that the command line reads, controls, resuming, and the user's own claims file."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from test_cli import ticketbench
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ticketbench import LotteryExperiment
from ticketbench.errors import ConfigError, RunError
from ticketbench.pruning.masks import load_masks
from ticketbench.storage.run_dir import RunDir


class Net(L.LightningModule):
    """An MLP with BatchNorm that logs val_loss and test_acc (a fraction), as any module would."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 4))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self.log("val_loss", F.cross_entropy(self.net(batch[0]), batch[1]))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self.log("test_acc", (self.net(batch[0]).argmax(1) == batch[1]).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class Data(L.LightningDataModule):
    """A learnable 4-class problem; the training loader shuffles (its order follows the seed)."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(640, 20, generator=gen)
        y = (x[:, :4].argmax(1) + (x[:, 4] > 1).long()) % 4
        self.parts = {"train": (x[:384], y[:384]), "val": (x[384:448], y[384:448]), "test": (x[448:], y[448:])}

    def _loader(self, part: str, shuffle: bool = False) -> DataLoader:
        return DataLoader(TensorDataset(*self.parts[part]), batch_size=32, shuffle=shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


EXPERIMENT = LotteryExperiment("mlp-toy", prune=("net.0.weight", "net.3.weight"), levels=3, max_steps=48,
                               rewind_step=12, rates={"net.3.weight": 0.1},
                               trainer={"accelerator": "cpu", "devices": 1, "val_check_interval": 12,
                                        "check_val_every_n_epoch": None, "num_sanity_val_steps": 0})
CLAIMS = """task: mlp-toy
protocol: the toy experiment of tests/test_lottery.py
claims:
  - id: dense-learns
    statement: the dense network is well above chance (25%)
    metric: {kind: value, p_m: 100}
    comparator: ">="
    paper: PAPER
    tolerance: 0
    source: this test
    mark: V
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lottery")
    EXPERIMENT.run(Net, Data(), seed=0, controls=("none", "reinit", "random-prune"), out=out)
    return out


def _runs(out: Path) -> dict[str, RunDir]:
    return {p.name.split("-seed")[0]: RunDir(p) for p in sorted((out / "mlp-toy").iterdir())}


def test_levels_prune_rewind_and_controls_in_ordinary_run_directories(trained: Path) -> None:
    runs = _runs(trained)
    assert set(runs) == {"imp", "reinit", "random-prune"}
    imp = runs["imp"]
    records = imp.records()  # checked against the run-directory schema
    assert [r["level"] for r in records] == [0, 1, 2] and [r["start_step"] for r in records] == [0, 12, 12]
    assert [r["steps"] for r in records] == [48, 36, 36]
    layers = [r["layer_remaining_percent"] for r in records]
    assert layers[1] == pytest.approx({"net.0.weight": 80.0, "net.3.weight": 90.0}, abs=0.5)
    assert layers[2]["net.0.weight"] == pytest.approx(64.0, abs=0.5)
    masks = [load_masks(imp.mask_path(level)) for level in range(3)]
    for before, after in zip(masks, masks[1:], strict=False):
        assert all(not bool((after[n] & ~before[n]).any()) for n in after), "a mask never revives a weight"
    rewind = torch.load(imp.rewind_path, weights_only=True)
    assert rewind["net.1.num_batches_tracked"].item() == 12, "θ_k is taken at step k, BatchNorm buffers included"
    for level in (1, 2):
        reinit, shuffled = (load_masks(runs[a].mask_path(level)) for a in ("reinit", "random-prune"))
        assert all(torch.equal(reinit[n], masks[level][n]) for n in reinit)
        assert all(int(shuffled[n].sum()) == int(masks[level][n].sum()) for n in shuffled)
        assert any(not torch.equal(shuffled[n], masks[level][n]) for n in shuffled)
    assert all(r["early_stop_step"] in (12, 24, 36, 48) and 0 <= r["test_acc_final"] <= 1 for r in records)
    assert json.loads((imp.path / "meta.json").read_text())["module"] == "Net"


def test_the_command_line_reads_them_and_gates_on_the_users_claims(trained: Path, tmp_path: Path) -> None:
    listed = ticketbench("runs", str(trained))
    assert listed.returncode == 0 and listed.stdout.count("complete") == 3, listed.stdout + listed.stderr
    table = ticketbench("table", *map(str, sorted((trained / "mlp-toy").iterdir())))
    lines = table.stdout.splitlines()
    assert table.returncode == 0 and [line.split(" | ")[0] for line in lines[2:]] == ["| 0", "| 1", "| 2"], lines
    claims = tmp_path / "claims.yaml"
    claims.write_text(CLAIMS.replace("PAPER", "40"))
    passed = ticketbench("check", str(trained), "--references", str(claims))
    assert passed.returncode == 0 and "1 PASS" in passed.stdout, passed.stdout + passed.stderr
    claims.write_text(CLAIMS.replace("PAPER", "100"))
    failed = ticketbench("check", str(trained), "--references", str(claims))
    assert failed.returncode == 1 and "claim dense-learns FAILs" in failed.stderr


def test_a_killed_experiment_resumes_to_the_same_records(trained: Path, tmp_path: Path) -> None:
    out = Path(shutil.copytree(trained, tmp_path / "copy"))
    imp = _runs(out)["imp"]
    imp.level_path(2).unlink()  # as if killed during level 2
    before = {r["level"]: r for r in _runs(trained)["imp"].records()}
    EXPERIMENT.run(Net, Data(), seed=0, out=out)
    again = {r["level"]: r for r in imp.records()}
    assert {k: v for k, v in again[2].items() if k != "seconds"} == {k: v for k, v in before[2].items()
                                                                      if k != "seconds"}
    assert imp.mask_path(2).read_bytes() == _runs(trained)["imp"].mask_path(2).read_bytes()


@pytest.mark.parametrize(("change", "message"), [
    ({"prune": ("net.9.weight", "net.3.weight")}, "'net.9.weight' is not a parameter of the module"),
    ({"test_metric": "accuracy"}, "test_metric 'accuracy' is not logged by the module's test_step"),
    ({"rates": {"net.2.weight": 0.1}}, "rates names parameters not pruned: ['net.2.weight']"),
    ({"rewind_step": 48}, "rewind_step must be in [0, max_steps), got 48"),
    ({"name": "../x"}, "name '../x' must be a plain directory name"),
])
def test_mistakes_are_one_line_errors(change: dict, message: str, tmp_path: Path) -> None:
    import dataclasses

    with pytest.raises(ConfigError) as caught:
        dataclasses.replace(EXPERIMENT, **change).run(Net, Data(), out=tmp_path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_control_without_its_tickets_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="the controls need the winning tickets in .*; include 'none' in controls"):
        EXPERIMENT.run(Net, Data(), controls=("reinit",), out=tmp_path)


@pytest.mark.slow
def test_the_example_finds_tickets_and_passes_its_claims(tmp_path: Path) -> None:
    """examples/mnist1d_tickets.py as a user runs it, then its claims checked by the command line."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "example"
    result = subprocess.run([sys.executable, str(root / "examples" / "mnist1d_tickets.py"), str(out)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("[random-prune seed 0] level") == 6
    check = ticketbench("check", str(out / "mnist1d-mlp-example"), "--references",
                        str(root / "examples" / "mnist1d_claims.yaml"))
    assert check.returncode == 0 and "3 PASS" in check.stdout, check.stdout + check.stderr


def test_each_arm_logs_to_its_own_wandb_run_offline(tmp_path: Path) -> None:
    import dataclasses

    from wandb_records import read_offline_run

    from ticketbench.wandb_mode import WandbOptions

    experiment = dataclasses.replace(EXPERIMENT, levels=2)
    experiment.run(Net, Data(), out=tmp_path, controls=("none", "random-prune"),
                   wandb=WandbOptions(mode="offline", tags=("toy",)))
    runs = _runs(tmp_path)
    logged = {arm: read_offline_run(next((run.path / "wandb").glob("offline-run-*"))) for arm, run in runs.items()}
    imp = logged["imp"]
    assert set(imp.run.tags) == {"mlp-toy", "imp", "Net", "toy"} and imp.run.job_type == "imp"
    assert imp.run.run_group == f"mlp-toy-{experiment.fingerprint()}" == logged["random-prune"].run.run_group
    assert imp.config["task"]["prune"] == ["net.0.weight", "net.3.weight"]
    # the module's own metrics on the experiment's x-axis: level L at L * max_steps + step
    val = sorted(h["trainer/global_step"] for h in imp.history if "val_loss" in h)
    assert val == [12, 24, 36, 48, 48 + 24, 48 + 36, 48 + 48]
    ends = [h for h in imp.history if "level/weights_remaining_percent" in h]
    assert [h["trainer/global_step"] for h in ends] == [48, 96]
    assert [h["level/test_acc_final"] for h in ends] == [r["test_acc_final"] for r in runs["imp"].records()]
    assert sorted(a.type for a in imp.artifacts if a.type != "run_table") == ["masks", "masks", "model"]
    assert imp.exit_code == 0
    assert [h["trainer/global_step"] for h in logged["random-prune"].history if "val_loss" in h] == [72, 84, 96]


@pytest.mark.slow
def test_an_experiment_under_ddp_is_written_once_by_rank_0(tmp_path: Path) -> None:
    """tests/ddp_lottery.py: the experiment with two DDP ranks on the CPU (gloo). Every rank trains
    every level; rank 0 alone locks and writes, and a barrier after each level keeps the other
    rank from reading what is not written yet (run twice: the start of an arm is where the
    ranks would race)."""
    import os
    import subprocess
    import sys

    script = Path(__file__).with_name("ddp_lottery.py")
    for attempt in range(2):
        out = tmp_path / f"attempt{attempt}"
        result = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=600,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, result.stderr[-3000:]
        runs = _runs(out)
        assert [r["level"] for r in runs["imp"].records()] == [0, 1, 2]
        assert [r["level"] for r in runs["random-prune"].records()] == [1, 2]
        assert result.stdout.count("[imp seed 0] level") == 3, "one line per level: rank 0 alone reports"
        for level in (1, 2):
            shuffled, ticket = (load_masks(runs[a].mask_path(level)) for a in ("random-prune", "imp"))
            assert all(int(shuffled[n].sum()) == int(ticket[n].sum()) for n in ticket)


def test_each_level_is_a_line_on_the_ticketbench_logger(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ticketbench"):
        dataclasses.replace(EXPERIMENT, levels=2).run(Net, Data(), out=tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.name == "ticketbench.engine.observers"]
    assert [line.split("  | ")[0].split("  P_m")[0] for line in lines] == \
        ["[imp seed 0] level  0", "[imp seed 0] level  1"], lines
    assert all("  | " in line for line in lines), "each line ends with the time left"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ticketbench"):
        dataclasses.replace(EXPERIMENT, levels=3).run(Net, Data(), out=tmp_path)
    assert not caplog.records, "a level of WARNING silences the progress lines"
