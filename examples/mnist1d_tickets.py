"""Lottery tickets on your own LightningModule, end to end, in about a minute on a laptop CPU.

A plain MLP on MNIST-1D (generated offline: nothing to download), trained the ordinary Lightning
way with standard DataLoaders. ``LotteryExperiment`` finds winning tickets by iterative magnitude
pruning with rewinding, trains the random-pruning control on the same schedule, and writes
ordinary run directories; ``ticketbench check`` then scores them against the claims in
``mnist1d_claims.yaml`` and exits 1 when one fails::

    python examples/mnist1d_tickets.py runs/example
    ticketbench table --mean runs/example/mnist1d-mlp-example/*-seed*
    ticketbench check runs/example/mnist1d-mlp-example --references examples/mnist1d_claims.yaml
"""

from __future__ import annotations

import sys

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ticketbench import LotteryExperiment
from ticketbench.data import load_arrays


class MLP(L.LightningModule):
    """40-200-200-10 with ReLU; Adam. Logs val_loss (the early stop) and test_acc (a fraction)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(40, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 10))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self.log("val_loss", F.cross_entropy(self.net(batch[0]), batch[1]))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self.log("test_acc", (self.net(batch[0]).argmax(1) == batch[1]).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=2e-3)


class MNIST1D(L.LightningDataModule):
    """MNIST-1D's 4,000 training examples (the last 500 held out for validation) and 1,000 test."""

    def __init__(self) -> None:
        super().__init__()
        arrays = load_arrays("mnist1d")
        x, y = torch.from_numpy(arrays["x_train"]), torch.from_numpy(arrays["y_train"]).long()
        self.train, self.val = TensorDataset(x[:3500], y[:3500]), TensorDataset(x[3500:], y[3500:])
        self.test = TensorDataset(torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"]).long())

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=100, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=500)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=1000)


EXPERIMENT = LotteryExperiment(
    "mnist1d-mlp-example", prune=("net.0.weight", "net.2.weight", "net.4.weight"),
    levels=7, max_steps=700, rewind_step=0, rate=0.3, rates={"net.4.weight": 0.15},
    monitor="val_loss", test_metric="test_acc",
    trainer={"accelerator": "cpu", "devices": 1, "val_check_interval": 35, "check_val_every_n_epoch": None,
             "num_sanity_val_steps": 0})


def main(out: str) -> None:
    torch.set_num_threads(1)
    EXPERIMENT.run(MLP, MNIST1D(), seed=0, controls=("none", "random-prune"), out=out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/example")
