"""Where runs execute and the TF32 policy of their precision: facts that meta.json and every
record carry, so they sit below the run directories and the training code alike.

TF32: under ``32-true`` it is switched off on CUDA (Ampere and later GPUs would otherwise round
the inputs of float32 matrix products and convolutions to 10 mantissa bits); under
``bf16-mixed`` it is on for what stays in float32. Set before training or evaluating anything.
"""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """Where runs train: the GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def use_tf32(precision: str) -> None:
    """The TF32 policy of ``precision`` (see the module's docstring); a no-op without CUDA."""
    allowed = precision != "32-true"
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed


def tf32_policy(precision: str, device: torch.device) -> bool:
    """Whether runs of ``precision`` on ``device`` use TF32 (see :func:`use_tf32`)."""
    return device.type == "cuda" and precision != "32-true"
