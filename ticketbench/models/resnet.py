"""CIFAR ResNet-20 (He et al. 2016, Section 4.2) with BatchNorm and 1x1 projection shortcuts.

A 3x3 convolution to 16 channels, three stages of three basic blocks (16, 32, 64 filters; the
first block of stages 2 and 3 halves the resolution), global average pooling, a linear layer.
Where a block changes shape, its shortcut is a 1x1 convolution with BatchNorm (as in open_lth)
rather than zero-padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class ResNet20(nn.Module):
    """About 272K parameters; prunable: every convolution and the final linear layer."""

    def __init__(self, classes: int = 10, blocks: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        stages, c_in = [], 16
        for i, width in enumerate((16, 32, 64)):
            for j in range(blocks):
                stages.append(BasicBlock(c_in, width, stride=2 if i > 0 and j == 0 else 1))
                c_in = width
        self.blocks = nn.Sequential(*stages)
        self.fc = nn.Linear(64, classes)
        self.roles = {n: ("shortcut" if ".shortcut." in n else "conv") for n, p in self.named_parameters()
                      if p.ndim == 4}
        self.roles["fc.weight"] = "output"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv(x)))
        h = self.blocks(h)
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))
