"""Fault injection for the reliability tests: named points in the code where a test can make a
run pause (so that it can be killed exactly there) or fail as if the disk were full.

``TICKETBENCH_FAULT`` holds ``ACTION:PATTERN``; the first point whose name matches the shell
pattern triggers it:

- ``pause:PATTERN`` prints ``paused at <name>`` to stderr and sleeps until the process is killed;
- ``enospc:PATTERN`` raises ``OSError(ENOSPC)``, the error a full disk gives.

Points: ``write <dir>/<file>`` in the middle of every atomic write (the temporary file written
and flushed, not yet renamed), and ``level <L> step <S>`` after each validation of a level.
Unset (the normal case), a point costs one dictionary lookup.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from fnmatch import fnmatchcase

VARIABLE = "TICKETBENCH_FAULT"
ACTIONS = ("pause", "enospc")


def fault_point(name: str) -> None:
    """Trigger the fault ``TICKETBENCH_FAULT`` asks for when ``name`` matches its pattern."""
    spec = os.environ.get(VARIABLE)
    if not spec:
        return
    action, _, pattern = spec.partition(":")
    if action not in ACTIONS:
        raise ValueError(f"{VARIABLE}={spec!r}: action must be one of {', '.join(ACTIONS)}")
    if not fnmatchcase(name, pattern):
        return
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name.split(" ", 1)[-1])
    print(f"paused at {name}", file=sys.stderr, flush=True)
    while True:
        time.sleep(60)
