"""What every directory of results shares, a run of levels or an analysis: the protocol it was
trained with (meta.json), the lock held while a process writes it, and reading its JSON files
back checked against their schema."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import socket
import sys
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ticketbench.atomic import write_json
from ticketbench.device import default_device, tf32_policy
from ticketbench.errors import RunError
from ticketbench.storage.provenance import code_version
from ticketbench.storage.schema import Meta, check

LOCK_ATTEMPTS = 5
_HELD: set[Path] = set()  # the directories this process holds
D = TypeVar("D", bound="Directory")


class Protocol(typing.Protocol):
    """What a directory records of the protocol it was trained with: a dataclass with a name
    (the directory under --out), the levels asked for, and a fingerprint of everything else that
    changes what a level trains (a suite task's TaskConfig, or a user's LotteryExperiment)."""

    name: str
    levels: int

    def fingerprint(self) -> str: ...


@dataclass(frozen=True)
class Directory:
    """``<out>/<task>/<arm>-seed<S>-<fingerprint>/``: meta.json, and the folders of ``written``."""

    path: Path
    written: ClassVar[tuple[str, ...]] = ()  # the folders whose presence says it holds results

    @classmethod
    def for_arm(cls: type[D], out: Path, task: Protocol, seed: int, arm: str) -> D:
        return cls(Path(out) / task.name / f"{arm}-seed{seed}-{task.fingerprint()}")

    def looks_like_run(self) -> bool:
        """Holds results (a run directory, even if its meta.json is gone)."""
        return any((self.path / name).is_dir() for name in self.written)

    def meta(self) -> dict[str, Any]:
        return read_checked(self.path / "meta.json", Meta, "restore it, or start a new --out")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold this directory while a run writes it; a second run on it gets an error naming the
        holder. The lock (``flock``) dies with its process, so a killed run leaves none behind. The
        process holding it may take it again (arms that write one directory, as an analysis's copies)."""
        self.path.mkdir(parents=True, exist_ok=True)
        key = self.path.resolve()
        if key in _HELD:
            yield
            return
        with open(self.path / ".lock", "a+") as handle:
            for attempt in range(LOCK_ATTEMPTS):  # a status reader (lock_holder) holds it for an instant
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt + 1 < LOCK_ATTEMPTS:
                        time.sleep(0.1)
                        continue
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise RunError(f"{self.path} is in use by {holder}; wait for it to finish or choose "
                                   "another --out") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')} "
                         f"({' '.join(['ticketbench', *sys.argv[1:]])})\n")
            handle.flush()
            _HELD.add(key)
            try:
                yield
            finally:
                _HELD.discard(key)
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def start(self, task: Protocol, seed: int, arm: str, first_level: int, pruned: dict[str, str],
              **about: Any) -> None:
        """Write meta.json for a new run, or check that an existing run used the same config.

        ``about`` holds what else identifies the arm (its control, or its method and densities);
        an existing run must agree on it (and is not written: a run of levels records what each
        command asks with ``ask_levels``)."""
        config = {k: v for k, v in dataclasses.asdict(task).items() if k != "levels"}  # type: ignore[call-overload]
        meta_path = self.path / "meta.json"
        if meta_path.is_file():
            meta = self.meta()
            if meta["fingerprint"] != task.fingerprint():
                raise RunError(f"{self.path} holds a run with a different configuration; choose another --out")
            for key, value in about.items():
                if key in meta and meta[key] != value:
                    raise RunError(f"{self.path} was run with {key} {meta[key]}, not {value}; "
                                   "repeat that or choose another --out")
            return
        if self.looks_like_run():
            raise RunError(f"{self.path}: holds levels but no meta.json; restore meta.json, or remove the directory "
                           "to train it again")
        device = default_device()
        write_json(meta_path, {
            "task": task.name, "arm": arm, "seed": seed, "levels": task.levels, "first_level": first_level, **about,
            "fingerprint": task.fingerprint(), "config": config, "pruned_tensors": pruned, "code": code_version(),
            "command": ["ticketbench", *sys.argv[1:]], "device": device.type,
            "tf32": tf32_policy(getattr(task, "precision", "32-true"), device),
        })


def read_checked(path: Path, schema: type, remedy: str) -> dict[str, Any]:
    """A run directory's JSON file checked against its schema, or a :class:`RunError` naming it."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise RunError(f"{path} is missing: not a complete run directory; {remedy}") from None
    except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON
        raise RunError(f"{path}: not a valid JSON file ({type(err).__name__}: {str(err).splitlines()[0]}); "
                       f"{remedy}") from None
    try:
        return check(schema, data, path)
    except ValueError as err:
        raise RunError(f"{err}; the file was edited or damaged: {remedy}") from None
