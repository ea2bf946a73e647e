"""Where the package's progress and status lines go: the ``ticketbench`` logger, at INFO.

Every module logs to ``logging.getLogger(__name__)``, a child of ``ticketbench``. A program that
configures logging itself (the root logger has a handler when ticketbench is imported) receives
the lines through its own handlers; otherwise they are printed on standard output, one message
per line, as the command line prints them. ``logging.getLogger("ticketbench").setLevel(
logging.WARNING)`` silences them."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

ROOT = "ticketbench"


class _Stdout(logging.StreamHandler):
    """The message alone, on whatever ``sys.stdout`` is when it is written (a redirected stream,
    a test's capture)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def show_lines() -> None:
    """Print the package's lines on standard output, unless the program routes logging itself."""
    logger = logging.getLogger(ROOT)
    if logging.getLogger().hasHandlers() or _printing(logger):
        return
    logger.addHandler(_Stdout())
    logger.setLevel(logging.INFO)
    logger.propagate = False


@contextmanager
def lines_on_stdout() -> Iterator[None]:
    """The command line: the package's lines on standard output whatever the process configured,
    put back as they were afterwards."""
    logger = logging.getLogger(ROOT)
    kept = logger.level, logger.propagate
    handler = None if _printing(logger) else _Stdout()
    if handler:
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        if handler:
            logger.removeHandler(handler)
        logger.setLevel(kept[0])
        logger.propagate = kept[1]


def _printing(logger: logging.Logger) -> bool:
    return any(isinstance(h, _Stdout) for h in logger.handlers)
