"""Shared fixtures: a small fabricated dataset in the mnist.npz layout, a tiny task, real data."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ticketbench.config import TaskConfig, load_task
from ticketbench.overrides import override

# Runs in tests log to W&B only where a test asks for it (--wandb offline); the CLI's default
# (offline without an API key) would otherwise start a W&B process for every small run.
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("WANDB_SILENT", "true")


def _fake_dataset(directory: Path, name: str, shape: tuple[int, ...], n_train: int, n_test: int,
                  seed: int, sorted_labels: bool = False) -> Path:
    """Random uint8 images and labels in the <name>.npz layout of the real datasets."""
    rng = np.random.default_rng(seed)
    y_train = (np.repeat(np.arange(10), n_train // 10) if sorted_labels else rng.integers(0, 10, n_train))
    np.savez(directory / f"{name}.npz",
             x_train=rng.integers(0, 256, (n_train, *shape), dtype=np.uint8), y_train=y_train.astype(np.uint8),
             x_test=rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
             y_test=rng.integers(0, 10, n_test, dtype=np.uint8))
    return directory


@pytest.fixture(scope="session")
def fake_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mnist.npz with 600 train / 100 test random 28x28 images (engine tests, no real data)."""
    return _fake_dataset(tmp_path_factory.mktemp("fake-data"), "mnist", (28, 28), 600, 100, seed=0)


@pytest.fixture(scope="session")
def fake_cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cifar10.npz with 200 train / 50 test random 32x32 RGB images, sorted by class like the real copy."""
    return _fake_dataset(tmp_path_factory.mktemp("fake-cifar"), "cifar10", (32, 32, 3), 200, 50, seed=1,
                         sorted_labels=True)


@pytest.fixture
def tiny_task() -> TaskConfig:
    """The LeNet-300-100 protocol shrunk to seconds: 40 steps per level, 3 levels."""
    return override(load_task("lenet300-mnist"), val_size=100, batch_size=20, max_steps=40, eval_every=10, levels=3)


def slow_params(values: list, slow: list) -> list:
    """``values`` to parametrize a test with, those in ``slow`` marked slow (the default run keeps
    the others: the same path, shorter)."""
    return [pytest.param(v, marks=pytest.mark.slow) if v in slow else v for v in values]


def _real_data(filename: str) -> Path:
    """The directory of the verified real datasets (TICKETBENCH_DATA); skips when ``filename`` is absent."""
    chosen = os.environ.get("TICKETBENCH_DATA")
    if not chosen or not (Path(chosen) / filename).is_file():
        pytest.skip(f"real data not available: set TICKETBENCH_DATA to a directory holding {filename}")
    return Path(chosen)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path where a test installs throwaway distributions (:func:`install`);
    the registry of pruning methods is the test's own, as in a new process."""
    from ticketbench.pruning import methods

    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.setattr(methods, "_REGISTRY", dict(methods._REGISTRY))
    monkeypatch.setattr(methods, "_BROKEN", dict(methods._BROKEN))
    monkeypatch.setattr(methods, "_REFUSED", dict(methods._REFUSED))
    monkeypatch.setattr(methods, "_BUILT_IN", set(methods._BUILT_IN))
    return path


def install(site: Path, name: str, module: str, source: str, entry_points: str) -> None:
    """Distribution ``name`` in ``site`` as pip leaves one: ``module``.py holding ``source`` and a
    .dist-info declaring ``entry_points`` (lines ``NAME = MODULE:FUNCTION``) in ticketbench.methods."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[ticketbench.methods]\n{entry_points}")


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    return _real_data("mnist.npz")


@pytest.fixture(scope="session")
def real_cifar_dir() -> Path:
    return _real_data("cifar10.npz")

def lenet_p_m(level: int) -> float:
    """P_m of the F&C LeNet schedule after ``level`` rounds (closed form)."""
    return 100 * (265_200 * 0.8**level + 1_000 * 0.9**level) / 266_200


def write_run(root: Path, seed: int, arm: str, rows: list[tuple[int, float | None, int | None]],
              task: str = "lenet300-mnist", fingerprint: str = "f0", levels: int | None = None) -> Path:
    """A run directory with fabricated records: rows of (level, test accuracy 0-1, early-stop step);
    ``levels``: the levels asked for (meta.json), when given."""
    from ticketbench.atomic import write_json

    path = root / task / f"{arm}-seed{seed}-{fingerprint}"
    asked = {} if levels is None else {"levels": levels}
    write_json(path / "meta.json", {"task": task, "arm": arm, "seed": seed, "fingerprint": fingerprint,
                                    "config": {"max_steps": 50_000}, **asked})
    for level, acc, step in rows:
        write_json(path / "levels" / f"level_{level:02d}.json", {
            "task": task, "seed": seed, "arm": arm, "level": level, "weights_remaining_percent": lenet_p_m(level),
            "layer_remaining_percent": {}, "early_stop_step": step, "test_acc_at_early_stop": acc,
            "test_acc_final": acc, "val_acc_at_early_stop": acc, "val_loss_at_early_stop": None if acc is None else 0.1,
            "train_acc_final": acc, "diverged": acc is None, "start_step": 0, "steps": 50_000, "seconds": 1.0,
        })
    return path


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The one ``ticketbench: error:`` line of a command that exited 2, and nothing after it."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("ticketbench: error:")]
    assert len(lines) == 1 and result.stderr.strip().endswith(lines[0]), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root`` with its bytes and modification time (to show nothing was touched);
    not the run directories' lock files, which every command that opens a run holds for a moment."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


# A small sweep on MNIST-1D (the local and the SLURM executor tests): 2 seeds x (IMP + random
# pruning), 3 levels of 200 steps.
SWEEP_SHORT = ["--levels", "3", "--max-steps", "200", "--eval-every", "100", "--wandb", "off"]
SWEEP_GRID = ["sweep", "mnist1d-mlp", "--seeds", "0-1", "--arms", "none,random-prune", *SWEEP_SHORT]


def sweep_records(out: Path) -> dict[str, list[dict]]:
    """Every MNIST-1D record under ``out`` by run directory name, without the wall time."""
    from ticketbench.storage.run_dir import RunDir

    return {run.path.name: [{k: v for k, v in r.items() if k != "seconds"} for r in run.records()]
            for run in map(RunDir, sorted((out / "mnist1d-mlp").glob("*-seed*")))}


def sweep_masks(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("mnist1d-mlp/*/masks/*.npz"))}


def wait_for(predicate: Callable[[], bool], what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {seconds:.0f} s waiting for {what}"
        time.sleep(0.5)


@pytest.fixture(scope="session")
def sweep_by_hand(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The jobs of SWEEP_GRID as separate ``ticketbench run`` invocations, one after the other, one
    thread each."""
    from test_cli import ticketbench

    out = tmp_path_factory.mktemp("sweep-by-hand")
    for seed in (0, 1):
        result = ticketbench("run", "mnist1d-mlp", "--seed", str(seed), "--control", "none,random-prune",
                             *SWEEP_SHORT, "--out", str(out))
        assert result.returncode == 0, result.stderr
    return out
