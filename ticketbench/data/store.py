"""Where dataset arrays come from: a data directory, the user cache, or a hash-pinned download.

Resolution order: ``data_dir`` (``--data-dir`` or ``TICKETBENCH_DATA``) -> the user cache
directory -> download of the official files into the cache, converted once to ``<name>.npz``
with the keys ``x_train, y_train, x_test, y_test`` (uint8) and its sha256 beside it
(``<name>.npz.sha256``), checked on every later read. MNIST comes as four IDX gzip files,
CIFAR-10 as the python-pickle tarball; both are md5-pinned. ``TICKETBENCH_MIRROR`` replaces the
official base URL (the files and their hashes stay the same).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch

from ticketbench.atomic import atomic_write
from ticketbench.data.cifar import read_cifar10
from ticketbench.data.idx import read_idx
from ticketbench.data.mnist1d import make_mnist1d
from ticketbench.errors import DataError

KEYS = ("x_train", "y_train", "x_test", "y_test")
MIRROR = "TICKETBENCH_MIRROR"  # base URL of a mirror of the official files (same names, same hashes)


def _parse_idx(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    return {key: read_idx(path).astype(np.uint8) for key, path in paths.items()}


def _parse_cifar(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    return read_cifar10(paths["archive"])


@dataclass(frozen=True)
class Source:
    """Official files of one dataset: a base URL, per file (name, md5), and a parser of the files."""

    base_url: str
    files: dict[str, tuple[str, str]]
    parse: Callable[[dict[str, Path]], dict[str, np.ndarray]]


MNIST = Source(
    base_url="https://ossci-datasets.s3.amazonaws.com/mnist/",
    files={
        "x_train": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "y_train": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        "x_test": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        "y_test": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    },
    parse=_parse_idx,
)
CIFAR10 = Source(
    base_url="https://www.cs.toronto.edu/~kriz/",
    files={"archive": ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")},
    parse=_parse_cifar,
)
SOURCES = {"mnist": MNIST, "cifar10": CIFAR10}
GENERATED = {"mnist1d": make_mnist1d}  # built offline, never downloaded


@dataclass(frozen=True)
class Layout:
    """What the arrays of a dataset must look like: one example's shape, the image dtype, the
    number of classes, and the size of the official training set."""

    example: tuple[int, ...]
    dtype: str
    train_size: int
    classes: int = 10


LAYOUTS = {"mnist": Layout((28, 28), "uint8", 60_000), "cifar10": Layout((32, 32, 3), "uint8", 50_000),
           "mnist1d": Layout((40,), "float32", 4_000)}


def check_arrays(name: str, arrays: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """Refuse arrays that are not dataset ``name`` in this suite's layout: image dtype and shape,
    integer labels in [0, classes), as many labels as images, no empty split."""
    layout = LAYOUTS[name]
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.dtype != np.dtype(layout.dtype) or x.shape[1:] != layout.example:
            raise DataError(f"{where}: x_{part} is {x.dtype} {list(x.shape)}; {name} needs {layout.dtype} "
                            f"[N, {', '.join(map(str, layout.example))}]")
        if y.ndim != 1 or y.dtype.kind not in "ui":
            raise DataError(f"{where}: y_{part} is {y.dtype} {list(y.shape)}; labels must be a 1-d integer array")
        if len(y) != len(x) or not len(y):
            raise DataError(f"{where}: {len(x)} images but {len(y)} labels in the {part} split; "
                            "they must be equal and non-zero")
        if y.min() < 0 or y.max() >= layout.classes:
            raise DataError(f"{where}: y_{part} holds labels from {y.min()} to {y.max()}; "
                            f"{name} has classes 0..{layout.classes - 1}")
    return arrays


def cache_dir() -> Path:
    """The user cache directory for converted datasets."""
    return Path(pooch.os_cache("ticketbench"))


def candidate_dirs(data_dir: str | Path | None) -> list[Path]:
    """Directories searched for ``<name>.npz``, in order."""
    chosen = data_dir or os.environ.get("TICKETBENCH_DATA")
    return ([Path(chosen)] if chosen else []) + [cache_dir()]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_file(path: Path) -> Path:
    """Where the sha256 of a converted ``<name>.npz`` is kept (written with it by :func:`download`)."""
    return path.with_name(path.name + ".sha256")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of ``path``, checked against its recorded sha256 when it has one."""
    recorded = _hash_file(path)
    if recorded.is_file():
        words = recorded.read_bytes().decode("ascii", "replace").split()
        if not words or len(words[0]) != 64:
            raise DataError(f"{recorded}: not a sha256 record (expected '<64 hex digits>  {path.name}'); "
                            "delete it, or delete both files and they are downloaded again")
        expected, actual = words[0], _sha256(path)
        if actual != expected:
            raise DataError(f"{path}: sha256 mismatch ({actual[:12]}... instead of {expected[:12]}... recorded in "
                            f"{recorded.name}): the file is corrupted or truncated; delete both and the "
                            "official files are downloaded again")
    try:
        archive = np.load(path)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an archive of x_train, y_train, x_test, y_test")
        with archive:
            missing = [k for k in KEYS if k not in archive]
            if missing:
                raise DataError(f"{path}: missing arrays {missing}; expected keys {', '.join(KEYS)}")
            return {k: archive[k] for k in KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        reason = "an empty file" if path.stat().st_size == 0 else f"{type(err).__name__}: {err}"
        raise DataError(f"{path}: not a readable .npz archive ({reason}); replace it with a good copy, or delete "
                        "it and the official files are downloaded again") from None


def download(name: str, dest: Path, source: Source | None = None) -> Path:
    """Fetch the official files of ``name`` (md5-checked by pooch), parse them, write ``dest/<name>.npz``."""
    source = source or SOURCES[name]
    base_url = os.environ.get(MIRROR) or source.base_url
    raw_dir = dest / f"{name}-raw"
    paths = {}
    for key, (fname, md5) in source.files.items():
        try:
            path = pooch.retrieve(base_url + fname, known_hash=f"md5:{md5}", fname=fname,
                                  path=raw_dir, progressbar=False)
        except ValueError as err:  # pooch raises ValueError on a hash mismatch
            raise DataError(f"download of {fname} failed its hash check: {err}") from None
        except Exception as err:  # noqa: BLE001 - any network failure gets the same advice
            raise DataError(
                f"cannot download {base_url + fname} ({type(err).__name__}); without network, put {name}.npz in "
                f"a directory and point TICKETBENCH_DATA (or --data-dir) at it (official files: {source.base_url})"
            ) from None
        paths[key] = Path(path)
    try:
        arrays = source.parse(paths)
    except (ValueError, OSError, KeyError) as err:
        raise DataError(f"the downloaded {name} files could not be parsed ({err})") from None
    out = dest / f"{name}.npz"
    atomic_write(out, lambda f: np.savez(f, **arrays))
    digest = _sha256(out)
    atomic_write(_hash_file(out), lambda f: f.write(f"{digest}  {out.name}\n".encode()))
    return out


def load_arrays(name: str, data_dir: str | Path | None = None, source: Source | None = None) -> dict[str, np.ndarray]:
    """Return the uint8 arrays of dataset ``name``, downloading into the cache when absent."""
    if name in GENERATED:
        return check_arrays(name, GENERATED[name](), f"generated {name}")
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join([*SOURCES, *GENERATED])}")
    dirs = candidate_dirs(data_dir)
    for directory in dirs:
        path = directory / f"{name}.npz"
        if path.is_file():
            return check_arrays(name, _read_npz(path), str(path))
    path = download(name, dirs[-1] if data_dir is None else Path(data_dir), source)
    return check_arrays(name, _read_npz(path), str(path))
