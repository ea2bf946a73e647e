"""K independent copies of one network trained as one: ``--replicas``.

Every parameter and buffer of the K models is stacked along a new leading dimension, and the
forward pass maps [K, B, ...] inputs to [K, B, C] logits with ``torch.func.vmap`` over a
functional call of the architecture. The replicas share no arithmetic: the loss is the sum of
the per-replica losses, so each replica's gradient is the one it would get alone, and an
elementwise optimizer (SGD, Adam) over the stacked tensors updates each slice as its own
optimizer would. With K = 1 the model runs as itself (no vmap, no copy).

BatchNorm works per replica: its running statistics are stacked buffers like any other, passed
to the vmapped call batched, so each replica normalises with its own batch statistics in training
mode, updates only its own slice of the running statistics, and uses them in evaluation mode.
Refused for K > 1: active dropout (its draws would come from one generator shared by the
replicas, so a replica would not equal the run it stands for).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, vmap

from ticketbench.errors import ConfigError

State = dict[str, torch.Tensor]


def check_batchable(model: nn.Module, name: str) -> None:
    """Raise a one-line ConfigError when ``model`` cannot be trained as stacked replicas."""
    for layer in model.modules():
        if isinstance(layer, nn.Dropout) and layer.p > 0:
            raise ConfigError(f"--replicas needs a model without dropout; {name} draws dropout masks that the "
                              f"replicas would share: run its seeds as separate processes")


class Replicas(nn.Module):
    """K models of one architecture as one module; ``net`` holds the (stacked) tensors under the
    architecture's own names, so ``net.get_parameter("fc1.weight")`` is [K, 300, 784] (K > 1)."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        self.size = len(models)
        self.net = models[0] if self.size == 1 else _stacked(models)
        self._template = [copy.deepcopy(models[0]).to("meta")]  # a list: not registered as a submodule

    def _functional(self, params: State, buffers: State, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._template[0], (params, buffers), (x,))

    def _vmapped(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        template = self._template[0]
        if template.training != self.training:  # follow the mode (Lightning sets ``training`` flags directly)
            template.train(self.training)
        batched = vmap(self._functional, in_dims=(0, 0, None if shared else 0), randomness="different")
        return batched(dict(self.net.named_parameters()), dict(self.net.named_buffers()), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[K, B, ...] inputs, one batch per replica -> [K, B, classes]."""
        return self.net(x[0]).unsqueeze(0) if self.size == 1 else self._vmapped(x, shared=False)

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        """[B, ...] inputs seen by every replica -> [K, B, classes]."""
        return self.net(x).unsqueeze(0) if self.size == 1 else self._vmapped(x, shared=True)

    def tensor(self, name: str) -> torch.Tensor:
        return self.net.get_parameter(name)

    def stack(self, items: list[State]) -> State:
        """Per-replica tensors (masks, states) -> the layout of ``net``."""
        if len(items) != self.size:
            raise ValueError(f"{len(items)} items for {self.size} replicas")
        return items[0] if self.size == 1 else {k: torch.stack([item[k] for item in items]) for k in items[0]}

    def state(self, k: int) -> State:
        """A detached copy of replica ``k``'s parameters and buffers."""
        return {n: (v if self.size == 1 else v[k]).detach().clone() for n, v in self.net.state_dict().items()}

    def load_states(self, states: list[State]) -> None:
        self.net.load_state_dict(self.stack(states))

    def split_optimizer_state(self, state: dict) -> list[dict]:
        """A stacked optimizer ``state_dict`` -> one per replica (per-element tensors sliced, step counts shared)."""
        if self.size == 1:
            return [copy.deepcopy(state)]
        return [{"state": {i: {key: v[k].clone() if v.ndim else v.clone() for key, v in s.items()}
                           for i, s in state["state"].items()},
                 "param_groups": copy.deepcopy(state["param_groups"])} for k in range(self.size)]

    def stack_optimizer_state(self, states: list[dict]) -> dict:
        """Inverse of :meth:`split_optimizer_state`."""
        if self.size == 1:
            return states[0]
        first = states[0]
        return {"state": {i: {key: torch.stack([st["state"][i][key] for st in states]) if v.ndim else v
                              for key, v in s.items()} for i, s in first["state"].items()},
                "param_groups": first["param_groups"]}


def _stacked(models: list[nn.Module]) -> nn.Module:
    """A copy of ``models[0]`` whose every parameter and buffer is the stack of the models' tensors."""
    net = copy.deepcopy(models[0])
    for name, _ in list(net.named_parameters()):
        owner, leaf = _owner(net, name)
        setattr(owner, leaf, nn.Parameter(torch.stack([m.get_parameter(name).detach() for m in models])))
    for name, _ in list(net.named_buffers()):
        owner, leaf = _owner(net, name)
        owner.register_buffer(leaf, torch.stack([m.get_buffer(name) for m in models]))
    return net


def _owner(net: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, leaf = name.rpartition(".")
    return net.get_submodule(path), leaf
