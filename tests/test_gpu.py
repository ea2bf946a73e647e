"""The accelerator path on a CUDA device: skipped, with that reason, where there is none.

Short levels of every task, eager and compiled, in float32 and bf16-mixed: masks exact, stacked
replicas equal to separate runs, and no host synchronisation inside a block of optimizer steps.
Tolerances as on the CPU (tests/test_replicas.py, tests/test_arithmetic.py): two steps, because
rounding differences grow with training; TF32 is off under 32-true, so float32 here is float32.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_arithmetic import _half_masks
from test_replicas import train_seeds

from ticketbench.config import TaskConfig, load_task
from ticketbench.data import BatchStream, load_arrays, make_split
from ticketbench.data.tensors import ReplicaData
from ticketbench.models import build_model
from ticketbench.overrides import override
from ticketbench.training.module import Blocks, Classifier, build_optimizer
from ticketbench.training.replicas import Replicas

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; this machine has none")

TASKS = ["mnist1d-mlp", "lenet300-mnist", "conv6-cifar10", "resnet20-cifar10"]


def _short(name: str, steps: int = 2) -> TaskConfig:
    """A few steps of the task at a tenth of its learning rate: rounding differences stay rounding
    differences for that long (see tests/test_replicas.py on how fast ResNet-20 amplifies them)."""
    task = load_task(name)
    task = dataclasses.replace(task, optimizer=dataclasses.replace(task.optimizer, lr=task.optimizer.lr / 10))
    return override(task, val_size=0 if name == "mnist1d-mlp" else 50, batch_size=8, max_steps=steps,
                    eval_every=1, rewind_step=0, levels=1)


def _mostly_close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal to rounding, except for at most 0.1% of entries: Adam moves a weight whose gradient sits
    at rounding level by about ±lr whichever way the rounding went (mnist1d-mlp: lr 2e-2)."""
    far = ~torch.isclose(a.double(), b.double(), rtol=1e-4, atol=1e-5)
    return far.double().mean().item() <= 1e-3


def _data(name: str, fake_data_dir, fake_cifar_dir):
    return {"mnist": fake_data_dir, "cifar10": fake_cifar_dir, "mnist1d": None}[load_task(name).dataset]


@pytest.mark.parametrize("compile_mode", ["off", "default"])
@pytest.mark.parametrize("name", TASKS)
def test_replicas_on_cuda_equal_separate_runs(name, compile_mode, fake_data_dir, fake_cifar_dir):
    task = override(_short(name), compile=compile_mode)
    data = _data(name, fake_data_dir, fake_cifar_dir)
    together, _ = train_seeds(task, data, [0, 1], device="cuda")  # full masks: see tests/test_replicas.py
    for k, seed in enumerate((0, 1)):
        alone, _ = train_seeds(task, data, [seed], device="cuda")
        for tensor, value in alone.state(0).items():
            assert _mostly_close(together.state(k)[tensor], value), tensor


@pytest.mark.parametrize("name", TASKS)
def test_bf16_mixed_on_cuda_keeps_float32_weights_and_masks(name, fake_data_dir, fake_cifar_dir):
    task = override(_short(name, steps=20), precision="bf16-mixed", compile="default")
    masks = [_half_masks(task.model, 0)]
    model, (result,) = train_seeds(task, _data(name, fake_data_dir, fake_cifar_dir), [0], masks, device="cuda")
    assert all(v.dtype in (torch.float32, torch.int64) for v in model.state(0).values())
    assert all(not model.state(0)[t][~m.cuda()].any() for t, m in masks[0].items())
    assert result.steps == 20 and not result.diverged


@pytest.mark.parametrize("compile_mode", ["off", "default"])
@pytest.mark.parametrize("name", TASKS)
def test_a_block_of_steps_never_waits_for_the_host(name, compile_mode, fake_data_dir, fake_cifar_dir):
    task = override(_short(name, steps=8), compile=compile_mode)
    arrays, augment = load_arrays(task.dataset, _data(name, fake_data_dir, fake_cifar_dir)), task.augment == "crop-flip"
    splits = [make_split(arrays, task.dataset, task.normalize, task.val_size, s, "cuda", augment=augment)
              for s in (0, 1)]
    streams = [BatchStream(len(s.y_train), task.batch_size, i, augment=augment) for i, s in enumerate(splits)]
    model = Replicas([build_model(task.model, s) for s in (0, 1)]).cuda()
    module = Classifier(model, ReplicaData(splits), Blocks(streams, 0, 8, []), task.optimizer,
                        precision=task.precision, compile_mode=compile_mode)
    opt = build_optimizer(list(model.parameters()), task.optimizer)
    params = list(model.parameters())
    factors = [torch.ones_like(p) for p in params]

    @torch.no_grad()
    def enforce(*_: object) -> None:  # as the callback enforces masks
        torch._foreach_mul_(params, factors)

    opt.register_step_post_hook(enforce)
    block = next(iter(module.blocks)).cuda()
    module.run_steps(block[:2], opt)  # compile and warm up outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        module.run_steps(block[2:], opt)
    finally:
        torch.cuda.set_sync_debug_mode("default")
