"""One IMP round: score the trained weights by magnitude and select the next mask."""

from __future__ import annotations

from fnmatch import fnmatch

import torch
from torch import nn

from ticketbench.config import PruningConfig
from ticketbench.pruning.masks import Masks
from ticketbench.pruning.select import global_count, layerwise_counts, prune_global, prune_layerwise


def pruned_tensors(model: nn.Module, pruning: PruningConfig) -> dict[str, str]:
    """The tensors this task prunes, with their roles: the model's prunable ones minus ``exclude``."""
    return {n: r for n, r in model.roles.items() if not any(fnmatch(n, pat) for pat in pruning.exclude)}


def magnitude_scores(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """|w| of each named parameter."""
    return {n: model.get_parameter(n).detach().abs() for n in names}


def next_masks(model: nn.Module, masks: Masks, roles: dict[str, str], pruning: PruningConfig) -> Masks:
    """Masks after one round of magnitude pruning of ``model``'s current weights."""
    scores = magnitude_scores(model, list(masks))
    if pruning.scope == "global":
        return prune_global(scores, masks, global_count(masks, pruning.rates["all"]))
    missing = sorted({roles[n] for n in masks} - set(pruning.rates))
    if missing:
        raise ValueError(f"pruning.rates has no rate for role(s) {missing}; roles: {sorted(set(roles.values()))}")
    return prune_layerwise(scores, masks, layerwise_counts(masks, {n: pruning.rates[roles[n]] for n in masks}))
