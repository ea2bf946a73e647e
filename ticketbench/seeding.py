"""Every random draw of a run derives from its seed through a named stream; the switch to
deterministic kernels for GPUs."""

from __future__ import annotations

import os
import zlib

import numpy as np
import torch


def derive_seed(seed: int, *tags: str | int) -> int:
    """A 63-bit seed for the stream ``tags`` of run ``seed`` (stable across processes and versions)."""
    words = [seed] + [zlib.crc32(t.encode()) if isinstance(t, str) else int(t) for t in tags]
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] >> np.uint64(1))


def generator(seed: int, *tags: str | int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator seeded for the stream ``tags`` of run ``seed``."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *tags))


def use_deterministic_kernels() -> None:
    """Make torch choose deterministic kernels only (an op that has none raises): on a GPU,
    cuDNN's deterministic convolution algorithms without autotuning and cuBLAS with a fixed
    workspace, so that a run repeats bit for bit. CPU kernels are deterministic already."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)
