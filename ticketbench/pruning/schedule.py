"""One IMP round: score the trained weights by magnitude and select the next mask."""

from __future__ import annotations

from fnmatch import fnmatch

from torch import nn

from ticketbench.config import PruningConfig
from ticketbench.pruning.magnitude import magnitude_masks
from ticketbench.pruning.masks import Masks


def pruned_tensors(model: nn.Module, pruning: PruningConfig) -> dict[str, str]:
    """The tensors this task prunes, with their roles: the model's prunable ones minus ``exclude``."""
    return {n: r for n, r in model.roles.items() if not any(fnmatch(n, pat) for pat in pruning.exclude)}


def next_masks(model: nn.Module, masks: Masks, roles: dict[str, str], pruning: PruningConfig) -> Masks:
    """Masks after one round of magnitude pruning of ``model``'s current weights, at the rate of
    each tensor's role (layer-wise) or one rate for all (global)."""
    if pruning.scope == "global":
        return magnitude_masks(model, masks, rate=pruning.rates["all"], scope="global")
    missing = sorted({roles[n] for n in masks} - set(pruning.rates))
    if missing:
        raise ValueError(f"pruning.rates has no rate for role(s) {missing}; roles: {sorted(set(roles.values()))}")
    return magnitude_masks(model, masks, rates={n: pruning.rates[roles[n]] for n in masks})
