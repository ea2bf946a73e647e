"""Seeds on the command line: ``--seed 3`` for a run, ``--seeds 0-4,7`` for a sweep."""

from __future__ import annotations

import re

from ticketbench.errors import ConfigError

DIGITS = re.compile(r"[0-9]+")  # ASCII only: int() would also read other scripts' digits
MAX_SEED = 2**32 - 1
MAX_SWEEP_SEEDS = 10_000


def parse_seeds(text: str) -> list[int]:
    """``0-4``, ``0,3,7`` or a mix (``0-2,7``) as a list of distinct seeds in the order given."""
    seeds: dict[int, None] = {}
    for part in (p.strip() for p in text.split(",")):
        lo, sep, hi = part.partition("-")
        if not DIGITS.fullmatch(lo) or (sep and not DIGITS.fullmatch(hi)):
            raise ConfigError(f"--seeds: {part!r} is not a seed or a range; valid: 0-4, 0,3,7 or 0-2,7")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first or last > MAX_SEED:
            raise ConfigError(f"--seeds: {part!r} is not an increasing range of seeds from 0 to {MAX_SEED}")
        if len(seeds) + last - first + 1 > MAX_SWEEP_SEEDS:
            raise ConfigError(f"--seeds {text!r}: more than {MAX_SWEEP_SEEDS} seeds in one sweep")
        seeds.update(dict.fromkeys(range(first, last + 1)))
    return list(seeds)
