"""Model registry: each model names its prunable weights and their roles in ``roles``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ticketbench.models.init import glorot_normal_
from ticketbench.models.lenet import LeNet300
from ticketbench.seeding import generator

# name -> (constructor, initialiser)
MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[nn.Module, torch.Generator], None]]] = {
    "lenet300": (LeNet300, glorot_normal_),
}


def build_model(name: str, init_seed: int) -> nn.Module:
    """Construct model ``name`` with weights drawn from the run's ``init`` stream of ``init_seed``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    make, initialise = MODELS[name]
    model = make()
    initialise(model, generator(init_seed, "init"))
    return model


def prunable(model: nn.Module) -> dict[str, str]:
    """Prunable parameter names of ``model`` mapped to their roles (e.g. hidden / output)."""
    return dict(model.roles)
