"""Precision, compilation and memory layout (ticketbench.training.arithmetic), on this CPU.

Tolerances. A compiled step fuses kernels, so it rounds differently from the eager one: after one
step of ResNet-20 the weights and BatchNorm statistics agree to ~2e-6 (relative 1e-5 and absolute
1e-6 asserted); LeNet-300-100 under Adam after 100 steps to ~5e-6 (1e-4 asserted, the tolerance of
tests/test_replicas.py, for the same reason). Longer ResNet-20 comparisons cannot hold any
tolerance (see tests/test_replicas.py: its training amplifies rounding differences to O(1) within
tens of steps). bf16-mixed changes the arithmetic itself, so it is compared by what it learns.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from test_cli import ticketbench
from test_replicas import train_seeds

from ticketbench.config import load_task
from ticketbench.device import tf32_policy, use_tf32
from ticketbench.models import build_model
from ticketbench.overrides import override
from ticketbench.pruning.masks import full_masks
from ticketbench.training.arithmetic import channels_last


def _half_masks(task_model: str, seed: int) -> dict[str, torch.Tensor]:
    model = build_model(task_model, seed)
    generator = torch.Generator().manual_seed(seed)
    return {n: torch.rand(m.shape, generator=generator) < 0.5 for n, m in full_masks(model, list(model.roles)).items()}


@pytest.mark.slow
def test_compiled_level_equals_eager_and_keeps_masks_exact(tiny_task, fake_data_dir) -> None:
    task = override(tiny_task, max_steps=100, eval_every=50)
    masks = [_half_masks(task.model, s) for s in (0, 1)]
    eager, eager_results = train_seeds(task, fake_data_dir, [0, 1], masks)
    compiled, compiled_results = train_seeds(override(task, compile="default"), fake_data_dir, [0, 1], masks)
    for k in (0, 1):
        for name, value in eager.state(k).items():
            assert torch.allclose(compiled.state(k)[name], value, rtol=0, atol=1e-4), f"replica {k} {name}"
        for name, mask in masks[k].items():
            assert not compiled.state(k)[name][~mask].any(), f"a pruned weight of {name} moved"
        assert compiled_results[k].early_stop_step == eager_results[k].early_stop_step


@pytest.mark.slow
def test_compiled_batchnorm_replicas_equal_eager(fake_cifar_dir) -> None:
    task = override(load_task("resnet20-cifar10"), val_size=50, batch_size=8, max_steps=1, eval_every=1,
                    rewind_step=0, levels=1)
    eager, _ = train_seeds(task, fake_cifar_dir, [0, 1])
    compiled, _ = train_seeds(override(task, compile="default"), fake_cifar_dir, [0, 1])
    for k in (0, 1):
        assert compiled.state(k)["bn.num_batches_tracked"] == 1
        for name, value in eager.state(k).items():
            assert torch.allclose(compiled.state(k)[name].double(), value.double(), rtol=1e-5, atol=1e-6), name


@pytest.mark.slow
def test_bf16_mixed_learns_what_float32_learns_with_float32_weights() -> None:
    # a tenth of the task's learning rate: at Adam 2e-2 the final accuracies of one run swing by
    # several points with any change of rounding (measured: train accuracy 96.9% in float32 and
    # 91.5% in bf16 at 2 threads, 95.5% in both at 1 thread), which would hide what precision does
    task = load_task("mnist1d-mlp")
    task = override(dataclasses.replace(task, optimizer=dataclasses.replace(task.optimizer, lr=2e-3)), levels=1)
    masks = [_half_masks(task.model, 0)]
    full, full_results = train_seeds(task, None, [0], masks)
    mixed, mixed_results = train_seeds(override(task, precision="bf16-mixed"), None, [0], masks)
    for k, (a, b) in enumerate(zip(full_results, mixed_results, strict=True)):
        assert all(v.dtype in (torch.float32, torch.int64) for v in mixed.state(k).values())
        for name, mask in masks[k].items():
            assert not mixed.state(k)[name][~mask].any(), f"a pruned weight of {name} moved"
        assert abs(a.train_acc_final - b.train_acc_final) < 0.02, (a.train_acc_final, b.train_acc_final)
        assert abs(a.test_acc_final - b.test_acc_final) < 0.02, (a.test_acc_final, b.test_acc_final)
        assert b.train_acc_final > 0.8, "bf16-mixed did not learn"
        assert not torch.equal(full.state(k)["fc1.weight"], mixed.state(k)["fc1.weight"]), "bf16 changed nothing"


def test_precision_names_its_own_run_directory_and_compile_does_not() -> None:
    task = load_task("lenet300-mnist")
    assert override(task, precision="bf16-mixed").fingerprint() != task.fingerprint()
    assert override(task, compile="reduce-overhead").fingerprint() == task.fingerprint()
    assert override(task, precision="32-true").fingerprint() == task.fingerprint() == "ec14127d"


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (6, 2, 3, 4, 5)])
def test_channels_last_keeps_values_and_lays_out_channels_innermost(shape) -> None:
    x = torch.randn(*shape)
    y = channels_last(x)
    assert torch.equal(x, y) and y.stride(-3) == 1 and y.stride(-1) == shape[-3]


def test_tf32_policy_follows_precision() -> None:
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        use_tf32("32-true")
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        use_tf32("bf16-mixed")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert not tf32_policy("bf16-mixed", torch.device("cpu")), "TF32 is a CUDA arithmetic: never on a CPU"
        assert tf32_policy("bf16-mixed", torch.device("cuda")) and not tf32_policy("32-true", torch.device("cuda"))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_precision_and_compile_from_the_command_line(tmp_path: Path) -> None:
    common = ["run", "mnist1d-mlp", "--max-steps", "30", "--eval-every", "10", "--levels", "2",
              "--out", str(tmp_path), "--wandb", "off"]
    assert ticketbench(*common).returncode == 0
    result = ticketbench(*common, "--precision", "bf16-mixed", "--compile", "default")
    assert result.returncode == 0, result.stderr
    runs = sorted(p.parent for p in tmp_path.glob("mnist1d-mlp/*/meta.json"))
    assert len(runs) == 2, "bf16-mixed trains in its own run directory"
    assert all(json.loads((run / "meta.json").read_text())["tf32"] is False for run in runs), "no TF32 on a CPU"
    records = {json.loads((run / "meta.json").read_text())["config"].get("precision", "32-true"):
               [json.loads(p.read_text()) for p in sorted(run.glob("levels/*.json"))] for run in runs}
    mixed = [(r["precision"], r["compile"], r["tf32"]) for r in records["bf16-mixed"]]
    assert mixed == [("bf16-mixed", "default", False)] * 2
    assert [(r["precision"], r["compile"]) for r in records["32-true"]] == [("32-true", "off")] * 2
    bad = ticketbench(*common, "--precision", "fp16")
    assert bad.returncode == 2 and "invalid choice: 'fp16'" in bad.stderr and bad.stderr.count("\n") == 1
