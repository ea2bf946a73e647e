"""Conv-2 / Conv-4 / Conv-6 of Frankle & Carbin (2019): VGG-style CIFAR-10 networks.

3x3 convolutions (padding 1, ReLU) in pairs, each pair followed by 2x2 max-pooling, then fully
connected 256-256-10. The dropout variant puts dropout (p = 0.5) before each fully connected
layer's input after the first.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvNet(nn.Module):
    """``widths`` gives one conv pair per entry, e.g. (64, 128, 256) for Conv-6."""

    def __init__(self, widths: tuple[int, ...], dropout: float = 0.0, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
                       nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        side = 32 // 2 ** len(widths)
        self.fc1 = nn.Linear(channels * side * side, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, classes)
        self.dropout = nn.Dropout(dropout)
        convs = [f"features.{i}.weight" for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d)]
        self.roles = {**{n: "conv" for n in convs}, "fc1.weight": "fc", "fc2.weight": "fc", "fc3.weight": "output"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).flatten(1)
        h = self.dropout(torch.relu(self.fc1(h)))
        h = self.dropout(torch.relu(self.fc2(h)))
        return self.fc3(h)
