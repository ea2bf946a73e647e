"""Shared fixtures: a small fabricated dataset in the mnist.npz layout, a tiny task, real data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ticketbench.config import TaskConfig, load_task, override


@pytest.fixture(scope="session")
def fake_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mnist.npz with 600 train / 100 test random 28x28 images (engine tests, no real data)."""
    rng = np.random.default_rng(0)
    directory = tmp_path_factory.mktemp("fake-data")
    np.savez(
        directory / "mnist.npz",
        x_train=rng.integers(0, 256, (600, 28, 28), dtype=np.uint8), y_train=rng.integers(0, 10, 600, dtype=np.uint8),
        x_test=rng.integers(0, 256, (100, 28, 28), dtype=np.uint8), y_test=rng.integers(0, 10, 100, dtype=np.uint8),
    )
    return directory


@pytest.fixture
def tiny_task() -> TaskConfig:
    """The LeNet-300-100 protocol shrunk to seconds: 40 steps per level, 3 levels."""
    return override(load_task("lenet300-mnist"), val_size=100, batch_size=20, max_steps=40, eval_every=10, levels=3)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The directory of the verified real datasets (TICKETBENCH_DATA); skips when mnist.npz is absent."""
    chosen = os.environ.get("TICKETBENCH_DATA")
    if not chosen or not (Path(chosen) / "mnist.npz").is_file():
        pytest.skip("real MNIST not available: set TICKETBENCH_DATA to a directory holding mnist.npz")
    return Path(chosen)
