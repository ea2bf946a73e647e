"""The ``ticketbench`` command: one module per command (or family of commands), each registering
its options dataclass and the function that runs it (:mod:`ticketbench.cli.registry`); here the
entry point, which turns every expected failure into one line and an exit code."""

from __future__ import annotations

import errno
import importlib
import logging
import os
import signal
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from ticketbench.cli.registry import Command, parse, parser
from ticketbench.errors import ConfigError, DataError, RunError
from ticketbench.interrupt import Interrupted, stop_on_signals
from ticketbench.logs import lines_on_stdout

__all__ = ["main", "parser"]

for _module in ("run", "sweep", "instability", "browse", "verdicts"):  # each registers its commands, in help order
    importlib.import_module(f"{__name__}.{_module}")


@contextmanager
def _settings_kept() -> Iterator[None]:
    """Put back what a command changes for the whole process (the warning filters, Lightning's log
    level, torch's choice of kernels under --deterministic, where ticketbench's lines go), so that
    a program can call ``main`` more than once."""
    import torch

    lightning = logging.getLogger("lightning.pytorch")
    level = lightning.level
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    try:
        with warnings.catch_warnings(), lines_on_stdout():
            yield
    finally:
        lightning.setLevel(level)
        if (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) != \
                (deterministic, warn_only):  # only when changed: the call imports torch's compiler (seconds)
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark


def main(argv: list[str] | None = None) -> int:
    chosen: Command | None = None
    try:
        with stop_on_signals(), _settings_kept():
            chosen, options = parse(argv)
            return chosen.run(options) or 0
    except Interrupted as stop:
        kept = chosen.kept if chosen else None
        what = f"{kept} is kept: run the same command to resume" if kept else "nothing was left half-written"
        print(f"ticketbench: stopped by {stop.name}; {what}", file=sys.stderr)
        return stop.exit_code
    except (ConfigError, DataError, RunError) as err:
        print(f"ticketbench: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of our output went away (e.g. `ticketbench runs | head -1`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 128 + signal.SIGPIPE
    except OSError as err:  # a full disk or a write refused: the atomic writes kept every finished file
        print(f"ticketbench: error: {_os_error(err)}", file=sys.stderr)
        return 2


def _os_error(err: OSError) -> str:
    where = f" ({err.filename})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"disk full while writing{where}; every finished level is intact: free space and run the same "
                "command again to resume")
    return f"{err.strerror or err}{where}"
