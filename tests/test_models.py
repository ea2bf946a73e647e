"""LeNet-300-100 shape, prunable count and Gaussian Glorot initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from ticketbench.models import build_model


def test_lenet300_layout_and_prunable_count() -> None:
    model = build_model("lenet300", 0)
    shapes = {n: tuple(model.get_parameter(n).shape) for n in dict(model.roles)}
    assert shapes == {"fc1.weight": (300, 784), "fc2.weight": (100, 300), "fc3.weight": (10, 100)}
    assert sum(math.prod(s) for s in shapes.values()) == 266_200
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_glorot_normal_init_and_zero_biases() -> None:
    model = build_model("lenet300", 0)
    for name, (fan_out, fan_in) in {"fc1": (300, 784), "fc2": (100, 300)}.items():
        w = model.get_parameter(f"{name}.weight")
        assert w.std().item() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.02)
        assert abs(w.mean().item()) < 0.01
        assert torch.count_nonzero(model.get_parameter(f"{name}.bias")) == 0


def test_init_is_seeded() -> None:
    a, b, c = build_model("lenet300", 0), build_model("lenet300", 0), build_model("lenet300", 1)
    assert torch.equal(a.fc1.weight, b.fc1.weight) and not torch.equal(a.fc1.weight, c.fc1.weight)
