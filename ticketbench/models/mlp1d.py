"""The MNIST-1D lottery-ticket MLP of Greydanus & Kobak (ICML 2024, the authors' notebook):
40 -> 500 -> 500 -> 10 with ReLU, the second layer residual (h + relu(W2 h)); every weight and
bias is prunable."""

from __future__ import annotations

import torch
from torch import nn


class ResidualMLP(nn.Module):
    def __init__(self, in_features: int = 40, hidden: int = 500, classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, classes)
        self.roles = {f"{layer}.{kind}": "all" for layer in ("fc1", "fc2", "fc3") for kind in ("weight", "bias")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x.flatten(1)))
        h = h + torch.relu(self.fc2(h))
        return self.fc3(h)
