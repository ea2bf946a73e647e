"""Error along the straight line between two trained networks, and the instability it shows
(Frankle, Dziugaite, Roy & Carbin, ICML 2020).

Point α of the path is ``(1 - α) · W_a + α · W_b`` for every parameter; α runs over ``points``
evenly spaced values in [0, 1], endpoints included. Weights pruned in both networks are 0 in
both, so they are exactly 0 at every point. Instability is the largest error on the path minus
the mean of the two endpoints' errors; the paper calls a pair *stable* when it is below 2
percentage points.

BatchNorm running statistics are not parameters, and how they are set along the path changes
what is measured:

- ``recompute`` (what ``ticketbench instability`` uses for networks with BatchNorm): at every point the statistics are
  re-estimated from training batches (without augmentation) in train mode with a cumulative
  average, then the point is evaluated. Interpolated statistics do not describe the interpolated
  network's activations (their variance shrinks towards the middle of the path), so they add a
  barrier that the weights themselves do not have; re-estimating removes that artefact and keeps
  the endpoints' errors those of the trained networks up to the statistics' estimate.
- ``interpolate``: the statistics are interpolated like the weights (what a plain
  ``state_dict`` interpolation does).
- ``none``: the network has no BatchNorm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from ticketbench.config import BN_MODES
from ticketbench.pruning.masks import Masks

State = dict[str, torch.Tensor]
Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]  # a fresh pass over (inputs, labels)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def alphas(points: int) -> list[float]:
    """``points`` evenly spaced values in [0, 1], endpoints included (exactly 0.0 and 1.0)."""
    if points < 2:
        raise ValueError(f"a path needs at least 2 points, got {points}")
    return [i / (points - 1) for i in range(points)]


def interpolate(a: State, b: State, alpha: float, masks: Masks | None = None) -> State:
    """``(1 - α) a + α b`` for floating-point tensors; integer buffers (BatchNorm's batch count)
    are taken from ``a``. ``masks`` are multiplied in, so pruned weights are exactly 0 even if an
    endpoint was edited."""
    out = {}
    for name, x in a.items():
        y = b[name]
        if not x.is_floating_point():
            out[name] = x.clone()
            continue
        value = torch.lerp(x, y, alpha) if 0 < alpha < 1 else (x if alpha == 0 else y).clone()
        if masks is not None and name in masks:
            value = value * masks[name].to(value.dtype)
        out[name] = value
    return out


@dataclass
class PathErrors:
    """Errors (fractions in [0, 1]) at every point α of the path, on each evaluated set."""

    alphas: list[float]
    errors: dict[str, list[float]]  # set name -> one error per α

    def instability(self, name: str) -> float:
        """Max error on the path minus the mean error of its endpoints."""
        curve = self.errors[name]
        return max(curve) - (curve[0] + curve[-1]) / 2


@torch.no_grad()
def error(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Fraction of the examples in ``batches`` misclassified by ``model`` in eval mode."""
    model.eval()
    wrong = total = 0
    for x, y in batches:
        wrong += int((model(x).argmax(-1) != y).sum())
        total += len(y)
    return wrong / total


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Re-estimate every BatchNorm layer's running statistics from ``batches`` (inputs), as the
    cumulative average over them, leaving the parameters untouched."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    for x in batches:
        model(x)
    for m, momentum in zip(layers, momenta, strict=True):
        m.momentum = momentum
    model.eval()


def path_errors(model: nn.Module, a: State, b: State, sets: dict[str, Batches], points: int = 30,
                masks: Masks | None = None, bn: str = "none",
                bn_batches: list[torch.Tensor] | None = None) -> PathErrors:
    """Evaluate ``model`` (any module of the architecture; its weights are overwritten) at every
    point between states ``a`` and ``b`` on each named set. ``bn`` says how BatchNorm statistics
    are set (see the module's docstring): ``none`` for a network without BatchNorm;
    ``recompute`` needs ``bn_batches``."""
    if (bn == "none") == has_batchnorm(model) or bn not in ("none", *BN_MODES):
        raise ValueError(f"bn {bn!r} for a network {'with' if has_batchnorm(model) else 'without'} BatchNorm; "
                         f"valid: {', '.join(BN_MODES)} with BatchNorm, none without")
    recompute = bn == "recompute"
    if recompute and not bn_batches:
        raise ValueError("recomputing BatchNorm statistics needs training batches")
    grid = alphas(points)
    errors: dict[str, list[float]] = {name: [] for name in sets}
    for alpha in grid:
        model.load_state_dict(interpolate(a, b, alpha, masks))
        if recompute:
            recompute_batchnorm(model, bn_batches or [])
        for name, batches in sets.items():
            errors[name].append(error(model, batches()))
    return PathErrors(grid, errors)
