"""Compare the speed of two checkouts of ticketbench, alternating them process by process.

    TICKETBENCH_DATA=/path/to/data python benchmarks/alternate.py OLD_TREE NEW_TREE --rounds 6 [--command]

Each process imports ticketbench (and the benchmark workload) from one tree and times, twice
each, 2,000 LeNet-300-100 steps through ``fit_level`` against the bare masked steps, and a
2,000-step level through ``train_level`` against the bare level (the workload of
``test_speed.py``); it prints its own two ratios. With ``--command`` each round also times one
whole command of each tree, the level loop with its run directories and records included:
``ticketbench run`` of MNIST-1D (offline), 3 levels, the winning tickets and random pruning.
Processes alternate OLD, NEW, OLD, ... so that a slow stretch of a shared machine hits both
alike; the medians and ranges over the rounds are printed at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

STEPS = 2_000
COMMAND = ["run", "mnist1d-mlp", "--levels", "3", "--control", "none,random-prune", "--wandb", "off", "--no-progress"]


def sample() -> None:
    """Run in a child process whose ticketbench is the tree under test: print two ratios."""
    from workload import Workload, adam, bare_level, masked_steps

    from ticketbench.data.tensors import ReplicaData
    from ticketbench.training.level import LevelPlan, fit_level, train_level
    from ticketbench.training.replicas import Replicas

    w = Workload.lenet(os.environ["TICKETBENCH_DATA"], STEPS, seeds=1)
    split = w.splits[0]
    no_eval = dataclasses.replace(w.task, eval_every=10 ** 9)

    def bare_steps() -> None:
        model = w.model()
        masked_steps(model, w.masks, adam(model, w.task), w.rows(), split)

    def suite_steps() -> None:
        fit_level(LevelPlan(no_eval, Replicas([w.model()]), [w.masks], ReplicaData([split]), [w.stream()]))

    def bare() -> None:
        model = w.model()
        bare_level(model, w.masks, split, w.rows(), adam(model, w.task), w.task.eval_every)

    def suite() -> None:
        train_level(LevelPlan(w.task, Replicas([w.model()]), [w.masks], ReplicaData([split]), [w.stream()]))

    def seconds(run: Callable[[], None]) -> float:
        began = time.perf_counter()
        run()
        return time.perf_counter() - began

    suite_steps()  # warm-up
    bare_steps()
    total = dict.fromkeys(("bare_steps", "suite_steps", "bare", "suite"), 0.0)
    for _ in range(2):
        for name, run in (("bare_steps", bare_steps), ("suite_steps", suite_steps), ("bare", bare), ("suite", suite)):
            total[name] += seconds(run)
    print(f"{total['suite_steps'] / total['bare_steps']:.4f} {total['suite'] / total['bare']:.4f}")


def command_seconds(tree: Path, env: dict[str, str]) -> float:
    """Wall seconds of :data:`COMMAND` run from ``tree`` into a fresh directory."""
    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ticketbench", *COMMAND, "--out", out], env=env, cwd=tree,
                       capture_output=True, check=True)
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs=2, type=Path, help="the two checkouts, old first")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--command", action="store_true", help="also time a whole `ticketbench run` of each tree")
    args = parser.parse_args()
    ratios: dict[Path, list[tuple[float, ...]]] = {t: [] for t in args.trees}
    for _ in range(args.rounds):
        for tree in args.trees:
            root = tree.resolve()
            env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'benchmarks'}"}
            out = subprocess.run([sys.executable, __file__, "--sample"], env=env, capture_output=True, text=True,
                                 check=True).stdout.split()
            if args.command:
                out.append(f"{command_seconds(root, env):.2f}")
            ratios[tree].append(tuple(map(float, out)))
            print(tree, *out, flush=True)
    whats = ["fit_level steps / bare steps", "train_level / bare level", "seconds of the whole command"]
    for tree, values in ratios.items():
        for i, what in enumerate(whats[:len(values[0])]):
            column = [v[i] for v in values]
            print(f"{tree}: {what} {statistics.median(column):.2f} ({min(column):.2f}-{max(column):.2f})")
    if args.command:
        old, new = (ratios[t] for t in args.trees)
        paired = [n[2] / o[2] for o, n in zip(old, new, strict=True)]
        print(f"whole command, new / old in the same round: {statistics.median(paired):.2f} "
              f"({min(paired):.2f}-{max(paired):.2f})")


if __name__ == "__main__":
    if sys.argv[1:] == ["--sample"]:
        sample()
    else:
        main()
