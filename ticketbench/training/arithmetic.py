"""How a level's arithmetic runs: precision, compilation, TF32 and memory layout.

- Precision, named as Lightning names it: ``32-true`` (the default: float32 throughout, the
  papers' arithmetic) or ``bf16-mixed`` (weights, optimizer state and the loss's reduction in
  float32; matrix products and convolutions autocast to bfloat16). It changes results, so it is
  part of a task's fingerprint (a bf16 run gets its own run directory).
- TF32: off under ``32-true``, on under ``bf16-mixed`` (see :mod:`ticketbench.device`); every
  record and meta.json say which.
- Compilation (``compile``): the forward pass and the loss go through ``torch.compile`` (the
  backward pass with them); the optimizer step and the callback's mask enforcement, which runs as
  an optimizer step hook after every step, stay eager, so masks hold exactly. Compiled and eager
  arithmetic differ in rounding only (fused kernels), so the mode is not part of the fingerprint;
  every level record carries it. ``reduce-overhead`` adds CUDA graphs on a GPU.
- Channels-last: a convolutional network trained alone takes its inputs and 4-d weights in NHWC
  layout, on CUDA (cuDNN's fastest convolutions read it) and on the CPU (oneDNN's: Conv-6 steps
  1.5x faster than NCHW in float32, see benchmarks/README.md); stacked replicas stay NCHW. A
  layout changes the kernels' order of summation only: not fingerprinted; every record says
  whether it was used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ticketbench.device import tf32_policy

LossFunction = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def autocast(precision: str, device_type: str) -> torch.autocast:
    """bfloat16 autocast under ``bf16-mixed``; a disabled one under ``32-true``."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


def wants_channels_last(model: nn.Module) -> bool:
    """Whether ``model`` trains channels-last: every network with 2-d convolutions, on any device."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """Images [..., C, H, W] laid out channels-last (NHWC strides), any number of leading dims."""
    if x.ndim < 4:
        return x
    order = list(range(x.ndim - 3)) + [x.ndim - 2, x.ndim - 1, x.ndim - 3]
    back = list(range(x.ndim - 3)) + [x.ndim - 1, x.ndim - 3, x.ndim - 2]
    return x.permute(order).contiguous().permute(back)


def loss_function(model: nn.Module, precision: str, compile_mode: str, device_type: str) -> LossFunction:
    """``(x [K, B, ...], y [K, B]) -> (per-replica mean losses [K], logits [K, B, C])`` of the
    replicas ``model``, under the precision and, unless ``compile_mode`` is ``off``, compiled."""

    def losses(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(precision, device_type):
            logits = model(x)
        # the loss in float32 whatever the precision; the sum of the replicas' means is what
        # backward differentiates, so each replica's gradient is its own
        per_example = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")
        return per_example.view(y.shape).mean(1), logits

    if compile_mode == "off":
        return losses
    return torch.compile(losses, mode=None if compile_mode == "default" else compile_mode)


def record_fields(precision: str, compile_mode: str, device: torch.device, layout: bool) -> dict[str, Any]:
    """What every level and path record says about the arithmetic that produced it (``layout``:
    whether it trained channels-last)."""
    return {"deterministic": torch.are_deterministic_algorithms_enabled(), "precision": precision,
            "compile": compile_mode, "tf32": tf32_policy(precision, device), "channels_last": layout}
