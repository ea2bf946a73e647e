"""Move a large file (cifar10.npz, 168 MB) in hash-checked pieces, e.g. to a machine that takes
at most so many megabytes per transfer.

    python benchmarks/gpu/pieces.py split ../shared/data/cifar10.npz pieces/ --mb 60
    python benchmarks/gpu/pieces.py join pieces/ data/      # -> data/cifar10.npz, every hash checked

``split`` writes ``<name>.partNN`` files and ``<name>.manifest.json`` (the SHA-256 of every piece
and of the whole file); ``join`` checks each piece, assembles the file under a temporary name,
checks the whole and only then renames it into place. A missing or damaged piece is named in a
one-line error (exit 2) and nothing is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def split(source: Path, directory: Path, megabytes: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    size = megabytes * 1_000_000
    pieces = []
    with source.open("rb") as f:
        for i, chunk in enumerate(iter(lambda: f.read(size), b"")):
            piece = directory / f"{source.name}.part{i:02d}"
            piece.write_bytes(chunk)
            pieces.append(piece)
    manifest = {"name": source.name, "sha256": _sha256(source),
                "pieces": [{"file": p.name, "sha256": _sha256(p)} for p in pieces]}
    (directory / f"{source.name}.manifest.json").write_text(json.dumps(manifest, indent=2))
    return pieces


def join(directory: Path, target_dir: Path) -> Path:
    manifests = sorted(directory.glob("*.manifest.json"))
    if len(manifests) != 1:
        raise ValueError(f"{directory}: expected one *.manifest.json, found {len(manifests)}")
    manifest = json.loads(manifests[0].read_text())
    for piece in manifest["pieces"]:
        path = directory / piece["file"]
        if not path.is_file():
            raise ValueError(f"{path}: piece missing")
        if _sha256(path) != piece["sha256"]:
            raise ValueError(f"{path}: SHA-256 differs from the manifest; copy this piece again")
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / manifest["name"]
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as out:
        for piece in manifest["pieces"]:
            out.write((directory / piece["file"]).read_bytes())
    if _sha256(partial) != manifest["sha256"]:
        partial.unlink()
        raise ValueError(f"{target}: the assembled file's SHA-256 differs from the manifest")
    partial.replace(target)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description="split a file into hash-checked pieces, or join them")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split")
    s.add_argument("source", type=Path)
    s.add_argument("directory", type=Path)
    s.add_argument("--mb", type=int, default=60, help="piece size in MB (default 60)")
    j = sub.add_parser("join")
    j.add_argument("directory", type=Path)
    j.add_argument("target_dir", type=Path)
    args = parser.parse_args()
    try:
        if args.command == "split":
            print("\n".join(str(p) for p in split(args.source, args.directory, args.mb)))
        else:
            print(join(args.directory, args.target_dir))
    except (OSError, ValueError) as err:
        print(f"pieces: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
