"""The public pruning step of IMP: the next masks from trained weights by magnitude."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ticketbench.errors import ConfigError
from ticketbench.pruning.masks import Masks
from ticketbench.pruning.select import global_count, layerwise_counts, prune_global, prune_layerwise

SCOPES = ("layerwise", "global")


def magnitude_masks(weights: nn.Module | Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | Sequence[str],
                    *, rate: float | None = None, rates: Mapping[str, float] | None = None,
                    scope: str = "layerwise") -> Masks:
    """The masks of the next round of iterative magnitude pruning.

    Of each pruned tensor (``scope="layerwise"``), or of all of them ranked together
    (``"global"``), exactly ``round(rate × kept)`` kept weights are removed, those of smallest
    ``|w|`` first; equal magnitudes go in order of position (tensor order, then flat index), so the
    same weights always give the same masks. A pruned weight stays pruned. This is the round the
    suite's own tasks prune with.

    Args:
        weights: the trained module, or its tensors by name.
        masks: the current masks by name (bool tensors, True = kept), or the names of the tensors to
            prune, all of them kept so far.
        rate: the fraction of the kept weights to remove, in [0, 1).
        rates: one rate per pruned tensor instead of ``rate`` (layer-wise only).
        scope: ``"layerwise"`` or ``"global"``.

    Returns:
        The new masks by name, bool tensors on the devices of the current ones.

    Example::

        masks = magnitude_masks(module, ["fc1.weight", "fc2.weight"], rate=0.2)
        masks = magnitude_masks(module, masks, rates={"fc1.weight": 0.2, "fc2.weight": 0.1})
    """
    if scope not in SCOPES:
        raise ConfigError(f"magnitude_masks: scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    current = _current_masks(weights, masks)
    if (rate is None) == (rates is None):
        raise ConfigError("magnitude_masks: give exactly one of rate and rates")
    if rates is not None and scope == "global":
        raise ConfigError("magnitude_masks: global pruning takes one rate, not rates")
    chosen = {name: rate for name in current} if rates is None else dict(rates)
    unknown, missing = sorted(set(chosen) - set(current)), sorted(set(current) - set(chosen))
    if unknown or missing:
        raise ConfigError(f"magnitude_masks: rates names {unknown} but the masks are of {sorted(current)}" if unknown
                          else f"magnitude_masks: rates has no rate for {missing}")
    for name, value in chosen.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"magnitude_masks: the rate of {name} must be a number in [0, 1), got {value!r}")
        if not 0 <= value < 1:
            raise ConfigError(f"magnitude_masks: the rate of {name} must be in [0, 1), got {value}")
    scores = {name: _tensor(weights, name).detach().abs() for name in current}
    if scope == "global":
        return prune_global(scores, current, global_count(current, float(chosen[next(iter(current))])))
    return prune_layerwise(scores, current, layerwise_counts(current, chosen))


def _tensor(weights: nn.Module | Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    if isinstance(weights, nn.Module):
        try:
            return weights.get_parameter(name)
        except AttributeError:
            raise ConfigError(f"magnitude_masks: {name!r} is not a parameter of the module") from None
    if name not in weights:
        raise ConfigError(f"magnitude_masks: weights has no tensor {name!r}")
    return weights[name]


def _current_masks(weights: nn.Module | Mapping[str, torch.Tensor],
                   masks: Mapping[str, torch.Tensor] | Sequence[str]) -> Masks:
    """The current masks, checked against the weights (names given: every weight kept)."""
    if not isinstance(weights, (nn.Module, Mapping)):
        raise TypeError(f"magnitude_masks: weights must be a module or tensors by name, got {type(weights).__name__}")
    if isinstance(masks, str) or not isinstance(masks, (Mapping, Sequence)):
        raise TypeError(f"magnitude_masks: masks must be masks by name or a list of names, got {masks!r}")
    if not masks:
        raise ConfigError("magnitude_masks: masks names no tensor")
    if not isinstance(masks, Mapping):
        return {name: torch.ones_like(_tensor(weights, name), dtype=torch.bool) for name in masks}
    for name, mask in masks.items():
        tensor = _tensor(weights, name)
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != tensor.shape:
            raise ConfigError(f"magnitude_masks: the mask of {name} must be a bool tensor of shape "
                              f"{tuple(tensor.shape)}, got {getattr(mask, 'dtype', type(mask).__name__)} "
                              f"{tuple(getattr(mask, 'shape', ()))}")
    return dict(masks)
