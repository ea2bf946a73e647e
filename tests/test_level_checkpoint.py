"""A level stopped midway resumes from its checkpoint to the record and masks of an uninterrupted
run (``--checkpoint-every``): at level 0 (θ_k taken at the start, k = 0, or midway, k > 0), at a
pruned level, for stacked replicas, and for a convolutional task trained channels-last. The stop
is a full disk injected after a validation (ticketbench.faults), with the command in process.
The convolutional case also pins the layout of restored optimizer state: the checkpoint stores
pruned tensors' kept entries only, and moments restored in NCHW order next to a channels-last
weight made the fused Adam step update the wrong entries (a different level 2 mask, measured)."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
import torch
from conftest import slow_params, snapshot
from test_cli import TINY

from ticketbench.cli import main
from ticketbench.storage.run_dir import RunDir

LEVELS = ["--levels", "3", "--wandb", "off", "--no-progress"]
EVERY = ["--checkpoint-every", "0.00001"]  # a checkpoint at every validation


def _run(out: Path, data: Path, *args: str, fault: str | None = None,
         monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    if monkeypatch is not None:
        monkeypatch.setenv("TICKETBENCH_DATA", str(data))
        if fault:
            monkeypatch.setenv("TICKETBENCH_FAULT", f"enospc:{fault}")
        else:
            monkeypatch.delenv("TICKETBENCH_FAULT", raising=False)
    return main([*args, "--out", str(out)])


def _runs(out: Path) -> list[RunDir]:
    return [RunDir(p) for p in sorted(out.glob("*/*-seed*"))]


def _comparable(run: RunDir) -> tuple[list[dict], dict[str, bytes]]:
    records = [{k: v for k, v in r.items() if k not in ("seconds", "resumed_from_steps")} for r in run.records()]
    masks = {p.name: p.read_bytes() for p in sorted((run.path / "masks").glob("*.npz"))}
    return records, masks


CASES = {
    "level 0, k = 0": (["run", "lenet300-mnist", *TINY], "level 0 step 30", 0),
    "level 0, k = 15": (["run", "lenet300-mnist", *TINY, "--set", "rewind_step=15"], "level 0 step 30", 0),
    "pruned level, reinit alongside": (["run", "lenet300-mnist", *TINY, "--control", "none,reinit"],
                                       "level 1 step 30", 1),
    "replicas": (["run", "lenet300-mnist", *TINY, "--replicas", "2"], "level 2 step 30", 2),
}


@pytest.mark.parametrize("case", slow_params(list(CASES), ["pruned level, reinit alongside", "replicas"]))
def test_a_stopped_level_resumes_from_its_checkpoint_to_the_uninterrupted_result(
        case: str, fake_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv, fault, level = CASES[case]
    assert _run(tmp_path / "whole", fake_data_dir, *argv, *LEVELS, monkeypatch=monkeypatch) == 0
    out = tmp_path / "stopped"
    assert _run(out, fake_data_dir, *argv, *LEVELS, *EVERY, fault=fault, monkeypatch=monkeypatch) != 0
    stopped = _runs(out)
    for run in stopped:
        if run.progress_path(level).is_file():  # a control starts at level 1
            assert torch.load(run.progress_path(level), weights_only=True)["step"] == 20
            assert not run.has_level(level)
    assert any(run.progress_path(level).is_file() for run in stopped)
    assert _run(out, fake_data_dir, *argv, *LEVELS, monkeypatch=monkeypatch) == 0
    for whole, resumed in zip(_runs(tmp_path / "whole"), _runs(out), strict=True):
        assert _comparable(resumed) == _comparable(whole)
        assert [r.get("resumed_from_steps") for r in resumed.records()] == \
            [[20] if r["level"] == level else None for r in resumed.records()]
        assert not (resumed.path / "progress").is_dir() or not any((resumed.path / "progress").iterdir())


def test_a_convolutional_level_resumes_channels_last(fake_cifar_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "conv2-cifar10", "--set", "val_size=50", "--set", "batch_size=10", "--max-steps", "30",
            "--eval-every", "10", "--levels", "2", "--wandb", "off", "--no-progress"]
    assert _run(tmp_path / "whole", fake_cifar_dir, *argv, monkeypatch=monkeypatch) == 0
    out = tmp_path / "stopped"
    assert _run(out, fake_cifar_dir, *argv, *EVERY, fault="level 1 step 20", monkeypatch=monkeypatch) != 0
    capsys.readouterr()
    assert main(["runs", str(out)]) == 0
    listing = capsys.readouterr().out
    assert "1/2" in listing and "in progress (checkpoint at step 10)" in listing
    assert _run(out, fake_cifar_dir, *argv, monkeypatch=monkeypatch) == 0
    (whole,), (resumed,) = _runs(tmp_path / "whole"), _runs(out)
    assert _comparable(resumed) == _comparable(whole)
    assert all(r["channels_last"] for r in resumed.records())
    assert resumed.records()[1]["resumed_from_steps"] == [10]


def test_a_checkpoint_without_the_validation_curve_resumes_to_a_record_without_it(
        fake_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint written before level records kept the validation curve still resumes; the
    record then leaves out the curve it only partly knows."""
    argv = ["run", "lenet300-mnist", *TINY, *LEVELS]
    assert _run(tmp_path / "whole", fake_data_dir, *argv, monkeypatch=monkeypatch) == 0
    out = tmp_path / "stopped"
    assert _run(out, fake_data_dir, *argv, *EVERY, fault="level 1 step 30", monkeypatch=monkeypatch) != 0
    (run,) = _runs(out)
    saved = torch.load(run.progress_path(1), weights_only=True)
    assert [v[0] for v in saved.pop("validations")] == [10, 20]
    torch.save(saved, run.progress_path(1))
    assert _run(out, fake_data_dir, *argv, monkeypatch=monkeypatch) == 0
    (whole,) = _runs(tmp_path / "whole")
    (records, _), (expected, _) = _comparable(run), _comparable(whole)
    assert "validation" not in records[1] and "validation" in records[0] and "validation" in records[2]
    assert records[1] == {k: v for k, v in expected[1].items() if k != "validation"}


def test_a_damaged_checkpoint_is_refused_in_one_line_and_kept(fake_data_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "lenet300-mnist", *TINY, *LEVELS]
    assert _run(tmp_path, fake_data_dir, *argv, *EVERY, fault="level 1 step 30", monkeypatch=monkeypatch) != 0
    (run,) = _runs(tmp_path)
    run.progress_path(1).write_bytes(b"not a checkpoint")
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert _run(tmp_path, fake_data_dir, *argv, monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "level_01.pt: not a readable level checkpoint" in err
    assert "delete it, and the level trains from its start" in err
    assert snapshot(tmp_path) == before



def test_a_checkpoint_keeps_only_the_kept_entries_of_pruned_tensors(fake_data_dir: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["run", "lenet300-mnist", *TINY, *LEVELS, *EVERY]
    assert _run(tmp_path, fake_data_dir, *argv, fault="level 2 step 30", monkeypatch=monkeypatch) != 0
    (run,) = _runs(tmp_path)
    masks = run.load_masks(2)
    saved = torch.load(run.progress_path(2), weights_only=True)
    kept = {n: int(m.sum()) for n, m in masks.items()}
    assert {n: saved["state"][n].shape for n in masks} == {n: (k,) for n, k in kept.items()}
    moments = saved["optimizer_state"]["state"][saved["parameters"].index("fc1.weight")]
    assert moments["exp_avg"].shape == moments["exp_avg_sq"].shape == (kept["fc1.weight"],)
    assert saved["state"]["fc1.bias"].shape == (300,)  # biases are not pruned: whole


def test_sigusr1_asks_for_a_checkpoint_at_the_next_validation(fake_data_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def point(name: str) -> None:  # at level 1: SIGUSR1 after the validation of step 20, a full disk at step 30
        if name == "level 1 step 20":
            os.kill(os.getpid(), signal.SIGUSR1)
        if name == "level 1 step 30":
            raise OSError(errno.ENOSPC, "injected")

    monkeypatch.setattr("ticketbench.training.callback.fault_point", point)
    argv = ["run", "lenet300-mnist", *TINY, *LEVELS, "--checkpoint-every", "600"]  # never due by the clock
    assert _run(tmp_path, fake_data_dir, *argv, monkeypatch=monkeypatch) != 0
    (run,) = _runs(tmp_path)
    assert not run.progress_path(0).is_file() and run.has_level(0)
    assert torch.load(run.progress_path(1), weights_only=True)["step"] == 20
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the level's handler is gone with it
