"""MNIST-1D (Greydanus & Kobak, ICML 2024), generated offline by the ``mnist1d`` package.

``make_dataset()`` with its default arguments (seed 42) is deterministic: 4,000 training and
1,000 test sequences of length 40, float64, standardised by the package. Its ``set_seed``
reseeds the global ``random`` and numpy generators, so their states are saved and restored
around the call. The package's download helper is never used.
"""

from __future__ import annotations

import random

import numpy as np


def make_mnist1d() -> dict[str, np.ndarray]:
    """Arrays ``x_train`` [4000, 40] float32, ``y_train`` uint8, ``x_test`` [1000, 40], ``y_test``."""
    from mnist1d.data import make_dataset

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset()
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {"x_train": data["x"].astype(np.float32), "y_train": data["y"].astype(np.uint8),
            "x_test": data["x_test"].astype(np.float32), "y_test": data["y_test"].astype(np.uint8)}
