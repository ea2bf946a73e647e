"""Atomic writes leave only their own temporary files behind, and only those are cleaned up."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketbench.atomic import atomic_write, remove_partial_writes


def test_an_interrupted_write_leaves_the_old_file_and_one_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "levels" / "level_00.json"
    atomic_write(target, lambda f: f.write(b"old"))

    def crash(handle) -> None:
        handle.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert target.read_bytes() == b"old"
    assert not list(tmp_path.rglob("*.tmp")), "a write that fails in-process removes its temporary file"


def test_only_this_packages_temporary_files_are_removed(tmp_path: Path) -> None:
    ours = [tmp_path / ".meta.json.ab_c12z9.ticketbench.tmp",
            tmp_path / "levels" / ".level_01.json.x7y8z9w0.ticketbench.tmp"]
    theirs = [tmp_path / ".notes.tmp", tmp_path / "levels" / ".draft.abcdefgh.tmp", tmp_path / "mine.tmp",
              tmp_path / "analysis" / "deep" / ".x.abcdefgh.ticketbench.tmp",  # a user's folder further down
              tmp_path / "levels" / ".short.abc.ticketbench.tmp"]  # not a name mkstemp gives
    for path in ours + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert sorted(remove_partial_writes(tmp_path)) == sorted(ours)
    assert not any(p.exists() for p in ours)
    assert all(p.read_bytes() == b"x" for p in theirs)
