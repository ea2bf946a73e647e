"""Convolutional tasks on the CPU: seconds per training step under each arithmetic, as ratios
against float32 NCHW (the layout the suite used on the CPU before channels-last), and the suite's
level against a bare loop with the suite's own arithmetic (float32 channels-last).

    TICKETBENCH_DATA=/path/to/data OMP_NUM_THREADS=1 pytest benchmarks/test_conv_arithmetic.py --benchmark-only

Each loop trains ``CONV_STEPS`` steps of the task's protocol (Adam, batch 60, real CIFAR-10,
masks enforced after every step), warmed up by two steps (compiled, for the compiled loop), then
measures validation accuracy, which must be above chance: a loop that skips work cannot pass as
fast. The suite's level is timed from its start (Lightning's set-up included)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from conftest import data_dir

from ticketbench.config import TaskConfig, load_task
from ticketbench.data import BatchStream, DeviceSplit, load_arrays, task_split
from ticketbench.data.tensors import ReplicaData
from ticketbench.models import build_model
from ticketbench.overrides import override
from ticketbench.pruning.masks import full_masks
from ticketbench.pruning.schedule import pruned_tensors
from ticketbench.training.arithmetic import autocast, channels_last
from ticketbench.training.level import LevelPlan, fit_level
from ticketbench.training.replicas import Replicas

CONV_STEPS = 40
STEP_VALIDATION = 1_000  # images validated after the steps of the arithmetic figures (a level: all 5,000)
ROUNDS = 3
CHANCE = 0.12  # 10 classes; 40 steps of Conv-2/Conv-6 reach 0.2-0.3
ARITHMETIC = ("fp32-nchw", "fp32-channels-last", "bf16-channels-last", "compiled-fp32-channels-last")
TASKS = ("conv2-cifar10", "conv6-cifar10")
rounds = pytest.mark.parametrize("rnd", range(ROUNDS))


@pytest.fixture(scope="module")
def cifar() -> dict:
    return load_arrays("cifar10", data_dir("cifar10.npz"))


def _setup(task_name: str, arrays: dict) -> tuple:
    task = override(load_task(task_name), max_steps=CONV_STEPS, eval_every=10 ** 9)
    split = task_split(arrays, task, 0)
    model = build_model(task.model, 0)
    masks = full_masks(model, list(pruned_tensors(model, task.pruning)))
    return task, split, masks, BatchStream(len(split.y_train), task.batch_size, 0).steps(0, CONV_STEPS)


@torch.no_grad()
def _val_accuracy(model: torch.nn.Module, split: DeviceSplit, layout: bool, n: int) -> float:
    model.eval()
    x = channels_last(split.x_val[:n]) if layout else split.x_val[:n]
    return float((torch.cat([model(c) for c in x.split(1000)]).argmax(1) == split.y_val[:n]).float().mean())


def bare_loop(task: TaskConfig, split: DeviceSplit, masks: dict, arithmetic: str,
              validate: int) -> Callable[[torch.Tensor], float]:
    """The bare loop under ``arithmetic`` (see ARITHMETIC) from θ0 of seed 0, warmed up (compiled
    where it compiles) by two steps: ``run(rows)`` trains those steps and returns the accuracy on
    the first ``validate`` validation images."""
    layout = "channels-last" in arithmetic
    precision = "bf16-mixed" if arithmetic.startswith("bf16") else "32-true"
    model = build_model(task.model, 0)
    if layout:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=task.optimizer.lr, fused=True)
    params = [model.get_parameter(n) for n in masks]
    factors = [m.float() for m in masks.values()]

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(precision, "cpu"):
            logits = model(x)
        return F.cross_entropy(logits.float(), y)

    loss_fn = torch.compile(loss_of) if arithmetic.startswith("compiled") else loss_of

    def run(rows: torch.Tensor) -> float:
        model.train()
        for row in rows:
            x, y = split.train_batch(row)
            loss = loss_fn(channels_last(x) if layout else x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                torch._foreach_mul_(params, factors)
        return _val_accuracy(model, split, layout, validate)

    run(BatchStream(len(split.y_train), task.batch_size, 1).steps(0, 2))
    return run


@pytest.mark.parametrize("task_name", TASKS)
@pytest.mark.parametrize("arithmetic", ARITHMETIC)
@rounds
def test_conv_step(measure, cifar, task_name, arithmetic) -> None:
    task, split, masks, rows = _setup(task_name, cifar)
    accuracy = measure(f"conv-{task_name}-{arithmetic}", lambda run: run(rows),
                       lambda: (bare_loop(task, split, masks, arithmetic, STEP_VALIDATION),))
    assert accuracy > CHANCE


@pytest.mark.parametrize("loop", ["bare", "ticketbench"])
@rounds
def test_conv_level(measure, cifar, loop) -> None:
    """Conv-2: the suite's level (Lightning, masks, one validation) vs the bare loop, both float32 channels-last."""
    task, split, masks, rows = _setup("conv2-cifar10", cifar)
    if loop == "bare":
        accuracy = measure("convlevel-bare", lambda run: run(rows),
                           lambda: (bare_loop(task, split, masks, "fp32-channels-last", len(split.y_val)),))
    else:
        def run(model: Replicas) -> float:
            stream = BatchStream(len(split.y_train), task.batch_size, 0)
            fitted = fit_level(LevelPlan(task, model, [masks], ReplicaData([split]), [stream]))
            return fitted.module.val_acc[0].item()  # the one validation, after the last step
        accuracy = measure("convlevel-ticketbench", run, lambda: (Replicas([build_model(task.model, 0)]),))
    assert accuracy > CHANCE
