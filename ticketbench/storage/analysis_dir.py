"""The directory of an instability analysis (see ticketbench.engine.instability)::

    meta.json                                   as for a run; arm instability or instability-same-noise
    points/k<K>-level<L>-<control>.json         one record per analysed point (written last)
    copies/k<K>-level<L>-<control>-copy<C>.pt   the two trained copies (not evidence)
    copies/k<K>-level00-none-start.pt           the dense θ_k for k > 0 (not evidence)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ticketbench.atomic import write_json
from ticketbench.errors import RunError
from ticketbench.storage.directory import Directory, read_checked
from ticketbench.storage.schema import PathRecord


def point_name(k: int, level: int, control: str) -> str:
    """The file name (without suffix) of an instability analysis point: the subnetwork of
    ``level`` of ``control``'s arm (``none``: the winning tickets; level 0 the dense network) at k."""
    return f"k{k:06d}-level{level:02d}-{control}"


@dataclass(frozen=True)
class StabilityDir(Directory):
    """One instability analysis of one task and seed: a record per analysed point."""

    written = ("points", "copies")

    def point_path(self, name: str) -> Path:
        return self.path / "points" / f"{name}.json"

    def copy_path(self, name: str, copy: int) -> Path:
        return self.path / "copies" / f"{name}-copy{copy}.pt"

    def start_path(self, name: str) -> Path:
        return self.path / "copies" / f"{name}-start.pt"

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
