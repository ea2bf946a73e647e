"""Masks: a dict of boolean tensors keyed by parameter name (True = weight kept)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ticketbench.atomic import atomic_write

Masks = dict[str, torch.Tensor]


def full_masks(model: nn.Module, names: list[str]) -> Masks:
    """All-True masks for the named parameters."""
    return {n: torch.ones_like(model.get_parameter(n), dtype=torch.bool) for n in names}


def kept(masks: Masks) -> int:
    return sum(int(m.sum()) for m in masks.values())


def total(masks: Masks) -> int:
    return sum(m.numel() for m in masks.values())


def remaining_percent(masks: Masks) -> float:
    """P_m: percentage of the prunable weights still kept."""
    return 100.0 * kept(masks) / total(masks)


def layer_remaining_percent(masks: Masks) -> dict[str, float]:
    return {n: 100.0 * int(m.sum()) / m.numel() for n, m in masks.items()}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero every pruned weight of ``model`` in place."""
    for name, mask in masks.items():
        model.get_parameter(name).mul_(mask)


def save_masks(path: Path, masks: Masks) -> None:
    """Write masks bit-packed (one bit per weight) into an .npz, atomically."""
    arrays = {}
    for name, mask in masks.items():
        arrays[f"{name}::bits"] = np.packbits(mask.cpu().numpy().ravel())
        arrays[f"{name}::shape"] = np.asarray(mask.shape, dtype=np.int64)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def mask_problem(masks: Masks, model: nn.Module, names: list[str]) -> str | None:
    """What is wrong with ``masks`` for the tensors ``names`` of ``model`` (None: nothing)."""
    if set(masks) != set(names):
        missing, extra = sorted(set(names) - set(masks)), sorted(set(masks) - set(names))
        return f"masks for {sorted(masks)}, expected {names} (missing {missing}, unexpected {extra})"
    for name in names:
        shape = tuple(model.get_parameter(name).shape)
        if tuple(masks[name].shape) != shape:
            return f"the mask of {name} has shape {tuple(masks[name].shape)}, the model's tensor {shape}"
    return None


def load_masks(path: Path) -> Masks:
    """Read masks written by :func:`save_masks`."""
    masks = {}
    with np.load(path) as archive:
        for key in archive.files:
            name, kind = key.rsplit("::", 1)
            if kind == "shape":
                shape = tuple(archive[key])
                bits = np.unpackbits(archive[f"{name}::bits"], count=int(np.prod(shape)))
                masks[name] = torch.from_numpy(bits.astype(bool)).view(shape)
    return masks
