"""Options declared once, as dataclass fields: argparse options are generated from them, the
parsed arguments come back as the same dataclass, and a dataclass of options is written back
as the argv that parses to it (the command a sweep's job runs).

A field made by :func:`option` carries its flags, help and argparse settings in its metadata; a
field made by :func:`group` nests a dataclass of options shared by several commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

T = typing.TypeVar("T")


class Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line and a pointer to the help, instead of the usage text."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def option(*flags: str, default: Any = None, help: str | None = None, applies: str | None = None,
           **settings: Any) -> Any:
    """A field for one option: ``flags`` as argparse takes them (none: a positional named as the
    field), ``help``, further argparse ``settings`` (type, choices, metavar, action, nargs), and
    ``applies``: "imp" or "method" for an option that a job's argv writes only for that kind of run."""
    metadata = {"flags": flags, "help": help, "applies": applies, "settings": settings}
    if isinstance(default, list):
        return dataclasses.field(default_factory=default.copy, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def group(options: type, title: str | None = None) -> Any:
    """A field nesting the dataclass of options ``options`` (an argument group when ``title``)."""
    return dataclasses.field(default_factory=options, metadata={"group": options, "title": title})


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, options: type) -> None:
    """Add the options of the dataclass ``options`` to ``parser``, in declaration order."""
    for f in dataclasses.fields(options):
        if "group" in f.metadata:
            title = f.metadata["title"]
            add_options(parser.add_argument_group(title) if title else parser, f.metadata["group"])
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        settings = {"help": f.metadata["help"], "default": default, **f.metadata["settings"]}
        if f.metadata["flags"]:
            parser.add_argument(*f.metadata["flags"], dest=f.name, **settings)
        else:
            parser.add_argument(f.name, **settings)


def from_namespace(options: type[T], namespace: argparse.Namespace) -> T:
    """The dataclass ``options`` holding the parsed ``namespace``."""
    return options(**{f.name: from_namespace(f.metadata["group"], namespace) if "group" in f.metadata
                      else getattr(namespace, f.name) for f in dataclasses.fields(options)})


def to_argv(options: Any, kind: str | None = None) -> list[str]:
    """The argv that parses back to ``options``: every option that is set (not None, a False flag
    or empty; a ``--x/--no-x`` option either way), in declaration order, paths made absolute; an
    option that ``applies`` to IMP arms or to a method only is written for that ``kind`` of run (by
    default: "method" when a method is set)."""
    if kind is None:
        kind = "method" if getattr(options, "method", None) else "imp"
    argv: list[str] = []
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if "group" in f.metadata:
            argv += to_argv(value, kind)
        elif f.metadata["applies"] in (None, kind):
            argv += _written(f.metadata["flags"], f.metadata["settings"].get("action"), value)
    return argv


def _written(flags: tuple[str, ...], action: Any, value: Any) -> list[str]:
    """One option as argv: ``flags`` (none for a positional) with ``value``."""
    if action is argparse.BooleanOptionalAction and value is not None:
        return [flags[0]] if value else ["--no-" + flags[0].removeprefix("--")]
    if value is None or value is False:
        return []
    if action == "store_true":
        return [flags[0]]
    values = value if isinstance(value, (list, tuple)) else [value]
    texts = [str(v.resolve()) if isinstance(v, Path) else str(v) for v in values]
    if not flags:
        return texts
    return [part for text in texts for part in (flags[0], text)]
