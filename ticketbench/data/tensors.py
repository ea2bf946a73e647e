"""Device-resident splits and the seeded stream of training batches (no DataLoader, no workers)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ticketbench.data.store import DataError
from ticketbench.seeding import generator

# Per-dataset input statistics of x/255 over the training images.
STATS = {"mnist": ((0.1307,), (0.3081,))}


@dataclass
class DeviceSplit:
    """Train / validation / test tensors, already normalised, living on one device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def to(self, device: torch.device | str) -> DeviceSplit:
        return DeviceSplit(**{k: v.to(device) for k, v in vars(self).items()})

    @property
    def device(self) -> torch.device:
        return self.x_train.device


def _images(x: np.ndarray, dataset: str, normalize: str) -> torch.Tensor:
    """uint8 [N, H, W(, C)] -> float32 [N, C, H, W], scaled to [0, 1] and optionally standardised."""
    t = torch.from_numpy(x)
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    t = t.float().div_(255.0)
    if normalize == "meanstd":
        mean, std = (torch.tensor(s).view(1, -1, 1, 1) for s in STATS[dataset])
        t = t.sub_(mean).div_(std)
    return t.contiguous()


def make_split(arrays: dict[str, np.ndarray], dataset: str, normalize: str, val_size: int,
               split_seed: int, device: torch.device | str = "cpu") -> DeviceSplit:
    """Hold out ``val_size`` random training examples for validation (seeded by ``split_seed``)."""
    n = len(arrays["x_train"])
    if not 0 < val_size < n:
        raise DataError(f"val_size must be between 1 and {n - 1} (the {dataset} training set has {n}), got {val_size}")
    order = torch.randperm(n, generator=generator(split_seed, "split"))
    train_idx, val_idx = order[val_size:], order[:val_size]
    x = _images(arrays["x_train"], dataset, normalize)
    y = torch.from_numpy(arrays["y_train"].astype(np.int64))
    split = DeviceSplit(
        x_train=x[train_idx], y_train=y[train_idx], x_val=x[val_idx], y_val=y[val_idx],
        x_test=_images(arrays["x_test"], dataset, normalize),
        y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
    )
    return split.to(device)


class BatchStream:
    """Indices of the training batch at every step: a fresh seeded permutation each epoch.

    Step ``i`` always draws the same batch for a given seed, so a level that starts at the rewind
    step ``k`` sees exactly the data order that the first level saw from ``k`` on. The last
    ``n mod batch_size`` examples of each epoch's permutation are dropped.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int) -> None:
        if batch_size > num_examples:
            raise ValueError(f"batch_size {batch_size} exceeds the {num_examples} training examples")
        self.num_examples, self.batch_size, self.seed = num_examples, batch_size, seed
        self.per_epoch = num_examples // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            perm = torch.randperm(self.num_examples, generator=generator(self.seed, "order", epoch))
            self._epoch, self._perm = epoch, perm[: self.per_epoch * self.batch_size].view(self.per_epoch, -1)
        return self._perm

    def steps(self, start: int, stop: int) -> torch.Tensor:
        """Batch indices for steps ``start .. stop-1`` as a [stop-start, batch_size] tensor."""
        rows = []
        step = start
        while step < stop:
            epoch, pos = divmod(step, self.per_epoch)
            take = min(stop - step, self.per_epoch - pos)
            rows.append(self._permutation(epoch)[pos : pos + take])
            step += take
        return torch.cat(rows)

    def blocks(self, start: int, stop: int, boundaries: list[int]) -> Iterator[torch.Tensor]:
        """Consecutive blocks of steps covering [start, stop), cut at every boundary in between."""
        cuts = sorted({b for b in boundaries if start < b < stop} | {stop})
        lo = start
        for hi in cuts:
            yield self.steps(lo, hi)
            lo = hi
