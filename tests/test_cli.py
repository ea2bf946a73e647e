"""The ``ticketbench`` command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ticketbench.config import task_names

# the LeNet-300-100 protocol shrunk to seconds (as the tiny_task fixture)
TINY = ["--set", "val_size=100", "--set", "batch_size=20", "--max-steps", "40", "--eval-every", "10"]


def ticketbench(*args: str, data: Path | None = None, cwd: Path | None = None,
                env: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The command as a subprocess, with ``TICKETBENCH_DATA=data`` and ``env`` added to the environment
    and the variables ``drop`` removed from it."""
    full = {k: v for k, v in os.environ.items() if k not in drop} | {"OMP_NUM_THREADS": "1", **(env or {})}
    if data is not None:
        full["TICKETBENCH_DATA"] = str(data)
    return subprocess.run([sys.executable, "-m", "ticketbench.cli", *args], capture_output=True, text=True,
                          env=full, cwd=cwd, timeout=600)


def test_unknown_task_exits_2_with_one_line() -> None:
    result = ticketbench("run", "lenet-5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "ticketbench: error: unknown task 'lenet-5'; valid tasks: " + ", ".join(task_names())]


def test_invalid_control_is_rejected_in_one_line() -> None:
    result = ticketbench("run", "lenet300-mnist", "--control", "none,shuffle")
    assert result.returncode == 2
    assert result.stderr == ("ticketbench: error: unknown control 'shuffle'; valid: none, reinit, random-prune "
                             "(several comma-separated)\n")


def test_list_shows_every_task_with_its_protocol_and_time_per_level() -> None:
    result = ticketbench("list")
    assert result.returncode == 0
    names = [line for line in result.stdout.splitlines() if line and not line.startswith((" ", "("))]
    assert names == task_names() == [
        "conv2-cifar10", "conv4-cifar10", "conv6-cifar10", "lenet300-mnist", "lenet300-mnist-lmc", "mnist1d-mlp",
        "resnet20-cifar10", "resnet20-cifar10-rewind0"]
    assert "lenet300 on mnist; adam lr 0.0012, batch 60, 50,000 steps; 17 levels" in result.stdout
    assert "time per level: CPU 5.3 min, GPU not measured" in result.stdout
    assert ticketbench("tasks").stdout == result.stdout


def test_table_of_a_non_run_directory_exits_2(tmp_path: Path) -> None:
    result = ticketbench("table", str(tmp_path))
    assert result.returncode == 2 and f"{tmp_path}: not a run directory (no meta.json)" in result.stderr


def test_control_before_winning_tickets_exits_2(tmp_path: Path, fake_data_dir: Path) -> None:
    result = ticketbench("run", "lenet300-mnist", "--control", "reinit", "--out", str(tmp_path),
                         "--max-steps", "20", "--levels", "2", data=fake_data_dir)
    assert result.returncode == 2 and "run the same command with --control none first" in result.stderr
    assert not (tmp_path / "lenet300-mnist").exists(), "a refused control must not leave a run directory"


def test_real_mnist_two_levels(tmp_path: Path, real_data_dir: Path) -> None:
    """2 levels x 300 steps on real MNIST: > 90% test accuracy dense, P_m = 80.04% at level 1."""
    args = ["run", "lenet300-mnist", "--levels", "2", "--max-steps", "300", "--out", str(tmp_path)]
    result = ticketbench(*args, data=real_data_dir)
    assert result.returncode == 0, result.stderr
    (run,) = (tmp_path / "lenet300-mnist").iterdir()
    levels = [json.loads((run / "levels" / f"level_0{i}.json").read_text()) for i in (0, 1)]
    assert levels[0]["test_acc_at_early_stop"] > 0.90 and levels[0]["weights_remaining_percent"] == 100.0
    assert levels[1]["weights_remaining_percent"] == pytest.approx(80.03, abs=0.01)
    again = ticketbench(*args, data=real_data_dir)
    assert again.returncode == 0 and "all 2 levels already finished" in again.stdout


@pytest.mark.parametrize("command", [[], ["run"], ["sweep"], ["report"], ["check"]])
def test_help_prints_and_exits_0(command: list[str]) -> None:
    result = ticketbench(*command, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: ticketbench"), result.stderr
