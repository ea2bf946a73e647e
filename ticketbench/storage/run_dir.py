"""The directory of one arm's levels: a JSON record per level, bit-packed masks, the rewind point,
the checkpoint of a level in progress."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ticketbench.atomic import atomic_write, write_json, write_text
from ticketbench.controls import TICKET
from ticketbench.errors import RunError
from ticketbench.pruning.masks import Masks, load_masks, mask_problem, save_masks
from ticketbench.storage.directory import Directory, read_checked
from ticketbench.storage.provenance import on_cpu, state_digest
from ticketbench.storage.schema import LevelRecord


def levels_asked(meta: dict[str, Any]) -> int | None:
    """How many levels the commands asked this arm to train (controls and at-init methods start at
    level 1, so they train one fewer; a control trained ``--at-levels`` those); None for runs that
    predate the field."""
    if "at_levels" in meta:
        return len(meta["at_levels"])
    planned = meta.get("levels")
    return None if planned is None else planned - meta.get("first_level", 0 if meta["arm"] == TICKET.arm else 1)


@dataclass(frozen=True)
class RunDir(Directory):
    """One arm of one task and seed under one configuration, level by level."""

    written = ("levels", "masks")

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

    def save_record(self, record: dict[str, Any]) -> None:
        write_json(self.level_path(record["level"]), record)

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
