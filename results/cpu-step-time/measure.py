"""Seconds per training step of each CIFAR-10 task on this machine's CPU.

Times the body of the training loop exactly as a level runs it — the batch from the device-resident
split (with augmentation where the task has it), forward, backward, the optimizer step and the
fused mask multiplication — for a few steps after a warm-up, and projects one level.

    OMP_NUM_THREADS=1 TICKETBENCH_DATA=../shared/data python results/cpu-step-time/measure.py \
        > results/cpu-step-time/README.md
"""

from __future__ import annotations

import platform
import time

import torch
import torch.nn.functional as F

from ticketbench.config import load_task
from ticketbench.data import BatchStream, load_arrays, make_split
from ticketbench.models import build_model
from ticketbench.pruning.masks import full_masks
from ticketbench.pruning.schedule import pruned_tensors
from ticketbench.training.module import build_optimizer

TASKS = {"conv2-cifar10": 10, "conv4-cifar10": 10, "conv6-cifar10": 6, "resnet20-cifar10": 10}


def seconds_per_step(task_name: str, steps: int, arrays: dict) -> float:
    task = load_task(task_name)
    augment = task.augment == "crop-flip"
    split = make_split(arrays, task.dataset, task.normalize, task.val_size, 0, stratified=True, augment=augment)
    rows = BatchStream(len(split.y_train), task.batch_size, 0, augment=augment).steps(0, steps + 2)
    model = build_model(task.model, 0)
    masks = full_masks(model, list(pruned_tensors(model, task.pruning)))
    params = [model.get_parameter(n) for n in masks]
    factors = [m.float() for m in masks.values()]
    opt = build_optimizer(list(model.parameters()), task.optimizer)
    for i, batch in enumerate(rows):
        if i == 2:
            began = time.perf_counter()
        x, y = split.train_batch(batch)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(params, factors)
    return (time.perf_counter() - began) / steps


def main() -> None:
    arrays = load_arrays("cifar10")
    print("# Seconds per training step on CPU\n")
    print(f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}. Command: see the docstring of measure.py.\n")
    print("| task | batch | steps timed | s / step | steps per level | projected hours per level |")
    print("|---|---|---|---|---|---|")
    for name, steps in TASKS.items():
        task = load_task(name)
        per_step = seconds_per_step(name, steps, arrays)
        print(f"| {name} | {task.batch_size} | {steps} | {per_step:.3f} | {task.max_steps} | "
              f"{per_step * task.max_steps / 3600:.1f} |")


if __name__ == "__main__":
    main()
