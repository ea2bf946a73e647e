"""The runner of a user's own LightningModule: each level of each arm is one ``Trainer.fit`` with
the :class:`~ticketbench.LotteryTicket` callback, then the module's test metric at the final and
at the early-stop weights. Under DDP every rank trains, rank 0 alone writes, and the ranks meet
after every level."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.compile import from_compiled
from torch import nn
from torch._dynamo.eval_frame import OptimizedModule

from ticketbench.callback import LotteryTicket
from ticketbench.config import PruningConfig
from ticketbench.engine.arms import Arm, Network, Start
from ticketbench.engine.observers import Tracking
from ticketbench.errors import ArgumentTypeError, ConfigError, RunError
from ticketbench.storage.directory import Protocol
from ticketbench.tracking import x_axis
from ticketbench.training.arithmetic import record_fields
from ticketbench.training.level import LevelResult


class Experiment(Protocol):
    """What the runner reads of a ``LotteryExperiment``."""

    prune: tuple[str, ...]
    max_steps: int
    rewind_step: int
    monitor: str | None
    mode: str
    test_metric: str
    trainer: dict[str, Any]
    optimizer_at_rewind: str

    def pruning(self) -> tuple[dict[str, str], PruningConfig]: ...


@dataclass
class ModuleNetwork(Network):
    """A user's module, built by ``make_module`` after the global seed is set (so θ0 and the data
    order of its loaders follow the seed)."""

    experiment: Experiment
    make_module: Callable[[], L.LightningModule]

    def __post_init__(self) -> None:
        self.protocol, self.rewind_step = self.experiment, self.experiment.rewind_step
        self.rewinds_optimizer = self.experiment.optimizer_at_rewind == "rewind"
        self.by_name, self.pruning = self.experiment.pruning()

    def build(self, seed: int) -> nn.Module:
        L.seed_everything(seed % 2**32, verbose=False)  # Lightning takes 32-bit seeds
        module = self.make_module()
        if isinstance(module, OptimizedModule) and isinstance(module._orig_mod, L.LightningModule):
            module = from_compiled(module)  # torch.compile(module): Lightning trains the module, compiled
        if not isinstance(module, L.LightningModule):
            raise ArgumentTypeError(f"LotteryExperiment.run: make_module returned a {type(module).__name__}, not a "
                                    "LightningModule")
        return module

    def roles(self, model: nn.Module) -> dict[str, str]:
        return {name: self.by_name[name] for name in LotteryTicket(self.experiment.prune).names(model)}


def rank_zero() -> bool:
    """Whether this process is the first of a distributed run (or the only one): every rank a
    launcher sets (torchrun, Lightning's DDP on this node and the others, SLURM) is 0 or unset."""
    return all(int(os.environ.get(key) or 0) == 0 for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


@dataclass
class ModuleRunner:
    """Trains the levels of a user's module on ``datamodule``, one arm at a time."""

    experiment: Experiment
    datamodule: L.LightningDataModule
    tracking: Tracking | None = None
    writes: bool = field(default_factory=rank_zero)
    trainer: L.Trainer | None = None  # the last level's

    @property
    def protocol(self) -> Experiment:
        return self.experiment

    def load(self, arms: Sequence[Arm]) -> None:
        """The datamodule loads its data itself."""

    def groups(self, arms: Sequence[Arm]) -> list[list[Arm]]:
        return [[arm] for arm in arms]

    def data(self, arm: Arm) -> L.LightningDataModule:
        return self.datamodule

    def begin(self, level: int, arms: Sequence[Arm], starts: Sequence[Start]) -> None:
        """A level of a user's module starts from its beginning."""

    def fit(self, level: int, arms: Sequence[Arm], starts: Sequence[Start], begun: None) -> list[LevelResult]:
        (arm,), (start,), ex = arms, starts, self.experiment
        module = start.model
        assert isinstance(module, L.LightningModule)
        resumed = start.optimizer_state or {}  # level 0's optimizers and schedulers at k, when rewound
        ticket = LotteryTicket(list(start.masks), masks=start.masks, start_step=start.step, monitor=ex.monitor,
                               mode=ex.mode, rewind_step=None if level else ex.rewind_step,
                               rewind_optimizer=level == 0 and ex.optimizer_at_rewind == "rewind",
                               optimizer_state=resumed.get("optimizers"), scheduler_state=resumed.get("schedulers"))
        L.seed_everything(arm.seed % 2**32, verbose=False)  # the data order of every level and arm of this seed
        inner = self.tracking.logger([arm]) if self.tracking else None
        logger = _Shifted(inner, lambda: x_axis(ex, level, ticket.step)) if inner else False
        self.trainer = trainer = L.Trainer(**{"enable_checkpointing": False, "enable_model_summary": False,
                                              "enable_progress_bar": False, **ex.trainer},
                                           max_steps=ex.max_steps - start.step, callbacks=[ticket], logger=logger)
        began = time.perf_counter()
        trainer.fit(module, datamodule=self.datamodule)
        diverged = not all(bool(torch.isfinite(p).all()) for p in module.parameters())
        final = math.nan if diverged else self._test(trainer, module)
        early = math.nan
        if ticket.best_state is not None and not diverged:
            last = {k: v.detach().clone() for k, v in module.state_dict().items()}
            module.load_state_dict(ticket.best_state)
            early = self._test(trainer, module)
            module.load_state_dict(last)
        found = ticket.best_step is not None
        return [LevelResult(
            early_stop_step=ticket.best_step, val_loss_at_early_stop=math.nan, val_acc_at_early_stop=math.nan,
            test_acc_at_early_stop=early, test_acc_final=final, train_acc_final=math.nan, start_step=start.step,
            steps=ticket.step - start.step, seconds=time.perf_counter() - began, diverged=diverged,
            rewind_state=ticket.rewind_state, resumed_from=[],
            rewind_optimizer_state={"optimizers": ticket.rewind_optimizer_state,
                                    "schedulers": ticket.rewind_scheduler_state} if ticket.rewind_optimizer else None,
            channels_last=False,
            arithmetic=record_fields(str(trainer.precision), "by-user" if getattr(module, "_compiler_ctx", None)
                                     else "off", trainer.strategy.root_device, False),
            about={"monitor": ex.monitor, "monitor_at_early_stop": ticket.best_value if found else None})]

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

    def level_written(self, level: int, arms: Sequence[Arm]) -> None:
        """Every rank waits until rank 0 has written what the next level reads."""
        if self.trainer is not None:
            self.trainer.strategy.barrier("level written")

    def follow(self, arm: Arm, seconds: float = 300) -> None:
        """On ranks > 0: until rank 0 has written meta.json (the start of an arm has no collective yet)."""
        path = arm.run.path / "meta.json"
        deadline = time.monotonic() + seconds
        while not path.is_file():
            if time.monotonic() > deadline:
                raise RunError(f"{path} did not appear within {seconds:.0f} s: rank 0 of this DDP run is not writing")
            time.sleep(0.1)


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
