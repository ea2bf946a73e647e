"""Every random draw of a run derives from its seed through a named stream."""

from __future__ import annotations

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
