"""One fit of a plain module with the LotteryTicket callback, on one CPU process or under DDP with
two (gloo), saving what the callback holds on each rank; run by tests/test_callback.py as
``python tests/ddp_fit.py OUT {ddp|single} {bn|plain}`` (Lightning starts the second rank by
running the same command)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from ticketbench import LotteryTicket
from ticketbench.config import PruningConfig
from ticketbench.pruning.schedule import next_masks


class Net(L.LightningModule):
    def __init__(self, batchnorm: bool) -> None:
        super().__init__()
        middle = [nn.BatchNorm1d(32)] if batchnorm else []
        self.net = nn.Sequential(nn.Linear(20, 32), *middle, nn.ReLU(), nn.Linear(32, 4))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self.log("val_loss", F.cross_entropy(self.net(batch[0]), batch[1]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def loader(n: int, seed: int, batch: int, ranks: int = 1, rank: int = 0) -> DataLoader:
    """Fixed data; split between ranks as rank r taking examples r, r + ranks, ... (no shuffling), so
    that one step of two ranks of ``batch`` sees the batch of ``2 * batch`` a single process sees."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=gen)
    y = (x[:, :4].argmax(1) + (x[:, 4] > 1).long()) % 4
    data = TensorDataset(x, y)
    return DataLoader(data, batch_size=batch, sampler=DistributedSampler(data, ranks, rank, shuffle=False))


def main(out: Path, mode: str, kind: str) -> None:
    torch.manual_seed(0)
    module = Net(kind == "bn")
    pruned = ["net.0.weight", f"net.{len(module.net) - 1}.weight"]
    ranks = 2 if mode == "ddp" else 1
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    rank_seed = torch.Generator().manual_seed(rank)
    masks = {n: torch.rand(module.get_parameter(n).shape, generator=rank_seed) < 0.7 for n in pruned}  # per rank
    ticket = LotteryTicket(pruned, masks=masks, rewind_step=8, monitor="val_loss")
    trainer = L.Trainer(callbacks=[ticket], max_steps=40, accelerator="cpu", devices=ranks,
                        strategy="ddp" if mode == "ddp" else "auto", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, val_check_interval=8,
                        check_val_every_n_epoch=None, num_sanity_val_steps=0, use_distributed_sampler=False)
    trainer.fit(module, loader(256, 0, 64 // ranks, ranks, rank), loader(64, 1, 32))
    roles = {n: "all" for n in pruned}
    following = next_masks(module, ticket.masks, roles, PruningConfig("layerwise", {"all": 0.2}))
    torch.save({"rewind": ticket.rewind_state, "best": ticket.best_state, "best_step": ticket.best_step,
                "masks": ticket.masks, "final": {k: v.detach().cpu() for k, v in module.state_dict().items()},
                "next": following}, out / f"{mode}-{kind}-rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
