"""Stopping by a signal: SIGTERM (what a scheduler sends at a time limit, a preemption or
``scancel``) and SIGINT (Ctrl-C) become :class:`Interrupted`, so that a run ends with one line
and the exit code ``128 + signal`` instead of a traceback or a silent exit 0.

Nothing needs saving when it happens: every file is written atomically and a level's record
last, so the finished levels are on disk and the same command resumes after them."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """Raised where the main thread is when a stop signal arrives (a BaseException, so that no
    ``except Exception`` on the way, Lightning's included, takes it for an error to handle)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, the first SIGTERM or SIGINT raises :class:`Interrupted`; later ones are
    ignored while the block unwinds (closing W&B, releasing locks). Lightning adds its own SIGTERM
    handler during ``Trainer.fit`` and calls this one after it."""
    stopping: list[int] = []  # a flag rather than SIG_IGN: Lightning re-installs this handler after fit

    def stop(signum: int, _: FrameType | None) -> None:
        if not stopping:
            stopping.append(signum)
            raise Interrupted(signum)

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
