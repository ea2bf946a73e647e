"""The same IMP level with the masks enforced by the alternatives: ``torch.nn.utils.prune`` in a
bare loop, and a plain per-batch LightningModule (one optimizer step per ``training_step``) under
either Lightning's ``ModelPruning`` callback (``torch.nn.utils.prune`` underneath) pruning at the
end of the epoch and rewinding the kept weights to θ0 (``use_lottery_ticket_hypothesis``), or
ticketbench's public ``LotteryTicket`` callback. Each prunes 20% of the remaining weights of
every layer at the end (the task prunes 10% of the output layer: the same cost)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelPruning
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader
from workload import adam, bare_level, loss_and_accuracy

from ticketbench import LotteryTicket
from ticketbench.config import TaskConfig
from ticketbench.data import DeviceSplit
from ticketbench.pruning.masks import Masks, apply_masks
from ticketbench.pruning.select import layerwise_counts, prune_layerwise
from ticketbench.training.module import Chunks


class PerBatch(L.LightningModule):
    """One optimizer step per ``training_step`` (automatic optimization), validation on a cadence.
    ``reparametrised``: masks to put into ``torch.nn.utils.prune``'s form when the fit starts."""

    def __init__(self, model: nn.Module, split: DeviceSplit, rows: torch.Tensor, task: TaskConfig,
                 reparametrised: Masks | None = None) -> None:
        super().__init__()
        self.model, self.split, self.rows, self.task = model, split, rows, task
        self.reparametrised = reparametrised

    def on_fit_start(self) -> None:
        # after ModelPruning.setup has copied θ0 (it cannot deep-copy a reparametrised module)
        if self.reparametrised is not None:
            reparametrise(self.model, self.reparametrised)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.rows, batch_size=None)  # the same device-resident batches as the other loops

    def val_dataloader(self) -> Chunks:
        return Chunks(self.split.x_val, self.split.y_val)

    def training_step(self, rows: torch.Tensor) -> torch.Tensor:
        x, y = self.split.train_batch(rows)
        return F.cross_entropy(self.model(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        logits = self.model(x)
        self.log("val/loss", F.cross_entropy(logits, y))
        self.log("val/acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.task.optimizer.lr, fused=True)


def reparametrise(model: nn.Module, masks: Masks) -> list[tuple[nn.Module, str]]:
    """Put the masks into ``torch.nn.utils.prune``'s form (weight = weight_orig * weight_mask)."""
    pairs = []
    for name, mask in masks.items():
        owner, _, leaf = name.rpartition(".")
        module = model.get_submodule(owner)
        prune.custom_from_mask(module, leaf, mask)
        pairs.append((module, leaf))
    return pairs


def torch_prune_level(model: nn.Module, masks: Masks, split: DeviceSplit, rows: torch.Tensor,
                      task: TaskConfig) -> float:
    """The bare level with ``torch.nn.utils.prune`` masking the forward pass; prune, rewind; the final test accuracy."""
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    pairs = reparametrise(model, masks)
    result = bare_level(model, None, split, rows, adam(model, task), task.eval_every)
    with torch.no_grad():
        for module, leaf in pairs:
            prune.l1_unstructured(module, leaf, amount=0.2)
        for name, value in theta0.items():
            owner, _, leaf = name.rpartition(".")
            module = model.get_submodule(owner)
            getattr(module, f"{leaf}_orig" if hasattr(module, f"{leaf}_orig") else leaf).copy_(value)
    return result["test_final"]


def modelpruning_level(model: nn.Module, masks: Masks, split: DeviceSplit, rows: torch.Tensor,
                       task: TaskConfig) -> float:
    """Train the level, test, prune and rewind to θ0; the last validation accuracy before pruning."""
    pairs = [(model.get_submodule(name.rpartition(".")[0]), name.rpartition(".")[2]) for name in masks]
    callback = ModelPruning("l1_unstructured", parameters_to_prune=pairs, amount=0.2, use_global_unstructured=False,
                            use_lottery_ticket_hypothesis=True, make_pruning_permanent=False)
    trainer = _per_batch_trainer(task, callback)
    module = PerBatch(model, split, rows, task, reparametrised=masks)
    trainer.fit(module)
    accuracy = float(trainer.callback_metrics["val/acc"])
    # a level tests its network (here after the epoch-end pruning); by hand, as trainer.test would
    # run ModelPruning.setup again, which cannot deep-copy the re-parametrised modules
    loss_and_accuracy(model, split.x_test, split.y_test)
    return accuracy


def lottery_ticket_level(model: nn.Module, masks: Masks, split: DeviceSplit, rows: torch.Tensor,
                         task: TaskConfig) -> float:
    """The same per-batch module under ``LotteryTicket`` (θ0 captured by the callback, early-stop
    weights kept on ``val/loss``): train, test, prune 20% per layer by magnitude, rewind; the last
    validation accuracy before pruning."""
    module = PerBatch(model, split, rows, task)
    named = {f"model.{n}": m for n, m in masks.items()}
    ticket = LotteryTicket(list(named), masks=named, rewind_step=0, monitor="val/loss")
    trainer = _per_batch_trainer(task, ticket)
    trainer.fit(module)
    accuracy = float(trainer.callback_metrics["val/acc"])
    loss_and_accuracy(model, split.x_test, split.y_test)
    scores = {n: module.get_parameter(n).detach().abs() for n in named}
    pruned = prune_layerwise(scores, ticket.masks, layerwise_counts(ticket.masks, dict.fromkeys(named, 0.2)))
    module.load_state_dict(ticket.rewind_state)
    with torch.no_grad():
        apply_masks(module, pruned)
    return accuracy


def _per_batch_trainer(task: TaskConfig, callback: L.Callback) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, max_epochs=1, val_check_interval=task.eval_every,
                     num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, callbacks=[callback])
