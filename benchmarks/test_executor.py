"""(e) The local executor: K jobs at once (``ticketbench sweep``, K = the cores) against the same
K jobs as ``ticketbench run`` invocations one after another, each of those with every core.

Both sides are whole commands (process start, imports and data included), so the ratio is the
throughput a user gains by handing the seeds to the sweep. The jobs: MNIST-1D (offline), seeds
0..K-1, winning tickets and random pruning together, 2 levels of the task's 1,500 steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

K = len(os.sched_getaffinity(0))
JOB = ["mnist1d-mlp", "--control", "none,random-prune", "--levels", "2", "--wandb", "off", "--no-progress"]
TRAINED = 0.5  # MNIST-1D: chance is 0.10, the dense MLP reaches ~0.65


def _ticketbench(*args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    subprocess.run([sys.executable, "-m", "ticketbench", *args], check=True, env=env, capture_output=True)


def _accuracies(out: Path) -> list[float]:
    return [json.loads(p.read_text())["test_acc_final"] for p in out.glob("mnist1d-mlp/*/levels/level_*.json")]


@pytest.mark.parametrize("mode", ["sequential", "sweep"])
@pytest.mark.parametrize("rnd", range(3))  # below the mode: the rounds interleave
def test_executor(measure, tmp_path_factory, mode, rnd) -> None:
    def sequential(out: Path) -> list[float]:
        for seed in range(K):
            _ticketbench("run", *JOB[:1], "--seed", str(seed), *JOB[1:], "--out", str(out))
        return _accuracies(out)

    def sweep(out: Path) -> list[float]:
        _ticketbench("sweep", JOB[0], "--seeds", f"0-{K - 1}", "--arms", "none,random-prune", *JOB[3:-1],
                     "--out", str(out))
        return _accuracies(out)

    run = sequential if mode == "sequential" else sweep
    accuracies = measure(f"executor-{mode}", run, lambda: (tmp_path_factory.mktemp(f"executor-{mode}"),))
    assert len(accuracies) == 3 * K and min(accuracies) > TRAINED
