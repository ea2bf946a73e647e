"""Iterative magnitude pruning on your own LightningModule and DataModule, into ordinary run
directories, so that ``ticketbench table / score / check / report / runs`` read them as they read
the suite's tasks (``score --references my_claims.yaml`` for your own claims)::

    experiment = LotteryExperiment("lenet5-mnist", prune=["conv1.weight", "fc1.weight", "fc2.weight"],
                                   levels=6, max_steps=3000, rewind_step=200)
    experiment.run(lambda: LeNet5(), MNISTData(), seed=0, controls=("none", "reinit"), out="runs")

Every level is one ``Trainer.fit`` with the :class:`~ticketbench.LotteryTicket` callback: level 0
trains the dense module and captures θ_k at ``rewind_step``; level L prunes the final weights of
level L-1 by magnitude (``rate`` of each tensor's remaining weights, or of all of them with
``scope="global"``), rewinds the kept weights to θ_k (parameters and buffers), and trains
``max_steps - rewind_step`` steps. The module is built by your factory after the global seed is
set, so θ0 and the data order of your loaders follow ``seed``; controls are those of the suite
(``reinit``: the ticket's masks on a fresh initialisation; ``random-prune``: random masks with the
ticket's per-tensor counts, on θ_k). A level's record is written last: a killed run resumes after
its last finished level with the same call.

What your module provides: ``self.log(monitor, ...)`` in validation (the early-stop point; None
for none) and ``self.log(test_metric, ...)`` in ``test_step``, an accuracy as a fraction in [0, 1]
(torchmetrics' ``Accuracy`` is one). A learning-rate schedule restarts at every level unless your
``configure_optimizers`` positions it with the callback's ``start_step``
(``trainer.callbacks``); the suite's own tasks continue theirs from step k.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from torch import nn

from ticketbench.config import NAME, PruningConfig
from ticketbench.controls import CONTROLS, TICKET
from ticketbench.engine.arms import Arm, imp_arm
from ticketbench.engine.loop import Observer, run_arms
from ticketbench.engine.module_runner import ModuleNetwork, ModuleRunner
from ticketbench.engine.observers import Terminal, Tracking
from ticketbench.errors import ArgumentTypeError, ConfigError, RunError, names, number, text, whole
from ticketbench.storage.run_dir import RunDir
from ticketbench.wandb_mode import WandbOptions, resolve_mode

JSON_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class LotteryExperiment:
    """The protocol of an IMP experiment on a user's module (its fingerprint names the run
    directories; ``name`` and ``levels`` do not enter it). ``trainer`` holds further ``L.Trainer``
    arguments with plain values (accelerator, precision, val_check_interval, ...)."""

    name: str
    prune: tuple[str, ...]
    levels: int
    max_steps: int
    rewind_step: int = 0
    rate: float = 0.2
    rates: dict[str, float] = field(default_factory=dict)  # per parameter, instead of ``rate``
    scope: str = "layerwise"
    monitor: str | None = "val_loss"
    mode: str = "min"
    test_metric: str = "test_acc"
    trainer: dict[str, Any] = field(default_factory=dict)
    optimizer_at_rewind: str = "fresh"  # or "rewind": optimizers and schedulers as they were at rewind_step

    def __post_init__(self) -> None:
        owner = "LotteryExperiment"
        object.__setattr__(self, "prune", names(owner, "prune", self.prune))
        text(owner, "name", self.name)
        whole(owner, "levels", self.levels, 1)
        whole(owner, "max_steps", self.max_steps, 1)
        whole(owner, "rewind_step", self.rewind_step, 0)
        number(owner, "rate", self.rate)
        if not isinstance(self.rates, dict) or not all(isinstance(k, str) for k in self.rates):
            raise ArgumentTypeError(f"{owner}: rates must be a dict of parameter names to rates, got {self.rates!r}")
        for key, value in self.rates.items():
            number(owner, f"rates[{key!r}]", value)
        for key in ("scope", "mode", "test_metric", "optimizer_at_rewind"):
            text(owner, key, getattr(self, key))
        text(owner, "monitor", self.monitor, optional=True)
        if not isinstance(self.trainer, dict):
            raise ArgumentTypeError(f"{owner}: trainer must be a dict of Trainer arguments, got {self.trainer!r}")
        problems = [
            (not NAME.fullmatch(self.name), f"name {self.name!r} must be a plain directory name (letters, digits, "
                                            "'.', '_', '-')"),
            (not self.prune, "prune names no parameter"),
            (not 0 <= self.rewind_step < self.max_steps,
             f"rewind_step must be in [0, max_steps), got {self.rewind_step}"),
            (not all(0 <= r < 1 for r in [self.rate, *self.rates.values()]), "rates must be in [0, 1)"),
            (bool(set(self.rates) - set(self.prune)), f"rates names parameters not pruned: "
                                                     f"{sorted(set(self.rates) - set(self.prune))}"),
            (self.scope not in ("layerwise", "global"), f"scope must be layerwise or global, got {self.scope!r}"),
            (self.scope == "global" and bool(self.rates), "global pruning takes one rate, not rates"),
            (self.mode not in ("min", "max"), f"mode must be min or max, got {self.mode!r}"),
            (self.optimizer_at_rewind not in ("fresh", "rewind"),
             f"optimizer_at_rewind must be fresh or rewind, got {self.optimizer_at_rewind!r}"),
            (not all(isinstance(v, JSON_SCALARS) for v in self.trainer.values()),
             "trainer takes plain values (numbers, strings); pass objects to your module instead"),
            (bool(set(self.trainer) & {"max_steps", "callbacks", "logger"}),
             "trainer may not set max_steps, callbacks or logger (the experiment sets them)"),
        ]
        for wrong, what in problems:
            if wrong:
                raise ConfigError(f"LotteryExperiment: {what}")

    def fingerprint(self) -> str:
        view = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("name", "levels")}
        if self.optimizer_at_rewind == "fresh":  # the default keeps the fingerprints it had before the option
            del view["optimizer_at_rewind"]
        return hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()[:8]

    def pruning(self) -> tuple[dict[str, str], PruningConfig]:
        """Each pruned tensor as its own role with its rate (or one global rate)."""
        if self.scope == "global":
            return {n: "all" for n in self.prune}, PruningConfig("global", {"all": self.rate})
        return {n: n for n in self.prune}, PruningConfig("layerwise", {n: self.rates.get(n, self.rate)
                                                                       for n in self.prune})

    def run(self, make_module: Callable[[], L.LightningModule], datamodule: L.LightningDataModule, seed: int = 0,
            controls: Sequence[str] = ("none",), out: str | Path = "runs",
            wandb: WandbOptions | None = None) -> list[RunDir]:
        """Train every level not finished yet of the winning tickets and each control (a control's
        level reads the ticket's mask of that level); return the run directories. ``wandb``: log
        each arm to its W&B run as the suite's tasks do (``WandbOptions(mode="offline")``; None:
        no W&B). Each finished level is a line on the ``ticketbench`` logger (:mod:`ticketbench.logs`)."""
        out = _checked_run_arguments(make_module, datamodule, seed, controls, out)
        chosen = sorted(dict.fromkeys(controls), key=lambda c: c != TICKET.name)
        network = ModuleNetwork(self, make_module)
        if TICKET.name not in chosen and not RunDir.for_arm(out, self, seed, TICKET.arm).path.is_dir():
            raise RunError(f"the controls need the winning tickets in "
                           f"{RunDir.for_arm(out, self, seed, TICKET.arm).path}; include 'none' in controls")
        if wandb is not None:
            wandb = dataclasses.replace(wandb, mode=resolve_mode(wandb.mode))
        runner = ModuleRunner(self, datamodule)
        module = type(network.build(seed)).__qualname__ if runner.writes else None  # checks the factory too
        arms = [imp_arm(network, out, seed, control, ticket_alongside=True, module=module) for control in chosen]

        def observers(training: list[Arm]) -> list[Observer]:
            if not runner.writes:
                return []
            runner.tracking = Tracking(training, wandb)
            return [Terminal.for_arms(training), runner.tracking]

        run_arms(runner, arms, observers)
        return [arm.run for arm in arms]


def _checked_run_arguments(make_module: object, datamodule: object, seed: object, controls: object,
                           out: object) -> Path:
    """Refuse the arguments of :meth:`LotteryExperiment.run` that cannot work, before anything is
    written; the output root as a path."""
    owner = "LotteryExperiment.run"
    if isinstance(make_module, nn.Module) or not callable(make_module):
        raise ArgumentTypeError(f"{owner}: make_module must be a function that builds a fresh module (the class, or "
                                f"lambda: MyModule(...)), got {type(make_module).__name__}: every level and control "
                                "builds its own")
    if not isinstance(datamodule, L.LightningDataModule):
        raise ArgumentTypeError(f"{owner}: datamodule must be a LightningDataModule, got {type(datamodule).__name__}")
    whole(owner, "seed", seed, 0, 2**32 - 1)
    chosen = names(owner, "controls", controls)
    unknown = [c for c in chosen if c not in CONTROLS]
    if unknown or not chosen:
        what = f"unknown control {unknown[0]!r}" if unknown else "controls names no arm"
        raise ConfigError(f"{owner}: {what}; valid: {', '.join(CONTROLS)}")
    if not isinstance(out, (str, Path)):
        raise ArgumentTypeError(f"{owner}: out must be a directory path, got {out!r}")
    if Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"{owner}: out {out} is a file; give a directory")
    return Path(out)
