"""The commands of ``ticketbench``: each registers its name, help line, options dataclass and
the function that runs it; the command line is generated from them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ticketbench.cli.options import Parser, add_options, from_namespace


@dataclass(frozen=True)
class Command:
    """One command: ``run`` takes its parsed options and returns the exit code (None: 0)."""

    name: str
    options: type
    run: Callable[[Any], int | None]
    help: str
    aliases: tuple[str, ...] = ()
    kept: str | None = None  # what a stop signal leaves to resume from (None: nothing half-written)


COMMANDS: dict[str, Command] = {}  # in the order of the help


def command(name: str, options: type, help: str, aliases: tuple[str, ...] = (),
            kept: str | None = None) -> Callable[[Callable[[Any], int | None]], Callable[[Any], int | None]]:
    """Register the decorated function as the command ``name`` taking the dataclass ``options``."""
    def register(run: Callable[[Any], int | None]) -> Callable[[Any], int | None]:
        COMMANDS[name] = Command(name, options, run, help, aliases, kept)
        return run
    return register


def parser() -> Parser:
    """The ``ticketbench`` parser: one sub-parser per registered command."""
    top = Parser(prog="ticketbench", description="Lottery Ticket Hypothesis benchmarks.")
    sub = top.add_subparsers(dest="command", required=True)
    for chosen in COMMANDS.values():
        add_options(sub.add_parser(chosen.name, aliases=list(chosen.aliases), help=chosen.help), chosen.options)
    return top


def parse(argv: Sequence[str] | None = None) -> tuple[Command, Any]:
    """The command ``argv`` names and its options (exits 2 on a usage error, 0 after --help)."""
    namespace = parser().parse_args(argv)
    chosen = next(c for c in COMMANDS.values() if namespace.command in (c.name, *c.aliases))
    return chosen, from_namespace(chosen.options, namespace)
