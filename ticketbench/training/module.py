"""LightningModule for classification on device-resident data.

Each ``training_step`` receives a block of batch indices (one row per optimizer step) and runs
all of those steps, so Lightning's per-batch bookkeeping is paid once per block rather than once
per step. Blocks end where validation is due (every ``eval_every`` steps) and at the rewind
step, so the callback sees every point it must act on.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ticketbench.config import OptimizerConfig
from ticketbench.data.tensors import BatchStream, DeviceSplit


class Chunks:
    """An in-memory 'dataloader': (x, y) in chunks of ``size`` rows, already on the device."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, size: int = 10_000) -> None:
        self.x, self.y, self.size = x, y, size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for lo in range(0, len(self.y), self.size):
            yield self.x[lo : lo + self.size], self.y[lo : lo + self.size]

    def __len__(self) -> int:
        return -(-len(self.y) // self.size)


class Blocks:
    """The training 'dataloader' of one level: index blocks for steps [start, stop)."""

    def __init__(self, stream: BatchStream, start: int, stop: int, boundaries: list[int]) -> None:
        self.stream, self.start, self.stop = stream, start, stop
        self.cuts = sorted({b for b in boundaries if start < b < stop})

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.stream.blocks(self.start, self.stop, self.cuts)

    def __len__(self) -> int:
        return len(self.cuts) + 1


def build_optimizer(params: list[nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class Classifier(L.LightningModule):
    """Trains ``model`` with cross-entropy; logs validation and test loss and accuracy.

    ``blocks.start`` is the absolute step at which this level begins (the rewind step for levels
    after the first); :attr:`step` is the absolute number of optimizer steps taken so far. For a
    logger, ``step`` is logged as ``level * blocks.stop + step`` so that successive levels follow
    each other on one axis (Lightning uses a logged ``step`` as the logger's step).
    """

    def __init__(self, model: nn.Module, split: DeviceSplit, blocks: Blocks, optimizer: OptimizerConfig,
                 level: int = 0, num_classes: int = 10) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model, self.split, self.blocks, self.optimizer_cfg, self.level = model, split, blocks, optimizer, level
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    @property
    def step(self) -> int:
        return self.blocks.start + self.trainer.global_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _log_position(self) -> None:
        self.log("step", float(self.level * self.blocks.stop + self.step))
        self.log("level", float(self.level))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        opt = build_optimizer(list(self.model.parameters()), self.optimizer_cfg)
        for group in opt.param_groups:
            group["lr"] = self.optimizer_cfg.lr_at(self.blocks.start)
        return opt

    def train_dataloader(self) -> Blocks:
        return self.blocks

    def val_dataloader(self) -> Chunks:
        return Chunks(self.split.x_val, self.split.y_val)

    def test_dataloader(self) -> Chunks:
        return Chunks(self.split.x_test, self.split.y_test)

    def training_step(self, block: torch.Tensor) -> None:
        opt = self.optimizers()
        schedule = self.optimizer_cfg.milestones
        total = torch.zeros((), device=self.split.device)
        correct = torch.zeros((), dtype=torch.long, device=self.split.device)
        for rows in block:
            if schedule:  # the learning rate of this absolute step (a host-side value, no sync)
                for group in opt.param_groups:
                    group["lr"] = self.optimizer_cfg.lr_at(self.step)
            x, y = self.split.train_batch(rows)
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt.step()
            total += loss.detach()
            correct += (logits.detach().argmax(1) == y).sum()
        # means over the block, read by the host once per block (when logged), never per step
        self.log("train/loss", total / len(block), prog_bar=True, batch_size=block.shape[1])
        self.log("train/acc", correct / (block.shape[0] * block.shape[1]), batch_size=block.shape[1])
        self._log_position()

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, metric: MulticlassAccuracy) -> None:
        x, y = batch
        logits = self.model(x)
        # test accuracies reach the logger through the level record (at early stop and at the end)
        to_logger = stage == "val"
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), batch_size=len(y), logger=to_logger)
        metric(logits, y)
        self.log(f"{stage}/acc", metric, batch_size=len(y), logger=to_logger)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        self._evaluate(batch, "val", self.val_acc)
        self._log_position()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        self._evaluate(batch, "test", self.test_acc)


@torch.no_grad()
def train_accuracy(model: nn.Module, split: DeviceSplit, chunk: int = 5_000) -> float:
    """Fraction of the training split classified correctly, without augmentation (one host sync)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=split.device)
    for lo in range(0, len(split.y_train), chunk):
        x, y = split.examples(torch.arange(lo, min(lo + chunk, len(split.y_train)), device=split.device))
        correct += (model(x).argmax(1) == y).sum()
    model.train(was_training)
    return float(correct) / len(split.y_train)
