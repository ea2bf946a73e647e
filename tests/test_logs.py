"""Where ticketbench's progress lines go: standard output in a program that configured no
logging, that program's own handlers otherwise; a level of WARNING silences them."""

from __future__ import annotations

import subprocess
import sys

LINE = "logging.getLogger('ticketbench.engine.observers').info('[imp seed 0] level  0')"


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)


def test_without_logging_configured_the_lines_print_on_stdout() -> None:
    done = _python(f"import logging, ticketbench; {LINE}")
    assert (done.stdout, done.stderr) == ("[imp seed 0] level  0\n", "")


def test_a_program_that_configures_logging_receives_the_lines_in_its_handlers() -> None:
    done = _python("import logging, sys; logging.basicConfig(stream=sys.stderr, level=logging.INFO, "
                   f"format='%(name)s: %(message)s'); import ticketbench; {LINE}")
    assert (done.stdout, done.stderr) == ("", "ticketbench.engine.observers: [imp seed 0] level  0\n")


def test_a_level_of_warning_silences_them() -> None:
    done = _python(f"import logging, ticketbench; logging.getLogger('ticketbench').setLevel(logging.WARNING); {LINE}")
    assert (done.stdout, done.stderr) == ("", "")
