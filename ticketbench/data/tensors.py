"""Device-resident splits and the seeded stream of training batches (no DataLoader, no workers)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ticketbench.config import TaskConfig
from ticketbench.errors import ConfigError, DataError
from ticketbench.seeding import generator

# Per-dataset, per-channel input statistics of x/255 over the training images.
STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.49139968, 0.48215841, 0.44653091), (0.24703223, 0.24348513, 0.26158784)),
}
PAD = 4  # random-crop padding, in pixels


@dataclass
class DeviceSplit:
    """Train / validation / test tensors living on one device.

    Validation and test images are stored normalised (float32). Training images are too, unless
    the split augments: then they are kept as uint8 padded by PAD pixels, and each batch is
    cropped, flipped and normalised on the device from the per-example parameters that the batch
    stream supplies (see :meth:`train_batch`).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor | None = None  # [1, C, 1, 1], for augmented uint8 training images
    std: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> DeviceSplit:
        return DeviceSplit(**{k: None if v is None else v.to(device) for k, v in vars(self).items()})

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    @property
    def augments(self) -> bool:
        return self.mean is not None

    def train_batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and labels of one batch: ``rows`` is [B] indices, or [B, 4] (index, dy, dx, flip)."""
        if rows.ndim == 1:
            return self.x_train[rows], self.y_train[rows]
        idx, dy, dx, flip = rows.unbind(1)
        x = crop_flip(self.x_train[idx], dy, dx, flip.bool())
        return (x.float().div_(255.0) - self.mean) / self.std, self.y_train[idx]

    def examples(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training examples ``idx`` as the network sees them without augmentation (centre, unflipped)."""
        idx = idx.to(self.device)
        if not self.augments:
            return self.train_batch(idx)
        centre = torch.full_like(idx, PAD)
        return self.train_batch(torch.stack([idx, centre, centre, torch.zeros_like(idx)], dim=1))


class ReplicaData:
    """The splits of K replicas, batched: replica k draws its batches from its own split.

    Training images of all replicas sit in one tensor (replica k's rows offset by k times the split
    size), so one gather serves a [K, B] block of indices; validation sets are stacked [K, N, ...];
    the test set is the official one, shared. With K = 1 nothing is copied.
    """

    def __init__(self, splits: list[DeviceSplit]) -> None:
        first = splits[0]
        if any(len(s.y_train) != len(first.y_train) or len(s.y_val) != len(first.y_val) for s in splits):
            raise ValueError("replicas need splits of equal sizes")
        self.splits, self.size, self.device = splits, len(splits), first.device
        self.joined = first if len(splits) == 1 else DeviceSplit(
            torch.cat([s.x_train for s in splits]), torch.cat([s.y_train for s in splits]),
            first.x_val, first.y_val, first.x_test, first.y_test, first.mean, first.std)
        self.offsets = (torch.arange(len(splits), device=self.device) * len(first.y_train))[:, None]
        self.x_val = _stack([s.x_val for s in splits])
        self.y_val = _stack([s.y_val for s in splits])
        self.x_test, self.y_test = first.x_test, first.y_test

    def train_batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs [K, B, ...] and labels [K, B] of one step: ``rows`` is [K, B] or [K, B, 4] (see
        :meth:`DeviceSplit.train_batch`), indices into each replica's own split."""
        k, b = rows.shape[:2]
        if k > 1:
            rows = rows.clone()
            index = rows if rows.ndim == 2 else rows[..., 0]
            index += self.offsets
        x, y = self.joined.train_batch(rows.flatten(0, 1))
        return x.unflatten(0, (k, b)), y.unflatten(0, (k, b))

    def examples(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training examples ``idx`` of every replica's split, unaugmented: [K, n, ...] and [K, n]."""
        pairs = [s.examples(idx) for s in self.splits]
        return _stack([x for x, _ in pairs]), _stack([y for _, y in pairs])


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack``, without a copy for a single tensor."""
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)


def crop_flip(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Crop each padded image [B, C, H+2P, W+2P] at its own offset (dy, dx), then mirror where ``flip``."""
    size = padded.shape[-1] - 2 * PAD
    grid = torch.arange(size, device=padded.device)
    rows = (dy[:, None] + grid)[:, None, :, None]
    cols = (dx[:, None] + grid)[:, None, None, :]
    cols = torch.where(flip[:, None, None, None], dx[:, None, None, None] + size - 1 - grid[None, None, None, :], cols)
    batch = torch.arange(len(padded), device=padded.device)[:, None, None, None]
    channel = torch.arange(padded.shape[1], device=padded.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def _images(x: np.ndarray, dataset: str, normalize: str) -> torch.Tensor:
    """uint8 [N, H, W(, C)] -> float32 [N, C, H, W], scaled to [0, 1] and optionally standardised;
    float features (MNIST-1D, already standardised by its generator) pass through as float32."""
    if x.dtype != np.uint8:
        return torch.from_numpy(x).float()
    t = _channels_first(x).float().div_(255.0)
    if normalize == "meanstd":
        mean, std = _stats(dataset)
        t = t.sub_(mean).div_(std)
    return t.contiguous()


def _channels_first(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x)
    return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)


def _stats(dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.tensor(s).view(1, -1, 1, 1) for s in STATS[dataset])


def _holdout(labels: np.ndarray, val_size: int, split_seed: int, stratified: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the training and validation examples (validation: random, or equal per class)."""
    n = len(labels)
    order = torch.randperm(n, generator=generator(split_seed, "split"))
    if not stratified:
        return order[val_size:], order[:val_size]
    classes = np.unique(labels)
    if val_size % len(classes):
        raise DataError(f"a stratified val_size must be a multiple of the {len(classes)} classes, got {val_size}")
    ordered = torch.from_numpy(labels.astype(np.int64))[order]
    per_class = val_size // len(classes)
    val = torch.cat([order[ordered == c][:per_class] for c in classes.tolist()])
    keep = torch.ones(n, dtype=torch.bool)
    keep[val] = False
    return order[keep[order]], val


def task_split(arrays: dict[str, np.ndarray], task: TaskConfig, seed: int,
               device: torch.device | str = "cpu") -> DeviceSplit:
    """The split of ``task`` for ``seed``: its dataset, normalisation, validation size, kind of
    hold-out and augmentation."""
    return make_split(arrays, task.dataset, task.normalize, task.val_size, seed, device,
                      stratified=task.split == "stratified", augment=task.augment == "crop-flip")


def make_split(arrays: dict[str, np.ndarray], dataset: str, normalize: str, val_size: int, split_seed: int,
               device: torch.device | str = "cpu", stratified: bool = False, augment: bool = False) -> DeviceSplit:
    """Hold out ``val_size`` training examples for validation (seeded by ``split_seed``)."""
    n = len(arrays["x_train"])
    if not 0 <= val_size < n:
        raise DataError(f"val_size must be between 0 and {n - 1} (the {dataset} training set has {n}), got {val_size}")
    train_idx, val_idx = _holdout(arrays["y_train"], val_size, split_seed, stratified)
    y = torch.from_numpy(arrays["y_train"].astype(np.int64))
    x_val = _images(arrays["x_train"][val_idx.numpy()], dataset, normalize)
    x_test = _images(arrays["x_test"], dataset, normalize)
    if augment:
        padded = torch.nn.functional.pad(_channels_first(arrays["x_train"][train_idx.numpy()]), (PAD,) * 4)
        mean, std = _stats(dataset) if normalize == "meanstd" else (torch.zeros(1), torch.ones(1))
        split = DeviceSplit(padded.contiguous(), y[train_idx], x_val, y[val_idx], x_test,
                            torch.from_numpy(arrays["y_test"].astype(np.int64)), mean, std)
    else:
        x = _images(arrays["x_train"], dataset, normalize)
        split = DeviceSplit(x[train_idx], y[train_idx], x_val, y[val_idx], x_test,
                            torch.from_numpy(arrays["y_test"].astype(np.int64)))
    return split.to(device)


class BatchStream:
    """Indices of the training batch at every step: a fresh seeded permutation each epoch.

    Step ``i`` always draws the same batch (and augmentation) for a given seed, so a level that starts at the rewind
    step ``k`` sees exactly the data order that the first level saw from ``k`` on. The last
    ``n mod batch_size`` examples of each epoch's permutation are dropped.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int, augment: bool = False) -> None:
        if batch_size > num_examples:
            raise ConfigError(f"batch_size {batch_size} exceeds the {num_examples} training examples; "
                              f"choose a batch_size <= {num_examples}")
        self.num_examples, self.batch_size, self.seed, self.augment = num_examples, batch_size, seed, augment
        self.per_epoch = num_examples // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            gen = generator(self.seed, "order", epoch)
            perm = torch.randperm(self.num_examples, generator=gen)[: self.per_epoch * self.batch_size]
            if self.augment:  # per example: crop offsets in [0, 2 * PAD] and a horizontal flip
                offsets = torch.randint(0, 2 * PAD + 1, (len(perm), 2), generator=gen)
                flips = torch.randint(0, 2, (len(perm), 1), generator=gen)
                perm = torch.cat([perm[:, None], offsets, flips], dim=1)
            self._epoch, self._perm = epoch, perm.view(self.per_epoch, self.batch_size, *perm.shape[1:])
        return self._perm

    def steps(self, start: int, stop: int) -> torch.Tensor:
        """Batch rows for steps ``start .. stop-1``: [stop-start, batch_size] indices, or with
        augmentation [stop-start, batch_size, 4] rows of (index, dy, dx, flip)."""
        rows = []
        step = start
        while step < stop:
            epoch, pos = divmod(step, self.per_epoch)
            take = min(stop - step, self.per_epoch - pos)
            rows.append(self._permutation(epoch)[pos : pos + take])
            step += take
        return torch.cat(rows)
