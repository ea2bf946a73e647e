"""The values of options: argparse types (a bad value is a usage error of the command) and the
lists checked once a command runs (a bad one is a ``ConfigError``)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ticketbench.controls import CONTROLS
from ticketbench.errors import ConfigError
from ticketbench.seeds import DIGITS, MAX_SEED


def positive(text: str) -> int:
    value = int(text) if DIGITS.fullmatch(text) else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def seed(text: str) -> int:
    if not DIGITS.fullmatch(text) or int(text) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to {MAX_SEED}, got {text!r}")
    return int(text)


def directory(text: str) -> Path:
    """A directory argument: refused at once when a file of that name is in the way."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; expected a directory")
    return path


def tolerance(text: str) -> float:
    if not 0 <= _float(text) < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number of pp >= 0, got {text!r}")
    return float(text)


def minutes(text: str) -> float:
    if not 0 < _float(text) < math.inf:
        raise argparse.ArgumentTypeError(f"expected minutes > 0 (e.g. 30 or 0.5), got {text!r}")
    return float(text)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def path_points(text: str) -> int:
    value = positive(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"a path needs at least 2 points, got {text!r}")
    return value


def int_list(text: str, option: str) -> list[int]:
    """Comma-separated whole numbers >= 0, without repeats, as given to ``option``."""
    parts = [v.strip() for v in text.split(",")]
    values = [int(v) for v in parts] if all(DIGITS.fullmatch(v) for v in parts) else []
    if not values:
        raise ConfigError(f"{option} {text!r}: expected comma-separated whole numbers >= 0, e.g. 0,3,7")
    return list(dict.fromkeys(values))


def controls(text: str) -> list[str]:
    """Comma-separated arms (``--control``, ``--arms``), without repeats."""
    named = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in named if c not in CONTROLS]
    if not named or unknown:
        raise ConfigError(f"unknown control {unknown[0] if unknown else text!r}; valid: {', '.join(CONTROLS)} "
                          "(several comma-separated)")
    return list(dict.fromkeys(named))
