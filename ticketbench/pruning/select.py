"""Turn scores into smaller masks: exact counts, deterministic tie-breaking.

Among kept weights, the lowest scores are removed first; equal scores are removed in order of
position (layer order, then flat index), so the same scores always give the same mask.
"""

from __future__ import annotations

import torch

from ticketbench.pruning.masks import Masks


def layerwise_counts(masks: Masks, rates: dict[str, float]) -> dict[str, int]:
    """Weights to remove per layer: ``round(rate * kept)`` with the layer's own rate."""
    return {n: round(rates[n] * int(m.sum())) for n, m in masks.items()}


def global_count(masks: Masks, rate: float) -> int:
    return round(rate * sum(int(m.sum()) for m in masks.values()))


def _lowest_kept(scores: torch.Tensor, kept_idx: torch.Tensor, count: int) -> torch.Tensor:
    """Positions (from ``kept_idx``) of the ``count`` lowest scores, ties to the lower position."""
    order = torch.argsort(scores[kept_idx], stable=True)
    return kept_idx[order[:count]]


def prune_layerwise(scores: dict[str, torch.Tensor], masks: Masks, counts: dict[str, int]) -> Masks:
    """Remove exactly ``counts[name]`` kept weights from each layer, lowest score first."""
    new = {}
    for name, mask in masks.items():
        flat = mask.flatten().clone()
        kept_idx = flat.nonzero().squeeze(1)
        if counts[name] > len(kept_idx):
            raise ValueError(f"{name}: cannot remove {counts[name]} of {len(kept_idx)} kept weights")
        flat[_lowest_kept(scores[name].flatten().float(), kept_idx, counts[name])] = False
        new[name] = flat.view_as(mask)
    return new


def prune_global(scores: dict[str, torch.Tensor], masks: Masks, count: int) -> Masks:
    """Remove exactly ``count`` kept weights ranked together across all layers."""
    names = list(masks)
    flat_masks = torch.cat([masks[n].flatten() for n in names])
    flat_scores = torch.cat([scores[n].flatten().float() for n in names])
    kept_idx = flat_masks.nonzero().squeeze(1)
    if count > len(kept_idx):
        raise ValueError(f"cannot remove {count} of {len(kept_idx)} kept weights")
    flat_masks = flat_masks.clone()
    flat_masks[_lowest_kept(flat_scores, kept_idx, count)] = False
    pieces = torch.split(flat_masks, [masks[n].numel() for n in names])
    return {n: p.view_as(masks[n]) for n, p in zip(names, pieces, strict=True)}


def random_masks(like: Masks, counts: dict[str, int], gen: torch.Generator) -> Masks:
    """Uniformly random masks keeping exactly ``counts[name]`` weights in each layer."""
    new = {}
    for name, mask in like.items():
        flat = torch.zeros(mask.numel(), dtype=torch.bool)
        flat[torch.randperm(mask.numel(), generator=gen)[: counts[name]]] = True
        new[name] = flat.view(mask.shape).to(mask.device)
    return new
