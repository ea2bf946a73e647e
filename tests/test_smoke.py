"""End-to-end smoke runs: Conv-2 on real CIFAR-10, and the offline MNIST-1D task through the CLI."""

from __future__ import annotations

import pytest
from test_cli import ticketbench, ticketbench_process

from ticketbench.config import load_task
from ticketbench.engine.suite_runner import run_imp
from ticketbench.overrides import override


@pytest.mark.slow
def test_conv2_on_real_cifar10_learns(real_cifar_dir, tmp_path) -> None:
    """200 steps of the Conv-2 protocol: well above chance (10%) on the real test set."""
    task = override(load_task("conv2-cifar10"), max_steps=200, eval_every=100, val_size=1000, levels=1)
    run = run_imp(task, 0, out=tmp_path, data_dir=str(real_cifar_dir))
    (record,) = run.records()
    assert record["test_acc_at_early_stop"] > 0.25 and record["early_stop_step"] in (100, 200)


@pytest.mark.parametrize("steps", [pytest.param([], id="task-steps", marks=pytest.mark.slow),
                                   pytest.param(["--max-steps", "200"], id="200-steps")])
def test_mnist1d_default_task_end_to_end(steps: list[str], tmp_path) -> None:
    """`ticketbench run` with no task trains MNIST-1D offline, through the installed console script;
    the control follows; score reads both."""
    base = ["--levels", "2", *steps, "--out", str(tmp_path)]
    first = ticketbench_process("run", *base)
    assert first.returncode == 0, first.stderr
    assert "mnist1d-mlp" in first.stdout and "level  1  P_m  80.00%" in first.stdout
    control = ticketbench("run", "mnist1d-mlp", "--control", "random-prune", *base)
    assert control.returncode == 0, control.stderr
    scored = ticketbench("score", str(tmp_path / "mnist1d-mlp"))
    assert scored.returncode == 0 and "dense-accuracy" in scored.stdout
    assert (tmp_path / "mnist1d-mlp" / "verdicts.json").is_file()
