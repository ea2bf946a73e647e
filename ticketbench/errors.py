"""The errors a user of ticketbench is told in one line, and the checks of public arguments.

``ConfigError`` (a ``ValueError``): a value is wrong — a task file, an override, a claims file, an
argument of the public API. ``ArgumentTypeError`` (a ``ConfigError`` and a ``TypeError``): an
argument of the public API has the wrong type. Both are raised before anything is written.
``RunError``: a run directory cannot be trained, read or combined as asked. ``DataError``: a
dataset cannot be found, downloaded or read. The command line prints any of them in one line and
exits with status 2."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class ConfigError(ValueError):
    """A task file, an override or an argument is invalid; the message is one line for the user."""


class ArgumentTypeError(ConfigError, TypeError):
    """An argument of the public API has the wrong type; the message names it and what it takes."""


class RunError(RuntimeError):
    """A run cannot proceed (e.g. a control whose winning-ticket masks do not exist yet), or a run
    directory was edited or damaged; the message says what to do."""


class DataError(RuntimeError):
    """The dataset cannot be found, downloaded or read; the message says what to do."""


def whole(owner: str, name: str, value: Any, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` as a whole number in [minimum, maximum], or the error naming ``owner``'s ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{owner}: {name} must be a whole number, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigError(f"{owner}: {name} must be {bound}, got {value}")
    return value


def number(owner: str, name: str, value: Any) -> float:
    """``value`` as a real number (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{owner}: {name} must be a number, got {value!r}")
    return float(value)


def text(owner: str, name: str, value: Any, optional: bool = False) -> str | None:
    """``value`` as a string (None too when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        kind = "a string or None" if optional else "a string"
        raise ArgumentTypeError(f"{owner}: {name} must be {kind}, got {value!r}")
    return value


def names(owner: str, name: str, value: Any) -> tuple[str, ...]:
    """``value`` as a tuple of strings: a list of names, not one string (read as its characters)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise ArgumentTypeError(f"{owner}: {name} must be a list of names, got {value!r}")
    found = tuple(value)
    wrong = [v for v in found if not isinstance(v, str)]
    if wrong:
        raise ArgumentTypeError(f"{owner}: {name} must hold names (strings), got {wrong[0]!r}")
    return found
