"""The benchmark workload: LeNet-300-100 on real MNIST under the task's protocol (Adam 1.2e-3,
batch 60, validation every 100 steps on 5,000 held-out images), at a level-1 mask (20% of the
hidden and 10% of the output weights pruned by magnitude), and the bare PyTorch loops that the
suite's figures are divided by."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ticketbench.config import TaskConfig, load_task
from ticketbench.data import BatchStream, DeviceSplit, load_arrays, make_split
from ticketbench.data.tensors import ReplicaData
from ticketbench.models import build_model
from ticketbench.overrides import override
from ticketbench.pruning.masks import Masks, apply_masks, full_masks
from ticketbench.pruning.schedule import next_masks, pruned_tensors
from ticketbench.training.replicas import Replicas

Rows = torch.Tensor  # [steps, batch] training indices, on the device


@dataclass
class Workload:
    task: TaskConfig
    splits: dict[int, DeviceSplit]  # seed -> its train/validation split
    masks: Masks  # the level-1 mask of seed 0

    @classmethod
    def lenet(cls, data_dir: str, steps: int, seeds: int = 8) -> Workload:
        task = override(load_task("lenet300-mnist"), max_steps=steps)
        arrays = load_arrays("mnist", data_dir)
        splits = {s: make_split(arrays, "mnist", task.normalize, task.val_size, s) for s in range(seeds)}
        model = build_model(task.model, 0)
        roles = pruned_tensors(model, task.pruning)
        return cls(task, splits, next_masks(model, full_masks(model, list(roles)), roles, task.pruning))

    def model(self, seed: int = 0) -> nn.Module:
        """θ0 of ``seed`` under the level-1 mask."""
        model = build_model(self.task.model, seed)
        apply_masks(model, self.masks)
        return model

    def stream(self, seed: int = 0) -> BatchStream:
        return BatchStream(len(self.splits[seed].y_train), self.task.batch_size, seed)

    def rows(self, seed: int = 0) -> Rows:
        return self.stream(seed).steps(0, self.task.max_steps)

    def replicas(self, k: int) -> tuple[Replicas, list[Masks], ReplicaData, list[BatchStream]]:
        """K replicas (seeds 0..K-1) at the level-1 mask, as ``train_level`` takes them."""
        return (Replicas([self.model(s) for s in range(k)]), [self.masks] * k,
                ReplicaData([self.splits[s] for s in range(k)]), [self.stream(s) for s in range(k)])


def adam(model: nn.Module, task: TaskConfig, **kwargs: bool) -> torch.optim.Adam:
    """The task's optimizer, written out (fused, as the suite builds it, unless told otherwise)."""
    return torch.optim.Adam(model.parameters(), lr=task.optimizer.lr, **({"fused": True} | kwargs))


@torch.no_grad()
def loss_and_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 10_000) -> tuple[float, float]:
    total, correct = 0.0, 0
    for lo in range(0, len(y), chunk):
        logits = model(x[lo : lo + chunk])
        total += float(F.cross_entropy(logits, y[lo : lo + chunk], reduction="sum"))
        correct += int((logits.argmax(1) == y[lo : lo + chunk]).sum())
    return total / len(y), correct / len(y)


def masked_steps(model: nn.Module, masks: Masks | None, opt: torch.optim.Optimizer,
                 batches: object, split: DeviceSplit | None = None) -> None:
    """The bare training loop: forward, backward, step, and re-zero the pruned weights.
    ``batches`` yields index rows into ``split`` or (x, y) pairs (a DataLoader)."""
    params = [model.get_parameter(n) for n in masks] if masks else []
    factors = [m.to(p.dtype) for m, p in zip(masks.values(), params, strict=True)] if masks else []
    for batch in batches:
        x, y = split.train_batch(batch) if split is not None else batch
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if params:
            with torch.no_grad():
                torch._foreach_mul_(params, factors)


def bare_level(model: nn.Module, masks: Masks | None, split: DeviceSplit, rows: Rows, opt: torch.optim.Optimizer,
               eval_every: int) -> dict[str, float]:
    """A whole level by hand, the same work as the suite's: the masked steps, validation every
    ``eval_every`` steps keeping the weights of the lowest loss, the test set at the final and at
    those weights, and the training accuracy (``masks`` None: the caller enforces the masks)."""
    best, best_state = math.inf, None
    for lo in range(0, len(rows), eval_every):
        model.train()
        masked_steps(model, masks, opt, rows[lo : lo + eval_every], split)
        model.eval()
        val_loss, _ = loss_and_accuracy(model, split.x_val, split.y_val)
        if val_loss < best:
            best, best_state = val_loss, copy.deepcopy(model.state_dict())
    _, final = loss_and_accuracy(model, split.x_test, split.y_test)
    _, train = loss_and_accuracy(model, split.x_train, split.y_train)  # MNIST: no augmentation
    model.load_state_dict(best_state)
    _, early = loss_and_accuracy(model, split.x_test, split.y_test)
    return {"test_final": final, "test_early": early, "train": train}
