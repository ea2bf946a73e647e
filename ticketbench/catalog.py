"""What ``ticketbench list`` says about each task: a one-line protocol summary built from the
resolved configuration, and the time a level takes where it has been measured."""

from __future__ import annotations

from dataclasses import dataclass

from ticketbench.config import TaskConfig


@dataclass(frozen=True)
class LevelTime:
    """Seconds per full-length level on one kind of machine, and how the number was obtained."""

    seconds: float
    how: str


# Measured on the 2-core development CPU with one torch thread. LeNet and MNIST-1D: the median of
# the committed evidence levels (results/<task>/*/levels). The CIFAR-10 tasks: measured seconds per
# step (results/cpu-step-time) times the steps of a level, i.e. a projection, marked "~".
CPU_LEVEL_TIME: dict[str, LevelTime] = {
    "lenet300-mnist": LevelTime(320, "median of 17 levels, results/lenet300-mnist"),
    "mnist1d-mlp": LevelTime(29.5, "median of 18 levels, results/mnist1d-mlp"),
    "conv2-cifar10": LevelTime(0.329 * 20_000, "~ 0.329 s/step x 20,000 steps, results/cpu-step-time"),
    "conv4-cifar10": LevelTime(0.495 * 25_000, "~ 0.495 s/step x 25,000 steps, results/cpu-step-time"),
    "conv6-cifar10": LevelTime(0.752 * 30_000, "~ 0.752 s/step x 30,000 steps, results/cpu-step-time"),
    "resnet20-cifar10": LevelTime(0.927 * 56_160, "~ 0.927 s/step x 56,160 steps, results/cpu-step-time"),
    "resnet20-cifar10-rewind0": LevelTime(0.927 * 56_160, "~ 0.927 s/step x 56,160 steps, results/cpu-step-time"),
}
GPU_LEVEL_TIME: dict[str, LevelTime] = {}


def duration(seconds: float) -> str:
    """``42 s``, ``5.3 min``, ``1.8 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def level_time(task: str, table: dict[str, LevelTime]) -> str:
    known = table.get(task)
    if known is None:
        return "not measured"
    return ("~" if known.how.startswith("~") else "") + duration(known.seconds)


def protocol_summary(task: TaskConfig) -> str:
    """E.g. ``lenet300 on mnist; adam lr 0.0012, batch 60, 50,000 steps; 17 levels, layerwise
    prune hidden 20% output 10%, rewind to step 0``."""
    opt = task.optimizer
    rates = " ".join(f"{role} {100 * rate:g}%" for role, rate in task.pruning.rates.items())
    extras = "".join(f" {name} {value:g}" for name, value in (("momentum", opt.momentum), ("wd", opt.weight_decay))
                     if value)
    return (f"{task.model} on {task.dataset}; {opt.name} lr {opt.lr:g}{extras}, batch {task.batch_size}, "
            f"{task.max_steps:,} steps; {task.levels} levels, {task.pruning.scope} prune {rates}, "
            f"rewind to step {task.rewind_step}")
