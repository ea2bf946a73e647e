"""Seconds per training step and per validation of each CIFAR-10 task on this machine's CPU, and
the time of a level projected from them.

Times the work of a level as the suite does it: the training step (the batch from the
device-resident split, with augmentation where the task has it, forward, backward, the fused
optimizer step and the fused mask multiplication) for a few steps after a warm-up, and one
validation pass over the 5,000 held-out images, both with the convolutional networks
channels-last (the suite's layout on a CPU), in float32 or under bf16-mixed autocast (the
argument, as ``--precision`` takes it). A level is ``max_steps`` steps, a validation every
``eval_every`` steps, and at its end the test set twice and the training set once (about 13
validations' worth of images).

    OMP_NUM_THREADS=1 TICKETBENCH_DATA=../shared/data python results/cpu-step-time/measure.py [bf16-mixed]
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ticketbench.catalog import projected_level_seconds
from ticketbench.config import PRECISIONS, load_task
from ticketbench.data import BatchStream, load_arrays, task_split
from ticketbench.models import build_model
from ticketbench.pruning.masks import full_masks
from ticketbench.pruning.schedule import pruned_tensors
from ticketbench.training.arithmetic import autocast, channels_last, wants_channels_last
from ticketbench.training.module import build_optimizer

TASKS = {"conv2-cifar10": 10, "conv4-cifar10": 10, "conv6-cifar10": 6, "resnet20-cifar10": 10}


def seconds_per_step_and_validation(task_name: str, steps: int, arrays: dict, precision: str) -> tuple[float, float]:
    task = load_task(task_name)
    split = task_split(arrays, task, 0)
    rows = BatchStream(len(split.y_train), task.batch_size, 0, augment=split.augments).steps(0, steps + 2)
    model = build_model(task.model, 0)
    layout = wants_channels_last(model)
    if layout:
        model = model.to(memory_format=torch.channels_last)
    masks = full_masks(model, list(pruned_tensors(model, task.pruning)))
    params = [model.get_parameter(n) for n in masks]
    factors = [m.float() for m in masks.values()]
    opt = build_optimizer(list(model.parameters()), task.optimizer)
    for i, batch in enumerate(rows):
        if i == 2:
            began = time.perf_counter()
        x, y = split.train_batch(batch)
        with autocast(precision, "cpu"):
            logits = model(channels_last(x) if layout else x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(params, factors)
    per_step = (time.perf_counter() - began) / steps
    model.eval()
    began = time.perf_counter()
    with torch.no_grad(), autocast(precision, "cpu"):
        model(channels_last(split.x_val) if layout else split.x_val)
    return per_step, time.perf_counter() - began


def cpu_name() -> str:
    """The CPU's model name, its widest vector instructions and which bfloat16 instructions it has
    (Linux; else the architecture)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    vector = "AVX-512" if "avx512f" in flags else "AVX2, no AVX-512" if "avx2" in flags else "no AVX2"
    has = [label for flag, label in (("avx512_bf16", "AVX-512 bf16"), ("amx_bf16", "AMX-BF16")) if flag in flags]
    return f"{name} ({vector}; {'with ' + ' and '.join(has) if has else 'without bf16'} instructions)"


def main(precision: str) -> None:
    arrays = load_arrays("cifar10")
    print(f"Machine: {cpu_name()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}; {precision}, convolutional networks channels-last. "
          "Command: see the docstring of measure.py.\n")
    print("| task | batch | steps timed | s / step | s / validation (5,000 images) | steps per level | "
          "projected hours per level |")
    print("|---|---|---|---|---|---|---|")
    for name, steps in TASKS.items():
        task = load_task(name)
        per_step, validation = seconds_per_step_and_validation(name, steps, arrays, precision)
        hours = projected_level_seconds(task, per_step, validation) / 3600
        print(f"| {name} | {task.batch_size} | {steps} | {per_step:.3f} | {validation:.1f} | {task.max_steps} | "
              f"{hours:.1f} |")


if __name__ == "__main__":
    arithmetic = sys.argv[1] if len(sys.argv) > 1 else "32-true"
    if arithmetic not in PRECISIONS:
        raise SystemExit(f"precision {arithmetic!r}: valid are {', '.join(PRECISIONS)}")
    main(arithmetic)
