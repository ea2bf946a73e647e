"""Seeded weight initialisers (every draw from an explicit generator)."""

from __future__ import annotations

import math

import torch
from torch import nn


def glorot_normal_(module: nn.Module, gen: torch.Generator) -> None:
    """Gaussian Glorot on every Linear/Conv weight (std = sqrt(2 / (fan_in + fan_out))); zero biases."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            receptive = layer.weight[0, 0].numel()
            fan_in, fan_out = layer.weight.shape[1] * receptive, layer.weight.shape[0] * receptive
            with torch.no_grad():
                layer.weight.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)), generator=gen)
                if layer.bias is not None:
                    layer.bias.zero_()
