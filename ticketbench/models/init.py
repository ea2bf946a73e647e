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


def kaiming_normal_bn_uniform_(module: nn.Module, gen: torch.Generator) -> None:
    """open_lth's ResNet init: Kaiming-normal (fan_in, ReLU gain) conv/linear weights, zero biases,
    BatchNorm weight ~ U[0, 1) and bias 0."""
    for layer in module.modules():
        with torch.no_grad():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                fan_in = layer.weight[0].numel()
                layer.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=gen)
                if layer.bias is not None:
                    layer.bias.zero_()
            elif isinstance(layer, nn.BatchNorm2d):
                layer.weight.uniform_(0.0, 1.0, generator=gen)
                layer.bias.zero_()


def torch_default_uniform_(module: nn.Module, gen: torch.Generator) -> None:
    """PyTorch's default Linear init, drawn from ``gen``: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            bound = 1.0 / math.sqrt(layer.weight.shape[1])
            with torch.no_grad():
                layer.weight.uniform_(-bound, bound, generator=gen)
                if layer.bias is not None:
                    layer.bias.uniform_(-bound, bound, generator=gen)
