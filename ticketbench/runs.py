"""Run directories: metadata, one JSON record per level, bit-packed masks, the rewind point.

Layout of ``<out>/<task>/<arm>-seed<S>-<fingerprint>/``::

    meta.json                task, arm, seed, resolved config, code and library versions
    levels/level_NN.json     one record per finished level (written last: it marks the level done)
    masks/level_NN.npz       the mask level NN trained with (IMP also writes the next level's ahead)
    rewind.pt                θ_k, the weights and buffers at the rewind step (IMP arm; not evidence)
    rewind.sha256            digest of θ_k: with k = 0 a run resumes without rewind.pt (θ0 rebuilt, checked)
    rewind_optimizer.pt      the optimizer state at step k, when the task rewinds it (not evidence)
    progress/level_NN.pt     a level in progress, to resume it midway (with --checkpoint-every; removed
                             once the level's record is written; not evidence)
    wandb.json, wandb/       the W&B run id of this directory and its offline segments (with --wandb)
    .lock                    held (flock) by the process training this directory; names it
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import time
import typing
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ticketbench.atomic import atomic_write, write_json, write_text
from ticketbench.controls import TICKET
from ticketbench.device import default_device, tf32_policy
from ticketbench.pruning.masks import Masks, load_masks, mask_problem, save_masks
from ticketbench.run_schema import ANALYSIS_ARMS, LevelRecord, Meta, PathRecord, check

LOCK_ATTEMPTS = 5


class Protocol(typing.Protocol):
    """What a run directory records of the protocol it was trained with: a dataclass with a name
    (the directory under --out), the levels asked for, and a fingerprint of everything else that
    changes what a level trains (a suite task's TaskConfig, or a user's LotteryExperiment)."""

    name: str
    levels: int

    def fingerprint(self) -> str: ...


class RunError(RuntimeError):
    """A run cannot proceed (e.g. a control whose winning-ticket masks do not exist yet)."""


def code_version() -> dict[str, Any]:
    """Package version and, when installed from a git checkout, its commit and dirty flag."""
    from ticketbench import __version__

    root = Path(__file__).resolve().parent.parent
    info: dict[str, Any] = {"ticketbench": __version__, "torch": torch.__version__}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        info.update(git_commit=commit, git_dirty=bool(dirty))
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def levels_asked(meta: dict[str, Any]) -> int | None:
    """How many levels the commands asked this arm to train (controls and at-init methods start at
    level 1, so they train one fewer; a control trained ``--at-levels`` those); None for runs that
    predate the field."""
    if "at_levels" in meta:
        return len(meta["at_levels"])
    planned = meta.get("levels")
    return None if planned is None else planned - meta.get("first_level", 0 if meta["arm"] == TICKET.arm else 1)


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity: store them as null."""
    return None if value is None or not math.isfinite(value) else value


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a state dict's tensors."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}:".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def on_cpu(obj: Any) -> Any:
    """A copy of nested dicts/lists of tensors with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(on_cpu(v) for v in obj)
    return obj


@dataclass(frozen=True)
class RunDir:
    """One arm of one task and seed under one configuration."""

    path: Path

    @classmethod
    def for_arm(cls, out: Path, task: Protocol, seed: int, arm: str) -> RunDir:
        return cls(Path(out) / task.name / f"{arm}-seed{seed}-{task.fingerprint()}")

    def level_path(self, level: int) -> Path:
        return self.path / "levels" / f"level_{level:02d}.json"

    def mask_path(self, level: int) -> Path:
        return self.path / "masks" / f"level_{level:02d}.npz"

    @property
    def rewind_path(self) -> Path:
        return self.path / "rewind.pt"

    @property
    def rewind_digest_path(self) -> Path:
        return self.path / "rewind.sha256"

    @property
    def rewind_optimizer_path(self) -> Path:
        return self.path / "rewind_optimizer.pt"

    def progress_path(self, level: int) -> Path:
        return self.path / "progress" / f"level_{level:02d}.pt"

    def has_level(self, level: int) -> bool:
        return self.level_path(level).is_file()

    def diverged_level(self) -> int | None:
        """The first level recorded as diverged (the arm trains no further), if any."""
        return next((r["level"] for r in self.records() if r.get("diverged")), None)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold this directory while a run writes it; a second run on it gets an error naming the
        holder. The lock (``flock``) dies with its process, so a killed run leaves none behind."""
        self.path.mkdir(parents=True, exist_ok=True)
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
            try:
                yield
            finally:
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def looks_like_run(self) -> bool:
        """Has levels or masks (a run directory, even if its meta.json is gone)."""
        return (self.path / "levels").is_dir() or (self.path / "masks").is_dir()

    def records(self) -> list[dict[str, Any]]:
        """Every finished level's record, each checked against the schema, its file name and meta.json."""
        meta = self.meta()
        found = []
        for path in sorted((self.path / "levels").glob("level_*.json")):
            rec = read_checked(path, LevelRecord, "delete it and the same command trains that level again")
            mine = {"task": meta["task"], "arm": meta["arm"], "seed": meta["seed"]}
            wrong = next((k for k, v in mine.items() if rec[k] != v), None)
            if path.name != f"level_{rec['level']:02d}.json" or wrong:
                what = f"{wrong} {rec[wrong]!r}, but meta.json says {mine[wrong]!r}" if wrong else \
                    f"level {rec['level']}"
                raise RunError(f"{path}: the record is of {what}; a file copied from another run? Remove it, "
                               "and the same command trains that level again")
            found.append(rec)
        return found

    def meta(self) -> dict[str, Any]:
        return read_checked(self.path / "meta.json", Meta, "restore it, or start a new --out")

    def start(self, task: Protocol, seed: int, arm: str, first_level: int, pruned: dict[str, str],
              **about: Any) -> None:
        """Write meta.json for a new run, or check that an existing run used the same config.

        ``about`` holds what else identifies the arm (its control, or its method and densities);
        an existing run must agree on it (and is not written: see :meth:`ask_levels`)."""
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

    def ask_levels(self, levels: int, at_levels: list[int] | None = None) -> None:
        """Record in meta.json how many levels the command now training this run asked for, and for
        a control trained at chosen levels which (added to those asked before; None: every level);
        done with its first new level, so that a command refused before training leaves meta.json
        as it was."""
        meta = self.meta()
        wanted = {**meta, "levels": levels}
        wanted.pop("at_levels", None)
        if at_levels is not None:
            wanted["at_levels"] = sorted(set(meta.get("at_levels", [])) | set(at_levels))
        if wanted != meta:
            write_json(self.path / "meta.json", wanted)

    def save_masks(self, level: int, masks: Masks) -> None:
        save_masks(self.mask_path(level), masks)

    def load_masks(self, level: int, model: nn.Module | None = None, names: list[str] | None = None) -> Masks:
        """The masks of ``level``, checked against the tensors ``names`` of ``model`` when given."""
        path = self.mask_path(level)
        remedy = (f"restore it, or remove it with the records from level {max(level - 1, 0)} on "
                  "(the same command trains them again)")
        try:
            masks = load_masks(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise RunError(f"{path}: not a readable mask file ({type(err).__name__}: {err}); {remedy}") from None
        problem = model is not None and mask_problem(masks, model, names or [])
        if problem:
            raise RunError(f"{path}: {problem}; {remedy}")
        return masks

    def save_rewind(self, state: dict[str, torch.Tensor], optimizer_state: dict | None = None) -> None:
        """θ_k, and the optimizer state at step k when the task rewinds it too."""
        if optimizer_state is not None:
            atomic_write(self.rewind_optimizer_path, lambda f: torch.save(on_cpu(optimizer_state), f))
        state = on_cpu(state)
        atomic_write(self.rewind_path, lambda f: torch.save(state, f))
        write_text(self.rewind_digest_path, state_digest(state) + "\n")

    def rewind_files(self) -> list[Path]:
        """θ_k and, when the task rewinds it, the optimizer state at step k."""
        return [p for p in (self.rewind_path, self.rewind_optimizer_path) if p.is_file()]

    def load_rewind_optimizer(self) -> dict:
        path = self.rewind_optimizer_path
        if not path.is_file():
            raise RunError(f"{path} is missing: the optimizer state at the rewind step is lost; start a new --out")
        return torch.load(path, weights_only=True)

    def load_rewind(self, initial: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """θ_k from rewind.pt, checked against rewind.sha256. Without that file (it is not evidence
        and not committed), a run that rewinds to k = 0 passes its initialisation rebuilt from the
        seed as ``initial``: it is θ_k when its digest matches the recorded one, or, for a run older
        than rewind.sha256, when this is the torch version that trained it."""
        recorded = self._recorded_digest()
        if self.rewind_path.is_file():
            remedy = ("delete it" + (" (θ0 is rebuilt from the seed)" if initial is not None else "")
                      + ", or start a new --out")
            try:
                state = torch.load(self.rewind_path, weights_only=True)
                digest = state_digest(on_cpu(state))
            except Exception as err:  # noqa: BLE001 - truncated, not a torch file, not a state dict
                raise RunError(f"{self.rewind_path}: not a readable rewind point ({type(err).__name__}); "
                               f"{remedy}") from None
            if recorded is not None and digest != recorded:
                raise RunError(f"{self.rewind_path} differs from the digest in {self.rewind_digest_path.name}: "
                               f"edited or damaged; {remedy}")
            return state
        if initial is not None and recorded is not None:
            if state_digest(on_cpu(initial)) == recorded:
                return initial
            raise RunError(f"{self.rewind_path} is missing and the initialisation rebuilt from the seed differs from "
                           f"the one recorded in {self.rewind_digest_path.name} (another torch version?); "
                           "resume with the torch version in meta.json, or start a new --out")
        if initial is not None and self._same_torch():
            # runs from before rewind.sha256 existed: the initialisation is a function of the seed
            # and the torch version alone, so the same torch rebuilds it
            return initial
        raise RunError(f"{self.rewind_path} is missing: the rewind point of this run is lost; start a new --out")

    def _same_torch(self) -> bool:
        """Whether this process runs the torch version that trained the run (meta.json)."""
        return self.meta().get("code", {}).get("torch") == torch.__version__

    def _recorded_digest(self) -> str | None:
        """The sha256 in rewind.sha256 (None without the file)."""
        if not self.rewind_digest_path.is_file():
            return None
        text = self.rewind_digest_path.read_bytes().decode("ascii", "replace").strip()
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise RunError(f"{self.rewind_digest_path}: not a sha256 digest; restore it, or start a new --out")
        return text

    def save_record(self, record: dict[str, Any]) -> None:
        write_json(self.level_path(record["level"]), record)


def point_name(k: int, level: int, control: str) -> str:
    """The file name (without suffix) of an instability analysis point: the subnetwork of
    ``level`` of ``control``'s arm (``none``: the winning tickets; level 0 the dense network) at k."""
    return f"k{k:06d}-level{level:02d}-{control}"


class StabilityDir(RunDir):
    """The run directory of an instability analysis (see ticketbench.engine.instability)::

        meta.json                   as for a run; arm instability or instability-same-noise
        points/k<K>-level<L>-<control>.json   one record per analysed point (written last)
        copies/k<K>-level<L>-<control>-copy<C>.pt   the two trained copies (not evidence)
        copies/k<K>-level00-none-start.pt     the dense θ_k for k > 0 (not evidence)
    """

    def point_path(self, name: str) -> Path:
        return self.path / "points" / f"{name}.json"

    def copy_path(self, name: str, copy: int) -> Path:
        return self.path / "copies" / f"{name}-copy{copy}.pt"

    def start_path(self, name: str) -> Path:
        return self.path / "copies" / f"{name}-start.pt"

    def looks_like_run(self) -> bool:
        return (self.path / "points").is_dir() or (self.path / "copies").is_dir()

    def ask_points(self, names: list[str]) -> None:
        """Add the points a command asks for to meta.json's ``points`` (what "complete" means)."""
        meta = self.meta()
        asked = sorted(set(meta.get("points", [])) | set(names))
        if asked != meta.get("points"):
            write_json(self.path / "meta.json", {**meta, "points": asked})

    def point_records(self) -> list[dict[str, Any]]:
        """Every analysed point's record, checked against the schema, its file name and meta.json."""
        meta = self.meta()
        found = []
        for path in sorted((self.path / "points").glob("*.json")):
            rec = read_checked(path, PathRecord, "delete it and the same command analyses that point again")
            mine = (meta["task"], meta["seed"], meta["arm"])
            if (rec["task"], rec["seed"], rec["arm"]) != mine or \
                    path.stem != point_name(rec["rewind_step"], rec["level"], rec["control"]):
                raise RunError(f"{path}: the record is of another point or run; a file copied from elsewhere? "
                               "Remove it, and the same command analyses that point again")
            found.append(rec)
        return found


def open_run(path: Path) -> RunDir:
    """The run directory ``path`` (it holds meta.json): a :class:`StabilityDir` when it holds an
    instability analysis, else a :class:`RunDir` of levels."""
    run = RunDir(Path(path))
    return StabilityDir(run.path) if run.meta()["arm"] in ANALYSIS_ARMS else run


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
