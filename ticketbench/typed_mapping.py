"""Frozen dataclasses built from YAML mappings and checked by their annotations (int, float, str,
tuples, ``dict[str, float]``, nested dataclasses, and a class's ``CHOICES``), and back."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from ticketbench.errors import ConfigError


def check_choice(cls: type, key: str, value: Any, where: str) -> None:
    choices = getattr(cls, "CHOICES", {}).get(key)
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: {key}={value!r} is not valid; choose one of {', '.join(choices)}")


def coerce(kind: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the annotated type ``kind`` (int, float, str, dict[str, float])."""
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_mapping(kind, value, where)
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = typing.get_args(kind)[0]
        return tuple(coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if typing.get_origin(kind) is dict:
        if not isinstance(value, dict) or not value:
            raise ConfigError(f"{where}: expected a non-empty mapping of name: number, got {value!r}")
        return {str(k): coerce(float, v, f"{where}.{k}") for k, v in value.items()}
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")


def from_mapping(cls: type, mapping: dict[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(fields)}")
    values = {}
    for name, value in mapping.items():
        values[name] = coerce(hints[name], value, f"{where}.{name}")
        check_choice(cls, name, values[name], where)
    try:
        return cls(**values)
    except TypeError as err:  # a required key is missing
        raise ConfigError(f"{where}: {err}") from None


def to_plain(value: Any) -> Any:
    """Dataclasses, tuples and mappings as nested dicts, lists and scalars (the shape of YAML)."""
    if dataclasses.is_dataclass(value):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value
