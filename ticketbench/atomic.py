"""Atomic file writes: a temporary file in the same directory, flushed, fsynced, then renamed
(and the directory fsynced).

A reader sees the old file or the complete new one, never part of one; a write that fails (a full
disk) or a process killed mid-write leaves at most a hidden ``.<name>.<8 characters>.ticketbench.tmp``
file, which :func:`remove_partial_writes` deletes (and no other file)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ticketbench.faults import fault_point

TMP_SUFFIX = ".ticketbench.tmp"
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(TMP_SUFFIX))  # as mkstemp names ours


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary file and move it to ``path`` only once it is complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # what open() would give (mkstemp makes it private)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            fault_point(f"write {path.parent.name}/{path.name}")
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)  # makes the rename itself survive a power loss
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_figure(figure: Any, path: Path) -> None:
    """A matplotlib figure, in the format its suffix names."""
    atomic_write(path, lambda f: figure.savefig(f, format=path.suffix[1:]))


def remove_partial_writes(directory: Path) -> list[Path]:
    """Delete the temporary files interrupted writes of this package left in ``directory`` and the
    folders directly in it (where a run directory's files are); return them. Nothing else is
    touched: not a file of another name, not a user's own folders deeper down."""
    found = [p for pattern in (f".*{TMP_SUFFIX}", f"*/.*{TMP_SUFFIX}") for p in directory.glob(pattern)
             if p.is_file() and _TEMPORARY.fullmatch(p.name)]
    for path in found:
        path.unlink()
    return found
