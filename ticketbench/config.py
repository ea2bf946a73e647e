"""Typed task configuration: YAML task files -> validated, frozen dataclasses."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from ticketbench.errors import ConfigError
from ticketbench.typed_mapping import from_mapping, to_plain
from ticketbench.yaml_files import packaged_names, parse_yaml, read_yaml_source

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


def plain(task: TaskConfig) -> dict[str, Any]:
    """The task as nested dicts, lists and scalars (the shape of a task YAML file)."""
    return {f.name: to_plain(getattr(task, f.name)) for f in dataclasses.fields(task)}
