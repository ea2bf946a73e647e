"""Data: IDX parsing, the hash-pinned download from a real local HTTP server, split and batch stream."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from ticketbench.data import BatchStream, DataError, load_arrays, make_split
from ticketbench.data.idx import read_idx
from ticketbench.data.store import MNIST, Source
from ticketbench.training.module import Blocks


def idx_bytes(array: np.ndarray) -> bytes:
    """An array in the official IDX layout (unsigned bytes)."""
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_official_files(served: Path) -> dict[str, np.ndarray]:
    """Fabricated MNIST files in the official names and format (gzip IDX), written to ``served``."""
    rng = np.random.default_rng(3)
    arrays = {
        "x_train": rng.integers(0, 256, (50, 28, 28)), "y_train": rng.integers(0, 10, 50),
        "x_test": rng.integers(0, 256, (20, 28, 28)), "y_test": rng.integers(0, 10, 20),
    }
    served.mkdir(parents=True)
    for key, fname in _names().items():
        (served / fname).write_bytes(gzip.compress(idx_bytes(arrays[key])))
    return arrays


@pytest.fixture
def official_files(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    return tmp_path / "served", write_official_files(tmp_path / "served")


def _names() -> dict[str, str]:
    return {"x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
            "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz"}


@contextlib.contextmanager
def serve(directory: Path, requests: list[str] | None = None) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving ``directory``; yields its base URL, logs request paths."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            if requests is not None:
                requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()


@pytest.fixture
def server(official_files) -> Iterator[tuple[str, list[str]]]:
    """The fabricated MNIST files served over HTTP; yields (base URL, request log)."""
    requests: list[str] = []
    with serve(official_files[0], requests) as url:
        yield url, requests


def _source(base_url: str, served: Path, corrupt: str | None = None) -> Source:
    files = {}
    for key, fname in _names().items():
        md5 = hashlib.md5((served / fname).read_bytes()).hexdigest()
        files[key] = (fname, "0" * 32 if key == corrupt else md5)
    return Source(base_url=base_url, files=files, parse=MNIST.parse)


def test_download_parses_and_caches(server, official_files, tmp_path: Path) -> None:
    url, requests = server
    served, arrays = official_files
    cache = tmp_path / "cache"
    got = load_arrays("mnist", cache, source=_source(url, served))
    for key, value in arrays.items():
        assert got[key].dtype == np.uint8 and np.array_equal(got[key], value)
    assert (cache / "mnist.npz").is_file() and len(requests) == 4
    again = load_arrays("mnist", cache, source=_source(url, served))
    assert len(requests) == 4, "the cached npz must be used without downloading again"
    assert np.array_equal(again["x_train"], arrays["x_train"])


def test_wrong_hash_is_refused(server, official_files, tmp_path: Path) -> None:
    url, _ = server
    served, _ = official_files
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz failed its hash check"):
        load_arrays("mnist", tmp_path / "cache", source=_source(url, served, corrupt="y_test"))
    assert not (tmp_path / "cache" / "mnist.npz").exists()


def test_unreachable_mirror_names_the_way_out(tmp_path: Path, official_files) -> None:
    served, _ = official_files
    with pytest.raises(DataError, match="TICKETBENCH_DATA"):
        load_arrays("mnist", tmp_path / "cache", source=_source("http://127.0.0.1:9/", served))


def test_idx_rejects_bad_magic_and_truncation(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(idx_bytes(np.zeros((4, 3)))[:-2])
    with pytest.raises(ValueError, match="header promises 12"):
        read_idx(tmp_path / "short")


def test_split_is_seeded_disjoint_and_normalised(fake_data_dir: Path) -> None:
    arrays = load_arrays("mnist", fake_data_dir)
    a = make_split(arrays, "mnist", "meanstd", 100, split_seed=1)
    b = make_split(arrays, "mnist", "meanstd", 100, split_seed=1)
    c = make_split(arrays, "mnist", "meanstd", 100, split_seed=2)
    assert a.x_train.shape == (500, 1, 28, 28) and a.x_val.shape == (100, 1, 28, 28)
    assert torch.equal(a.x_val, b.x_val) and not torch.equal(a.x_val, c.x_val)
    rows = {bytes(r) for r in a.x_train.flatten(1).numpy()}
    assert not rows & {bytes(r) for r in a.x_val.flatten(1).numpy()}
    raw = make_split(arrays, "mnist", "none", 100, split_seed=1)
    assert torch.allclose(a.x_test, (raw.x_test - 0.1307) / 0.3081, atol=1e-6)
    assert raw.x_test.min() >= 0 and raw.x_test.max() <= 1


def test_batch_stream_reshuffles_each_epoch_and_is_addressable_by_step() -> None:
    stream = BatchStream(num_examples=100, batch_size=30, seed=0)  # 3 batches per epoch, 10 dropped
    epoch0, epoch1 = stream.steps(0, 3), stream.steps(3, 6)
    assert len(set(epoch0.flatten().tolist())) == 90 and len(set(epoch1.flatten().tolist())) == 90
    assert not torch.equal(epoch0, epoch1)
    fresh = BatchStream(100, 30, seed=0)
    assert torch.equal(fresh.steps(4, 8), stream.steps(0, 8)[4:])
    assert not torch.equal(BatchStream(100, 30, seed=1).steps(0, 3), epoch0)
    blocks = list(Blocks([fresh, BatchStream(100, 30, seed=1)], 2, 11, [5, 7, 20]))
    assert [b.shape for b in blocks] == [(3, 2, 30), (2, 2, 30), (4, 2, 30)], "[steps, replicas, batch], cut at 5 and 7"
    assert torch.equal(torch.cat(blocks)[:, 0], stream.steps(2, 11)), "replica 0 keeps its own stream"
