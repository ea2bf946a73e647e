"""Speed figures as ratios against a bare PyTorch loop timed in the same process.

The loops of a figure are timed in interleaved rounds (round 0 of every loop, then round 1, ...),
each loop one pytest-benchmark per round, so that a ratio compares loops timed within the same
minute: on a shared virtual machine the speed of identical work drifts by tens of percent over
minutes, which would bias a ratio of loops timed one after the other. A figure's ratio is the
median over rounds of the per-round ratios; at the end of the session the ratios are printed with
their spread and targets (the table of benchmarks/README.md)."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from workload import Workload  # noqa: E402

LEVEL_STEPS = 5_000  # a level of the LeNet protocol shortened from 50,000 steps (same cadence)
STEP_STEPS = 1_000
TIMES: dict[str, dict[int, float]] = defaultdict(dict)  # benchmark name -> round -> seconds


@dataclass(frozen=True)
class Ratio:
    label: str
    numerator: str
    denominator: str
    scale: float = 1.0  # e.g. K for "K sequential runs"
    target: tuple[str, float] | None = None  # ("<=" | ">=", bound)

    def per_round(self) -> list[float]:
        """The ratio in each round that timed both loops."""
        num, den = TIMES[self.numerator], TIMES[self.denominator]
        return [self.scale * num[r] / den[r] for r in sorted(num.keys() & den.keys())]


RATIOS = [
    Ratio("(a) training step, Lightning path with masks / bare loop", "step-ticketbench", "step-bare",
          target=("<=", 1.10)),
    Ratio("(b) IMP level, ticketbench / bare loop", "level-ticketbench", "level-bare", target=("<=", 1.10)),
    Ratio("(b) IMP level, bare loop with torch.optim.Adam defaults / bare loop", "level-bare-unfused", "level-bare"),
    Ratio("(b) IMP level, torch.nn.utils.prune / ticketbench", "level-torch-prune", "level-ticketbench"),
    Ratio("(b) IMP level, Lightning ModelPruning / ticketbench", "level-modelpruning", "level-ticketbench",
          target=(">=", 3.0)),
    Ratio("(b) per-batch LightningModule: ModelPruning / LotteryTicket callback",
          "level-modelpruning", "level-lottery-ticket"),
    Ratio("(b) per-batch LightningModule with LotteryTicket / bare loop", "level-lottery-ticket", "level-bare"),
    Ratio("(c) data path, DataLoader(TensorDataset) / device-resident", "data-dataloader", "data-device"),
    *[Ratio(f"(d) {k} replicas: throughput / {k} sequential ticketbench runs", "replicas-1", f"replicas-{k}",
            scale=k, target=(">=", 2.5) if k == 8 else None) for k in (1, 2, 4, 8)],
    Ratio("(d) 1 replica (the ticketbench level) / bare loop", "replicas-1", "replicas-bare"),
    *[Ratio(f"(f) {task} step, float32 NCHW / {arithmetic}", f"conv-{task}-fp32-nchw", f"conv-{task}-{arithmetic}")
      for task in ("conv2-cifar10", "conv6-cifar10")
      for arithmetic in ("fp32-channels-last", "bf16-channels-last", "compiled-fp32-channels-last")],
    Ratio("(g) conv2-cifar10 steps + validation, ticketbench / bare loop (float32 channels-last)",
          "convlevel-ticketbench", "convlevel-bare", target=("<=", 1.10)),
    Ratio(f"(e) local executor: {len(os.sched_getaffinity(0))} jobs at once, throughput / one after another",
          "executor-sequential", "executor-sweep"),
]


def data_dir(filename: str = "mnist.npz") -> str:
    chosen = os.environ.get("TICKETBENCH_DATA")
    if not chosen or not (Path(chosen) / filename).is_file():
        pytest.skip(f"real data not available: set TICKETBENCH_DATA to a directory holding {filename}")
    return chosen


@pytest.fixture(scope="session")
def level_workload() -> Workload:
    return Workload.lenet(data_dir(), LEVEL_STEPS, seeds=1)


@pytest.fixture(scope="session")
def step_workload() -> Workload:
    return Workload.lenet(data_dir(), STEP_STEPS)


@pytest.fixture
def measure(benchmark, rnd: int) -> Callable[..., object]:
    """``measure(name, run, setup)``: time ``run(*setup())`` once (setup untimed) as round ``rnd``
    of ``name``; round 0 is preceded by an untimed warm-up run."""

    def run(name: str, target: Callable[..., object], setup: Callable[[], tuple]) -> object:
        benchmark.group = name.split("-")[0]
        benchmark.name = f"{name}[{rnd}]"
        outcome = benchmark.pedantic(target, setup=lambda: (setup(), {}), rounds=1, warmup_rounds=int(rnd == 0))
        TIMES[name][rnd] = benchmark.stats.stats.median
        return outcome

    return run


def pytest_terminal_summary(terminalreporter) -> None:
    rows = [(r, r.per_round()) for r in RATIOS if r.per_round()]
    if not rows:
        return
    write = terminalreporter.write_line
    write("")
    write(f"ticketbench speed ratios (median of per-round ratios; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    write(f"| {'figure':<72} | ratio | rounds (min-max)  | target | met |")
    write(f"|{'-' * 74}|------:|-------------------|--------|-----|")
    for ratio, values in rows:
        value = statistics.median(values)
        spread = f"{len(values)} ({min(values):.2f}-{max(values):.2f})"
        target = f"{ratio.target[0]} {ratio.target[1]:g}" if ratio.target else ""
        met = "" if not ratio.target else (
            "yes" if (value <= ratio.target[1] if ratio.target[0] == "<=" else value >= ratio.target[1]) else "no")
        write(f"| {ratio.label:<72} | {value:5.2f} | {spread:<17} | {target:<6} | {met:<3} |")
