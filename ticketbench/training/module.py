"""LightningModule for classification on device-resident data, for K replicas at once.

Each ``training_step`` receives a block of batch indices (one row per optimizer step, one batch
per replica) and runs all of those steps, so Lightning's per-batch bookkeeping is paid once per
block rather than once per step. Blocks end where validation is due (every ``eval_every`` steps);
the callback acts between steps through the optimizer's step hooks (masks, the rewind point).
Losses and accuracies are kept per replica ([K] tensors) and read by the host only when
validation or logging needs them.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ticketbench.config import OptimizerConfig
from ticketbench.data.tensors import BatchStream, ReplicaData
from ticketbench.training.arithmetic import autocast, channels_last, loss_function, wants_channels_last
from ticketbench.training.replicas import Replicas


class Chunks:
    """An in-memory 'dataloader': (x, y) in chunks of ``size`` examples along dimension ``dim``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, dim: int = 0, size: int = 10_000) -> None:
        self.x, self.y, self.dim, self.size = x, y, dim, size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.y.shape[self.dim]
        for lo in range(0, n, self.size):
            width = min(self.size, n - lo)
            yield self.x.narrow(self.dim, lo, width), self.y.narrow(self.dim, lo, width)

    def __len__(self) -> int:
        return -(-self.y.shape[self.dim] // self.size)


class Blocks:
    """The training 'dataloader' of one level: index blocks [steps, K, B(, 4)] for steps [start, stop)."""

    def __init__(self, streams: list[BatchStream], start: int, stop: int, boundaries: list[int]) -> None:
        self.streams, self.start, self.stop = streams, start, stop
        self.cuts = sorted({b for b in boundaries if start < b < stop} | {stop})

    def __iter__(self) -> Iterator[torch.Tensor]:
        lo = self.start
        for hi in self.cuts:
            yield torch.stack([s.steps(lo, hi) for s in self.streams], dim=1)
            lo = hi

    def __len__(self) -> int:
        return len(self.cuts)


def build_optimizer(params: list[nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The task's optimizer, as one fused kernel per step where this torch build has one."""
    make = (lambda **kw: torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)) \
        if cfg.name == "adam" else \
        (lambda **kw: torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **kw))
    try:
        return make(fused=True)
    except RuntimeError:  # no fused kernel for this device in this torch version
        return make()


class Classifier(L.LightningModule):
    """Trains K replicas with cross-entropy; logs validation and test loss and accuracy.

    ``blocks.start`` is the absolute step at which this level begins (the rewind step for levels
    after the first); :attr:`step` is the absolute number of optimizer steps taken so far. For a
    logger, ``step`` is logged as ``level * blocks.stop + step`` so that successive levels follow
    each other on one axis (Lightning uses a logged ``step`` as the logger's step). Metrics of
    replica k are logged with the suffix ``@k`` when K > 1 (see ticketbench.tracking.ReplicaLogger).
    After each block, :attr:`train_loss` holds the per-replica mean training loss of the block; after
    validation, :attr:`val_loss` and :attr:`val_acc`.
    ``precision`` and ``compile_mode``: see :mod:`ticketbench.training.arithmetic`.
    """

    def __init__(self, model: Replicas, data: ReplicaData, blocks: Blocks, optimizer: OptimizerConfig,
                 level: int = 0, num_classes: int = 10, precision: str = "32-true", compile_mode: str = "off") -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model, self.data, self.blocks, self.optimizer_cfg, self.level = model, data, blocks, optimizer, level
        # stacked replicas convolve through vmap's grouped convolution over NCHW tensors (their 5-d
        # weights have no channels-last layout): a single run alone trains channels-last
        self.precision, self.channels_last = precision, wants_channels_last(model) and model.size == 1
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.losses = loss_function(model, precision, compile_mode, data.device.type)
        accuracy = {"num_classes": num_classes, "average": "micro", "multidim_average": "samplewise"}
        self.val_metric, self.test_metric = MulticlassAccuracy(**accuracy), MulticlassAccuracy(**accuracy)
        self._val_loss_sum = torch.zeros(model.size)
        self.steps_taken = 0  # optimizer steps of this level
        self.val_loss = self.val_acc = torch.full((model.size,), float("nan"))
        self.train_loss = torch.zeros(model.size)  # per replica, the mean loss of the last block

    @property
    def step(self) -> int:
        return self.blocks.start + self.steps_taken

    def _log_replicas(self, name: str, values: torch.Tensor, prog_bar: bool = False, **kwargs: object) -> None:
        """One value per replica: ``name`` for a single run, ``name@k`` for replica k of several
        (their mean goes to the progress bar)."""
        if len(values) == 1:
            self.log(name, values[0], prog_bar=prog_bar, **kwargs)
            return
        for k, value in enumerate(values):
            self.log(f"{name}@{k}", value, **kwargs)
        if prog_bar:
            self.log(name, values.mean(), prog_bar=True, logger=False, **kwargs)

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
        return Chunks(self.data.x_val, self.data.y_val, dim=1)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        return channels_last(x) if self.channels_last else x

    def run_steps(self, block: torch.Tensor, opt: torch.optim.Optimizer) -> tuple[torch.Tensor, torch.Tensor]:
        """The optimizer steps of one block, without a host synchronisation: per replica, the
        summed training loss and the count of correct predictions (device tensors)."""
        schedule = self.optimizer_cfg.milestones
        device = self.data.device
        total = torch.zeros(self.model.size, device=device)
        correct = torch.zeros(self.model.size, dtype=torch.long, device=device)
        for rows in block:
            if schedule:  # the learning rate of this absolute step (a host-side value, no sync)
                for group in opt.param_groups:
                    group["lr"] = self.optimizer_cfg.lr_at(self.step)
            x, y = self.data.train_batch(rows)
            losses, logits = self.losses(self._inputs(x), y)
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            self.steps_taken += 1
            total += losses.detach()
            correct += (logits.detach().argmax(-1) == y).sum(1)
        return total, correct

    def training_step(self, block: torch.Tensor) -> None:
        # The plain optimizer and backward on one device (precision by autocast in self.losses), so
        # Lightning's per-step wrappers (precision and strategy hooks, profiler scopes, callback
        # dispatch) would only add time.
        total, correct = self.run_steps(block, self.optimizers(use_pl_optimizer=False))
        # means over the block, read by the host once per block (when logged), never per step
        batch = block.shape[2]
        self.train_loss = total / len(block)
        self._log_replicas("train/loss", self.train_loss, prog_bar=True, batch_size=batch)
        self._log_replicas("train/acc", correct / (len(block) * batch), batch_size=batch)
        self._log_position()

    def on_validation_epoch_start(self) -> None:
        self._val_loss_sum = torch.zeros(self.model.size, device=self.data.device)
        self.val_metric.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        with autocast(self.precision, self.data.device.type):
            logits = self.model(self._inputs(x)).float()
        self._val_loss_sum += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).sum(1)
        self.val_metric.update(logits.argmax(-1), y)

    def on_validation_epoch_end(self) -> None:
        self.val_loss = self._val_loss_sum / self.data.y_val.shape[1]
        self.val_acc = self.val_metric.compute().reshape(self.model.size)
        self._log_replicas("val/loss", self.val_loss, batch_size=self.data.y_val.shape[1])
        self._log_replicas("val/acc", self.val_acc, batch_size=self.data.y_val.shape[1])
        self._log_position()

    @torch.no_grad()
    def test_accuracy(self) -> list[float]:
        """Per replica, the fraction of the test set classified correctly by its current weights."""
        model, data = self.to(self.data.device).model, self.data  # Lightning leaves a fitted module on the CPU
        was_training = model.training
        model.eval()
        self.test_metric.reset()
        for x, y in Chunks(data.x_test, data.y_test):
            with autocast(self.precision, data.device.type):
                logits = model.forward_shared(self._inputs(x))
            self.test_metric.update(logits.argmax(-1), y.expand(model.size, -1))
        model.train(was_training)
        return self.test_metric.compute().reshape(model.size).tolist()

    @torch.no_grad()
    def train_accuracy(self, chunk: int = 5_000) -> list[float]:
        """Per replica, the fraction of its training split classified correctly, without augmentation."""
        model, data = self.to(self.data.device).model, self.data
        was_training = model.training
        model.eval()
        n = data.splits[0].y_train.shape[0]
        correct = torch.zeros(model.size, dtype=torch.long, device=data.device)
        for lo in range(0, n, chunk):
            x, y = data.examples(torch.arange(lo, min(lo + chunk, n), device=data.device))
            with autocast(self.precision, data.device.type):
                correct += (model(self._inputs(x)).argmax(-1) == y).sum(1)
        model.train(was_training)
        return (correct.double() / n).tolist()
