"""What ``ticketbench list`` says about each task: a one-line protocol summary built from the
resolved configuration, and the time a level takes where it has been measured."""

from __future__ import annotations

from ticketbench.config import TaskConfig

# Measured on the 2-core development CPU with one torch thread. Seconds per full level: the median
# of the committed evidence levels (results/<task>/*/levels). Seconds per step and per validation
# (results/cpu-step-time; float32, conv networks channels-last) for the tasks whose levels take
# hours here: their level time is projected from the task's steps and validations.
CPU_LEVEL_SECONDS: dict[str, float] = {"lenet300-mnist": 320, "mnist1d-mlp": 29.5}
CPU_STEP_SECONDS: dict[str, tuple[float, float]] = {  # (a training step, a validation of 5,000 images)
    "conv2-cifar10": (0.193, 6.6), "conv4-cifar10": (0.336, 16.6), "conv6-cifar10": (0.538, 18.4),
    "resnet20-cifar10": (0.573, 13.3), "resnet20-cifar10-rewind0": (0.573, 13.3),
    # the same network and data as lenet300-mnist (50K steps a level, validations included)
    "lenet300-mnist-lmc": (CPU_LEVEL_SECONDS["lenet300-mnist"] / 50_000, 0.0)}
# bf16-mixed autocast, channels-last, on an Intel Xeon with AVX-512 bf16 and AMX-BF16 instructions
# (results/cpu-step-time, one thread); a CPU without bf16 instructions runs it slower than float32.
CPU_BF16_STEP_SECONDS: dict[str, tuple[float, float]] = {
    "conv2-cifar10": (0.084, 3.4), "conv4-cifar10": (0.102, 5.3), "conv6-cifar10": (0.134, 6.5),
    "resnet20-cifar10": (0.259, 6.4), "resnet20-cifar10-rewind0": (0.259, 6.4)}
GPU_LEVEL_SECONDS: dict[str, float] = {}
GPU_STEP_SECONDS: dict[str, tuple[float, float]] = {}


def duration(seconds: float) -> str:
    """``42 s``, ``5.3 min``, ``1.8 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# At the end of a level: the test set at the final and at the early-stop weights (2 x 10,000
# images) and the training set (45,000), in units of one validation of 5,000 images.
END_OF_LEVEL_VALIDATIONS = (2 * 10_000 + 45_000) / 5_000


def projected_level_seconds(task: TaskConfig, per_step: float, per_validation: float) -> float:
    """A level's time from the seconds of one training step and of one validation."""
    validations = -(-task.max_steps // task.eval_every) + END_OF_LEVEL_VALIDATIONS
    return task.max_steps * per_step + validations * per_validation


def level_time(task: TaskConfig, per_level: dict[str, float], per_step: dict[str, tuple[float, float]]) -> str:
    """The measured time of a level, or ``~`` a projection from the seconds of a step and of a
    validation, or 'not measured'."""
    if task.name in per_level:
        return duration(per_level[task.name])
    if task.name in per_step:
        return "~" + duration(projected_level_seconds(task, *per_step[task.name]))
    return "not measured"


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
