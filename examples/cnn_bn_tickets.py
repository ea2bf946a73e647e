"""Late rewinding on your own CNN with BatchNorm, the optimizer and its schedule rewound too.

A 1-D convolutional network with BatchNorm on MNIST-1D (generated offline), trained with SGD,
momentum and weight decay under a step schedule. ``LotteryExperiment`` finds winning tickets by
iterative magnitude pruning with late rewinding to step k = 30 of 300: every level restarts from
θ_30 (BatchNorm statistics included) with the momentum buffers and the learning-rate schedule as
they were at step 40 (``optimizer_at_rewind="rewind"``), and the random-reinitialisation control
trains the same masks from a fresh initialisation. About 40 s on one CPU thread::

    python examples/cnn_bn_tickets.py runs/cnn-example
    ticketbench table --mean runs/cnn-example/mnist1d-cnn-bn/*-seed*
"""

from __future__ import annotations

import sys

import lightning as L
import torch
import torch.nn.functional as F
from mnist1d_tickets import MNIST1D  # the data of the first example, beside this file
from torch import nn

from ticketbench import LotteryExperiment


class CNN(L.LightningModule):
    """Conv1d(1→16) + BatchNorm, Conv1d(16→32) + BatchNorm, each pooled, then FC 320→64→10."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(16, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(320, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.unsqueeze(1)))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self.log("val_loss", F.cross_entropy(self(batch[0]), batch[1]))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self.log("test_acc", (self(batch[0]).argmax(1) == batch[1]).float().mean())

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=100, gamma=0.3)  # per step
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


EXPERIMENT = LotteryExperiment(
    "mnist1d-cnn-bn", prune=("features.0.weight", "features.4.weight", "head.1.weight", "head.3.weight"),
    levels=5, max_steps=300, rewind_step=30, rate=0.3, rates={"head.3.weight": 0.15},
    optimizer_at_rewind="rewind", monitor="val_loss", test_metric="test_acc",
    trainer={"accelerator": "cpu", "devices": 1, "val_check_interval": 30, "check_val_every_n_epoch": None,
             "num_sanity_val_steps": 0})


def main(out: str) -> None:
    torch.set_num_threads(1)
    EXPERIMENT.run(CNN, MNIST1D(), seed=0, controls=("none", "reinit"), out=out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/cnn-example")
