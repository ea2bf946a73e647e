"""The ``ticketbench`` command: called in this process (``ticketbench.cli.main``) as a user's
shell would run it, or as a real process where the process itself is what a test is about."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from ticketbench.cli import main
from ticketbench.config import task_names

# the LeNet-300-100 protocol shrunk to seconds (as the tiny_task fixture)
TINY = ["--set", "val_size=100", "--set", "batch_size=20", "--max-steps", "40", "--eval-every", "10"]

# the handlers a command installs while it runs (stop signals, checkpoint requests) and must take back
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


def _environment(data: Path | None, env: dict[str, str] | None, drop: tuple[str, ...]) -> dict[str, str]:
    """This process's environment with one CPU thread, ``TICKETBENCH_DATA=data`` and ``env`` added,
    the variables ``drop`` removed."""
    full = {k: v for k, v in os.environ.items() if k not in drop} | {"OMP_NUM_THREADS": "1", **(env or {})}
    if data is not None:
        full["TICKETBENCH_DATA"] = str(data)
    return full


def _settings() -> dict[str, object]:
    """The process-wide settings ``main`` promises to leave as it found them."""
    return {"signals": {sig: signal.getsignal(sig) for sig in SIGNALS}, "warnings": list(warnings.filters),
            "lightning": logging.getLogger("lightning.pytorch").level,
            "ticketbench": (logging.getLogger("ticketbench").level, logging.getLogger("ticketbench").propagate,
                            list(logging.getLogger("ticketbench").handlers)),
            "deterministic": torch.are_deterministic_algorithms_enabled()}


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """A warning on the command's stderr, as a process of its own prints it (pytest would collect it)."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextmanager
def _as_a_new_process(env: dict[str, str], cwd: Path | None, argv: list[str]) -> Iterator[None]:
    """Run the block in ``env`` and ``cwd``, with ``argv`` and one torch thread, as a new process of
    the command would; then put back the environment, working directory, argv, thread count and
    random states (a run seeds the global generators), and check the settings ``main`` keeps."""
    saved_env, saved_cwd, saved_argv, threads = dict(os.environ), os.getcwd(), sys.argv, torch.get_num_threads()
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    before = _settings()
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["ticketbench", *argv]
    torch.set_num_threads(1)
    try:
        os.chdir(cwd or saved_cwd)
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        torch.set_num_threads(threads)
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
    assert _settings() == before, "the command changed settings of the process that it must put back"


def ticketbench(*args: str, data: Path | None = None, cwd: Path | None = None,
                env: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The command called in this process, its stdout and stderr captured: ``TICKETBENCH_DATA=data``
    and ``env`` added to the environment, the variables ``drop`` removed from it, run in ``cwd``;
    a usage error's exit (argparse) is the return code. Everything but the process of its own: a
    new interpreter's start-up (PYTHONPATH, the entry point) needs :func:`ticketbench_process`."""
    assert "PYTHONPATH" not in (env or {}), "PYTHONPATH takes effect in a new interpreter: use ticketbench_process"
    out, err = io.StringIO(), io.StringIO()
    with _as_a_new_process(_environment(data, env, drop), cwd, list(args)), redirect_stdout(out), \
            redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as stop:
            code = int(stop.code or 0)
    return subprocess.CompletedProcess(["ticketbench", *args], code, out.getvalue(), err.getvalue())


def ticketbench_process(*args: str, data: Path | None = None,
                        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The installed ``ticketbench`` console script as a real process, with the environment of
    :func:`ticketbench`."""
    script = Path(sys.executable).with_name("ticketbench")
    return subprocess.run([str(script), *args], capture_output=True, text=True, env=_environment(data, env, ()),
                          timeout=600)


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
    assert "time per level: CPU ~6.1 h (bf16-mixed: ~1.7 h with AMX-BF16), GPU not measured" in result.stdout
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
