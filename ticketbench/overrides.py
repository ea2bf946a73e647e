"""Changing a task: ``--set KEY=VALUE``, a ``--config`` file of any subset of a task's keys, and
:func:`override` for the command line's own options; every change checked, the result validated."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from ticketbench.config import TaskConfig, plain, validate
from ticketbench.errors import ConfigError
from ticketbench.typed_mapping import check_choice, coerce, from_mapping, to_plain
from ticketbench.yaml_files import parse_yaml, read_text


def override(task: TaskConfig, **changes: Any) -> TaskConfig:
    """Return ``task`` with top-level fields replaced (``None`` values are ignored) and re-validated."""
    return apply_overrides(task, [(k, v) for k, v in changes.items() if v is not None], "command line")


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"optimizer.lr=1e-3"`` -> ``("optimizer.lr", 0.001)``; the value is read as YAML (numbers in
    exponent notation included), so lists and mappings work too: ``milestones=[100,200]``."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. optimizer.lr=1e-3")
    for number in (int, float):
        try:
            return key.strip(), number(raw)
        except ValueError:
            pass
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        return key.strip(), raw


def flatten(mapping: dict[str, Any], cls: type | None = None, prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted assignments of an override mapping; nested mappings are descended into while they
    name a sub-configuration (``optimizer``, ``pruning``), and assigned whole below that."""
    cls = cls or TaskConfig
    hints = typing.get_type_hints(cls)
    pairs: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        kind = hints.get(key)
        if isinstance(value, dict) and dataclasses.is_dataclass(kind):
            pairs += flatten(value, kind, f"{prefix}{key}.")
        else:
            pairs.append((f"{prefix}{key}", value))
    return pairs


def _assign(cls: type, data: dict[str, Any], keys: list[str], value: Any, where: str) -> None:
    """Set ``data[keys...] = value`` after checking the key path and the value against ``cls``."""
    key, rest = keys[0], keys[1:]
    fields = [f.name for f in dataclasses.fields(cls)]
    if key not in fields:
        raise ConfigError(f"{where}: unknown key {key!r}; valid keys here: {', '.join(fields)}")
    kind = typing.get_type_hints(cls)[key]
    if not rest and dataclasses.is_dataclass(kind) and isinstance(value, dict):
        for sub, sub_value in value.items():  # merged key by key, as a --config file is
            _assign(kind, data[key], [str(sub)], sub_value, where)
    elif not rest:
        data[key] = to_plain(coerce(kind, value, where))
        check_choice(cls, key, data[key], where)
    elif dataclasses.is_dataclass(kind):
        _assign(kind, data[key], rest, value, where)
    elif typing.get_origin(kind) is dict and len(rest) == 1:
        data[key] = {**data[key], rest[0]: coerce(float, value, where)}
    else:
        raise ConfigError(f"{where}: {key!r} has no sub-key {'.'.join(rest)!r}")


def apply_overrides(task: TaskConfig, assignments: list[tuple[str, Any]], source: str) -> TaskConfig:
    """``task`` with dotted-key assignments applied, each checked (key, type, choices), then
    range-validated as a whole; ``source`` names where they came from in error messages."""
    data = plain(task)
    for dotted, value in assignments:
        shown = dotted if dotted.isprintable() else repr(dotted)  # a message stays one line
        _assign(TaskConfig, data, dotted.split("."), value, f"{source} {shown}")
    updated = from_mapping(TaskConfig, data, source)
    validate(updated, source)
    return updated


def read_overrides(path: Path) -> list[tuple[str, Any]]:
    """The assignments of an override file: a YAML mapping with any subset of a task's keys."""
    data = parse_yaml(read_text(path, "--config"), f"--config {path}")
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of task keys, e.g. 'max_steps: 1000'")
    return flatten(data)
