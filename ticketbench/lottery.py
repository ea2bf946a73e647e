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

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import Logger

from ticketbench.atomic import remove_partial_writes
from ticketbench.callback import LotteryTicket
from ticketbench.config import NAME, ConfigError, PruningConfig
from ticketbench.controls import CONTROLS, TICKET, Control
from ticketbench.pruning.masks import Masks, full_masks, layer_remaining_percent, remaining_percent
from ticketbench.pruning.schedule import next_masks
from ticketbench.runs import RunDir, RunError
from ticketbench.tracking import Tracker, open_tracker
from ticketbench.training.imp import level_line, require_ticket
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "prune", tuple(self.prune))
        problems = [
            (not NAME.fullmatch(self.name), f"name {self.name!r} must be a plain directory name (letters, digits, "
                                            "'.', '_', '-')"),
            (not self.prune, "prune names no parameter"),
            (self.levels < 1 or self.max_steps < 1, "levels and max_steps must be >= 1"),
            (not 0 <= self.rewind_step < self.max_steps,
             f"rewind_step must be in [0, max_steps), got {self.rewind_step}"),
            (not all(0 <= r < 1 for r in [self.rate, *self.rates.values()]), "rates must be in [0, 1)"),
            (bool(set(self.rates) - set(self.prune)), f"rates names parameters not pruned: "
                                                     f"{sorted(set(self.rates) - set(self.prune))}"),
            (self.scope not in ("layerwise", "global"), f"scope must be layerwise or global, got {self.scope!r}"),
            (self.scope == "global" and bool(self.rates), "global pruning takes one rate, not rates"),
            (self.mode not in ("min", "max"), f"mode must be min or max, got {self.mode!r}"),
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
        return hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()[:8]

    def pruning(self) -> tuple[dict[str, str], PruningConfig]:
        """Each pruned tensor as its own role with its rate (or one global rate)."""
        if self.scope == "global":
            return {n: "all" for n in self.prune}, PruningConfig("global", {"all": self.rate})
        return {n: n for n in self.prune}, PruningConfig("layerwise", {n: self.rates.get(n, self.rate)
                                                                       for n in self.prune})

    def run(self, make_module: Callable[[], L.LightningModule], datamodule: L.LightningDataModule, seed: int = 0,
            controls: Sequence[str] = ("none",), out: str | Path = "runs", echo: Callable[[str], None] = print,
            wandb: WandbOptions | None = None) -> list[RunDir]:
        """Train every level not finished yet of the winning tickets and each control (in that
        order: a control reads the ticket's masks); return the run directories. ``wandb``: log
        each arm to its W&B run as the suite's tasks do (``WandbOptions(mode="offline")``; None:
        no W&B)."""
        unknown = [c for c in controls if c not in CONTROLS]
        if unknown:
            raise ConfigError(f"unknown control {unknown[0]!r}; valid: {', '.join(CONTROLS)}")
        imp = RunDir.for_arm(Path(out), self, seed, TICKET.arm)
        chosen = [CONTROLS[c] for c in dict.fromkeys(controls)]
        if TICKET not in chosen and not imp.path.is_dir():
            raise RunError(f"the controls need the winning tickets in {imp.path}; include 'none' in controls")
        if wandb is not None:
            wandb = dataclasses.replace(wandb, mode=resolve_mode(wandb.mode))
        return [_Arm(self, make_module, datamodule, seed, control, Path(out), echo, wandb).train()
                for control in sorted(chosen, key=lambda c: c is not TICKET)]


@dataclass
class _Arm:
    """One arm of an experiment: its levels trained one after the other in its run directory."""

    experiment: LotteryExperiment
    make_module: Callable[[], L.LightningModule]
    datamodule: L.LightningDataModule
    seed: int
    control: Control
    out: Path
    echo: Callable[[str], None]
    wandb: WandbOptions | None = None
    tracker: Tracker | None = None

    def __post_init__(self) -> None:
        self.run = RunDir.for_arm(self.out, self.experiment, self.seed, self.control.arm)
        self.imp = RunDir.for_arm(self.out, self.experiment, self.seed, TICKET.arm)
        self.writes = _rank_zero()  # under DDP every rank trains; rank 0 alone writes

    def train(self) -> RunDir:
        ex, first = self.experiment, 0 if self.control is TICKET else 1
        with self.run.lock() if self.writes else contextlib.nullcontext():
            roles, _ = ex.pruning()
            if self.writes:
                remove_partial_writes(self.run.path)
                module = type(self._module(self.seed)).__qualname__
                self.run.start(ex, self.seed, self.control.arm, first, roles, control=self.control.name,
                               module=module)
            else:
                _wait_for(self.run.path / "meta.json")
            records = self.run.records() if self.run.path.is_dir() else []  # all checked before anything is written
            stopped = any(r["diverged"] for r in records)
            todo = [] if stopped else [lvl for lvl in range(first, ex.levels) if not self.run.has_level(lvl)]
            if self.writes:
                self.tracker = open_tracker(self.run, ex, self.seed, self.wandb)
            failed = True
            try:
                for level in todo:
                    if not self._level(level):  # diverged
                        break
                if self.tracker:
                    self.tracker.experiment_done()
                failed = False
            finally:
                if self.tracker:
                    self.tracker.close(failed, self.echo)
        return self.run

    def _module(self, seed: int) -> L.LightningModule:
        L.seed_everything(seed % 2**32, verbose=False)  # Lightning takes 32-bit seeds
        return self.make_module()

    def _level(self, level: int) -> bool:
        """Train ``level``; False when it diverged (the arm stops)."""
        ex, rewound = self.experiment, level > 0
        module = self._module(self.control.init_seed(self.seed))
        if rewound and not self.control.fresh_init:
            module.load_state_dict(self.imp.load_rewind())
        names = LotteryTicket(ex.prune).names(module)
        masks = self._masks(level, module, names)
        if self.writes and (level == 0 or self.control is not TICKET):  # later ticket masks: the level before
            self.run.save_masks(level, masks)
        start = ex.rewind_step if rewound else 0
        ticket = LotteryTicket(names, masks=masks, start_step=start, monitor=ex.monitor, mode=ex.mode,
                               rewind_step=None if rewound else ex.rewind_step)
        L.seed_everything(self.seed, verbose=False)  # the data order of every level and arm of this seed
        logger = _Shifted(self.tracker.logger, lambda: level * ex.max_steps + ticket.step) if self.tracker else False
        trainer = L.Trainer(**{"enable_checkpointing": False, "enable_model_summary": False,
                               "enable_progress_bar": False, **ex.trainer},
                            max_steps=ex.max_steps - start, callbacks=[ticket], logger=logger)
        began = time.perf_counter()
        trainer.fit(module, datamodule=self.datamodule)
        diverged = not all(bool(torch.isfinite(p).all()) for p in module.parameters())
        final = None if diverged else self._test(trainer, module)
        early = None
        if ticket.best_state is not None and not diverged:
            last = {k: v.detach().clone() for k, v in module.state_dict().items()}
            module.load_state_dict(ticket.best_state)
            early = self._test(trainer, module)
            module.load_state_dict(last)
        if not self.writes:
            trainer.strategy.barrier("level written")  # rank 0 has written what the next level reads
            return not diverged
        if level == 0:
            self.run.save_rewind(ticket.rewind_state)
            if self.tracker:
                self.tracker.rewind_point(self.run.rewind_files())
        if self.control is TICKET and not diverged and level + 1 < ex.levels:
            roles, pruning = ex.pruning()
            self.run.save_masks(level + 1, next_masks(module, ticket.masks, roles, pruning))
        record = {
            "task": ex.name, "seed": self.seed, "arm": self.control.arm, "level": level,
            "weights_remaining_percent": remaining_percent(masks), "layer_remaining_percent":
                layer_remaining_percent(masks),
            "early_stop_step": ticket.best_step, "val_loss_at_early_stop": None, "val_acc_at_early_stop": None,
            "monitor": ex.monitor, "monitor_at_early_stop": ticket.best_value if ticket.best_step is not None else None,
            "test_acc_at_early_stop": early, "test_acc_final": final, "train_acc_final": None,
            "start_step": start, "steps": ticket.step - start, "seconds": round(time.perf_counter() - began, 2),
            "diverged": diverged, "deterministic": torch.are_deterministic_algorithms_enabled(),
        }
        self.run.ask_levels(ex.levels)
        self.run.save_record(record)
        if self.tracker:
            self.tracker.level_done(record, self.run.records(), self.run.mask_path(level))
        self.echo(level_line(record))
        trainer.strategy.barrier("level written")
        return not diverged

    def _masks(self, level: int, module: L.LightningModule, names: list[str]) -> Masks:
        if level == 0:
            return full_masks(module, names)
        if self.control is TICKET:
            return self.run.load_masks(level, module, names)
        require_ticket(self.imp, level, self.control.name)
        return self.control.masks(self.imp.load_masks(level, module, names), self.seed, level)

    def _test(self, trainer: L.Trainer, module: L.LightningModule) -> float:
        """The test metric of the module's current weights, a fraction in [0, 1]."""
        metric = self.experiment.test_metric
        trainer.test(module, datamodule=self.datamodule, verbose=False)
        if metric not in trainer.callback_metrics:
            logged = ", ".join(sorted(trainer.callback_metrics)) or "nothing"
            raise ConfigError(f"LotteryExperiment: test_metric {metric!r} is not logged by the module's test_step "
                              f"(logged: {logged})")
        value = float(trainer.callback_metrics[metric])
        if not 0 <= value <= 1 or math.isnan(value):
            raise ConfigError(f"LotteryExperiment: test_metric {metric!r} is {value}; log an accuracy as a fraction "
                              "in [0, 1]")
        return value


def _wait_for(path: Path, seconds: float = 300) -> None:
    """On ranks > 0: until rank 0 has written ``path`` (the start of an arm has no collective yet)."""
    deadline = time.monotonic() + seconds
    while not path.is_file():
        if time.monotonic() > deadline:
            raise RunError(f"{path} did not appear within {seconds:.0f} s: rank 0 of this DDP run is not writing")
        time.sleep(0.1)


def _rank_zero() -> bool:
    """Whether this process is the first of a distributed run (or the only one): every rank a
    launcher sets (torchrun, Lightning's DDP on this node and the others, SLURM) is 0 or unset."""
    return all(int(os.environ.get(key) or 0) == 0 for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


class _Shifted(Logger):
    """A level's metrics on the experiment's x-axis (``trainer/global_step`` = level * max_steps +
    the absolute step, as for the suite's tasks; ``position`` gives it, from the callback's step
    count). The W&B run belongs to the arm, so the end of a fit neither closes nor saves it."""

    def __init__(self, inner: Logger, position: Callable[[], int]) -> None:
        super().__init__()
        self.inner, self.position = inner, position

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def version(self) -> str:
        return str(self.inner.version)

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The experiment's configuration is logged when the arm's W&B run starts."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.inner.log_metrics(metrics, self.position())

    def finalize(self, status: str) -> None:
        """Closed by the arm (:meth:`Tracker.close`), not by the end of a level's fit."""
