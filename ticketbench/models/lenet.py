"""LeNet-300-100: the fully connected 784-300-100-10 ReLU network of Frankle & Carbin (2019)."""

from __future__ import annotations

import torch
from torch import nn


class LeNet300(nn.Module):
    """784-300-100-10 with ReLU; 266,200 prunable weights (biases are not pruned).

    >>> net = LeNet300()
    >>> sum(net.get_parameter(n).numel() for n in net.roles)
    266200
    """

    roles = {"fc1.weight": "hidden", "fc2.weight": "hidden", "fc3.weight": "output"}

    def __init__(self, in_features: int = 784, classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(h)))
