"""The ``ticketbench`` command's entry point: the installed script, ``python -m ticketbench``, and
the jobs a sweep starts. A stop signal is taken from the first instruction here (before it only
the interpreter's start-up and the package's light ``__init__`` run), so that Ctrl-C or a
scheduler's SIGTERM while the modules still load ends in one line, not a traceback; once the
command has ended, one that arrives while the interpreter exits changes nothing."""

from __future__ import annotations

import signal
import sys

from ticketbench.interrupt import Interrupted, stop_on_signals


def console() -> int:
    try:
        with stop_on_signals():
            from ticketbench.cli import main

            code = main()
    except Interrupted as stop:
        print(f"ticketbench: stopped by {stop.name} while starting; nothing was written", file=sys.stderr)
        code = stop.exit_code
    for sig in (signal.SIGINT, signal.SIGTERM):  # the command is over: its exit status stands
        signal.signal(sig, signal.SIG_IGN)
    return code


if __name__ == "__main__":
    sys.exit(console())
