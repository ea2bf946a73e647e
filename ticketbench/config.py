"""Typed task configuration: YAML task files -> validated, frozen dataclasses."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ticketbench.errors import ConfigError

PRECISIONS = ("32-true", "bf16-mixed")  # as Lightning names them; see ticketbench.training.arithmetic
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")  # torch.compile modes
BN_MODES = ("recompute", "interpolate")  # BatchNorm statistics along a path; see ticketbench.interpolation


def _option(default: Any) -> Any:
    """A field added after the first schema: hashed into the fingerprint only when not at its default,
    so adding an option never renames existing run directories."""
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple default")
    return field(default=default, metadata={"hash_if_set": True})


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer settings and the step-wise learning-rate schedule.

    The learning rate at absolute step ``s`` is ``lr * gamma ** (number of milestones <= s)``, so
    a level that starts at the rewind step k continues the schedule from k. ``at_rewind`` says
    what the optimizer state is at the start of a rewound level: ``fresh`` (empty momentum / Adam
    moments, as open_lth) or ``rewind`` (the state captured at step k, alongside θ_k).
    """

    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = _option(())
    gamma: float = _option(0.1)
    at_rewind: str = _option("fresh")

    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {"name": ("adam", "sgd"), "at_rewind": ("fresh", "rewind")}

    def lr_at(self, step: int) -> float:
        return self.lr * self.gamma ** sum(step >= m for m in self.milestones)


@dataclass(frozen=True)
class PruningConfig:
    """How each round selects weights to remove.

    ``scope`` is ``layerwise`` (each layer loses ``rates[role]`` of its remaining weights, the
    role being the one the model gives the layer) or ``global`` (one ranking over all prunable
    weights, removing ``rates["all"]`` of the remaining total). Parameters whose names match a
    pattern of ``exclude`` (fnmatch, e.g. ``"*.shortcut.*"``) are never pruned.
    """

    scope: str = "layerwise"
    rates: dict[str, float] = field(default_factory=lambda: {"hidden": 0.2, "output": 0.1})
    exclude: tuple[str, ...] = _option(())  # glob patterns of parameter names never pruned

    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {"scope": ("layerwise", "global")}


@dataclass(frozen=True)
class TaskConfig:
    """One benchmark task: data, model, training protocol and pruning schedule."""

    name: str
    description: str
    dataset: str
    model: str
    normalize: str = "meanstd"
    val_size: int = 5000
    batch_size: int = 60
    max_steps: int = 50_000
    eval_every: int = 100
    rewind_step: int = 0
    levels: int = 17
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    split: str = _option("random")      # validation hold-out: random, or stratified (equal per class)
    augment: str = _option("none")      # none, or crop-flip (random 4-pixel-padded crop + horizontal flip)
    precision: str = _option("32-true")  # 32-true, or bf16-mixed (see ticketbench.training.arithmetic)
    compile: str = _option("off")       # torch.compile of forward + loss; rounding only, not fingerprinted

    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "dataset": ("mnist", "cifar10", "mnist1d"),
        "normalize": ("meanstd", "none"),
        "split": ("random", "stratified"),
        "augment": ("none", "crop-flip"),
        "precision": PRECISIONS,
        "compile": COMPILE_MODES,
    }

    def fingerprint(self) -> str:
        """Short hash of everything that changes what a level trains (not seed, arm or levels)."""
        training = {k: v for k, v in _hash_view(self).items() if k not in ("levels", "description", "compile")}
        text = json.dumps(training, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


def _hash_view(obj: Any) -> Any:
    """``dataclasses.asdict`` without the later options that sit at their defaults."""
    if not dataclasses.is_dataclass(obj):
        return list(obj) if isinstance(obj, tuple) else obj
    return {f.name: _hash_view(getattr(obj, f.name)) for f in dataclasses.fields(obj)
            if not (f.metadata.get("hash_if_set") and getattr(obj, f.name) == f.default)}


def _check_choice(cls: type, key: str, value: Any, where: str) -> None:
    choices = getattr(cls, "CHOICES", {}).get(key)
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: {key}={value!r} is not valid; choose one of {', '.join(choices)}")


def _coerce(kind: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the annotated type ``kind`` (int, float, str, dict[str, float])."""
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_mapping(kind, value, where)
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = typing.get_args(kind)[0]
        return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if typing.get_origin(kind) is dict:
        if not isinstance(value, dict) or not value:
            raise ConfigError(f"{where}: expected a non-empty mapping of name: number, got {value!r}")
        return {str(k): _coerce(float, v, f"{where}.{k}") for k, v in value.items()}
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
        values[name] = _coerce(hints[name], value, f"{where}.{name}")
        _check_choice(cls, name, values[name], where)
    try:
        return cls(**values)
    except TypeError as err:  # a required key is missing
        raise ConfigError(f"{where}: {err}") from None


def packaged_names(package: str) -> list[str]:
    """Stems of the YAML files shipped in ``package``."""
    files = resources.files(package).iterdir()
    return sorted(p.name[: -len(".yaml")] for p in files if p.name.endswith(".yaml"))


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a file a user gave, or a one-line :class:`ConfigError` naming it."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} {path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path}: is a directory; expected a YAML file") from None
    except OSError as err:
        raise ConfigError(f"{what} {path}: cannot be read ({err.strerror})") from None


def parse_yaml(text: str, where: str) -> Any:
    """YAML text as Python objects, or a one-line :class:`ConfigError` with the line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML{at} ({problem})") from None


def read_yaml_source(package: str, name_or_path: str, what: str) -> tuple[str, str]:
    """Text and display name of a YAML file given by path, or shipped in ``package`` under that name."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return read_text(path, what), str(path)
    names = packaged_names(package)
    if name_or_path not in names:
        raise ConfigError(f"unknown {what} {name_or_path!r}; valid {what}s: {', '.join(names)}")
    return resources.files(package).joinpath(f"{name_or_path}.yaml").read_text(), f"{what} {name_or_path}"


def task_names() -> list[str]:
    """Names of the packaged benchmark tasks."""
    return packaged_names("ticketbench.tasks")


def load_task(name_or_path: str) -> TaskConfig:
    """Load a packaged task by name, or a task YAML file by path, and validate it."""
    text, where = read_yaml_source("ticketbench.tasks", name_or_path, "task")
    data = parse_yaml(text, where)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    task = from_mapping(TaskConfig, data, where)
    validate(task, where)
    return task


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def validate(task: TaskConfig, where: str = "config") -> None:
    """Range checks that types alone cannot express."""
    if not NAME.fullmatch(task.name):
        raise ConfigError(f"{where}: name={task.name!r} cannot name a directory of results; use up to 64 letters, "
                          "digits, '.', '_' or '-', starting with a letter or digit")
    positive = {"batch_size": task.batch_size, "max_steps": task.max_steps,
                "eval_every": task.eval_every, "levels": task.levels}
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{where}: {key} must be >= 1, got {value}")
    if task.val_size < 0:
        raise ConfigError(f"{where}: val_size must be >= 0 (0: no validation, no early stop), got {task.val_size}")
    if not 0 <= task.rewind_step < task.max_steps:
        raise ConfigError(f"{where}: rewind_step must be in [0, max_steps), got {task.rewind_step}")
    for role, rate in task.pruning.rates.items():
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"{where}: pruning.rates.{role} must be in [0, 1), got {rate}")
    if task.pruning.scope == "global" and set(task.pruning.rates) != {"all"}:
        raise ConfigError(f"{where}: global pruning takes one rate named 'all', got {sorted(task.pruning.rates)}")
    opt = task.optimizer
    for key in ("lr", "gamma"):
        if getattr(opt, key) <= 0:
            raise ConfigError(f"{where}: optimizer.{key} must be > 0, got {getattr(opt, key)}")
    if not 0 <= opt.momentum < 1:
        raise ConfigError(f"{where}: optimizer.momentum must be in [0, 1), got {opt.momentum}")
    if opt.weight_decay < 0:
        raise ConfigError(f"{where}: optimizer.weight_decay must be >= 0, got {opt.weight_decay}")
    steps = list(task.optimizer.milestones)
    if steps != sorted(set(steps)) or any(m <= 0 for m in steps):
        raise ConfigError(f"{where}: optimizer.milestones must be increasing positive steps, got {steps}")


def override(task: TaskConfig, **changes: Any) -> TaskConfig:
    """Return ``task`` with top-level fields replaced (``None`` values are ignored) and re-validated."""
    return apply_overrides(task, [(k, v) for k, v in changes.items() if v is not None], "command line")


def plain(task: TaskConfig) -> dict[str, Any]:
    """The task as nested dicts, lists and scalars (the shape of a task YAML file)."""
    return {f.name: _plain(getattr(task, f.name)) for f in dataclasses.fields(task)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


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
        data[key] = _plain(_coerce(kind, value, where))
        _check_choice(cls, key, data[key], where)
    elif dataclasses.is_dataclass(kind):
        _assign(kind, data[key], rest, value, where)
    elif typing.get_origin(kind) is dict and len(rest) == 1:
        data[key] = {**data[key], rest[0]: _coerce(float, value, where)}
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
