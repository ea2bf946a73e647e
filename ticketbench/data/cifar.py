"""Reader of the official CIFAR-10 python-pickle tarball (cifar-10-python.tar.gz)."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


def _batch(archive: tarfile.TarFile, name: str) -> tuple[np.ndarray, np.ndarray]:
    member = next((m for m in archive.getmembers() if m.name.endswith(f"/{name}")), None)
    if member is None:
        raise ValueError(f"{archive.name}: no member {name}")
    entry = pickle.load(archive.extractfile(member), encoding="bytes")  # noqa: S301 - md5-checked official file
    images = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(entry[b"labels"], dtype=np.uint8)


def read_cifar10(path: Path) -> dict[str, np.ndarray]:
    """Arrays ``x_train`` [50000, 32, 32, 3] (HWC RGB uint8), ``y_train``, ``x_test``, ``y_test``."""
    with tarfile.open(path, "r:gz") as archive:
        train = [_batch(archive, name) for name in TRAIN_BATCHES]
        x_test, y_test = _batch(archive, "test_batch")
    return {"x_train": np.concatenate([x for x, _ in train]), "y_train": np.concatenate([y for _, y in train]),
            "x_test": x_test, "y_test": y_test}
