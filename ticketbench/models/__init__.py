"""Model registry. Each model names its prunable tensors and their roles (hidden, output, conv, fc, ...)
in a ``roles`` dict; the pruning rates of a task are given per role."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ticketbench.models.conv import ConvNet
from ticketbench.models.init import glorot_normal_, kaiming_normal_bn_uniform_, torch_default_uniform_
from ticketbench.models.lenet import LeNet300
from ticketbench.models.mlp1d import ResidualMLP
from ticketbench.models.resnet import ResNet20
from ticketbench.seeding import generator

CONV_WIDTHS = {"conv2": (64,), "conv4": (64, 128), "conv6": (64, 128, 256)}

# name -> (constructor, initialiser)
MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[nn.Module, torch.Generator], None]]] = {
    "lenet300": (LeNet300, glorot_normal_),
    "resnet20": (ResNet20, kaiming_normal_bn_uniform_),
    "mlp1d": (ResidualMLP, torch_default_uniform_),
    **{name: (lambda w=w: ConvNet(w), glorot_normal_) for name, w in CONV_WIDTHS.items()},
    **{f"{name}-dropout": (lambda w=w: ConvNet(w, dropout=0.5), glorot_normal_) for name, w in CONV_WIDTHS.items()},
}


# name -> the dataset whose examples it takes (input shape and 10 classes)
MODEL_DATASETS: dict[str, str] = {"lenet300": "mnist", "resnet20": "cifar10", "mlp1d": "mnist1d",
                                  **{n: "cifar10" for n in MODELS if n.startswith("conv")}}


def build_model(name: str, init_seed: int) -> nn.Module:
    """Construct model ``name`` with weights drawn from the run's ``init`` stream of ``init_seed``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    make, initialise = MODELS[name]
    model = make()
    initialise(model, generator(init_seed, "init"))
    return model
