"""Options that several commands take, declared once: the groups (a task's protocol, where runs
write and what they log, how a method prunes) and single options; with what the training
commands do with them before they train."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ticketbench.cli import values
from ticketbench.cli.options import option
from ticketbench.config import COMPILE_MODES, PRECISIONS, TaskConfig, load_task, task_names
from ticketbench.controls import SANITY
from ticketbench.overrides import apply_overrides, override, parse_assignment, read_overrides
from ticketbench.seeds import MAX_SEED
from ticketbench.task_check import check_task
from ticketbench.wandb_mode import MODES, WandbOptions


@dataclass(frozen=True)
class Protocol:
    """The options that change a task's protocol (``run``, ``show``, ``sweep``, ``instability``)."""

    config: Path | None = option("--config", type=Path, metavar="FILE.yaml",
                                 help="YAML mapping of task keys to override, e.g. 'optimizer: {lr: 0.01}'")
    assignments: list[str] = option("--set", action="append", default=[], metavar="KEY=VALUE",
                                    help="override one task key, dotted for nested keys (repeatable): "
                                         "--set optimizer.lr=1e-3")
    levels: int | None = option("--levels", type=values.positive,
                                help="levels in total, level 0 dense (17 -> 16 pruning rounds)")
    max_steps: int | None = option("--max-steps", type=values.positive, help="training steps per level")
    eval_every: int | None = option("--eval-every", type=values.positive, help="validation cadence in steps")
    precision: str | None = option("--precision", choices=PRECISIONS,
                                   help="32-true (default: float32, TF32 off on GPUs) or bf16-mixed (bfloat16 "
                                        "autocast); a bf16 run has its own run directory")
    compile: str | None = option("--compile", choices=COMPILE_MODES,
                                 help="torch.compile the forward pass and loss of training (default off; "
                                      "reduce-overhead adds CUDA graphs on a GPU); rounding differs from eager, "
                                      "masks hold exactly; recorded in every level record")


@dataclass(frozen=True)
class Output:
    """Where runs write, where their data is, and what they log to W&B (``run``, ``sweep``,
    ``instability``)."""

    out: Path = option("--out", type=values.directory, default=Path("runs"), help="root of the run directories")
    data_dir: Path | None = option("--data-dir", type=values.directory,
                                   help="directory holding <dataset>.npz (default: $TICKETBENCH_DATA, then the "
                                        "cache)")
    wandb: str | None = option("--wandb", choices=MODES,
                               help="W&B logging (default: $WANDB_MODE if set, else online with an API key, else "
                                    "offline)")
    wandb_project: str = option("--wandb-project", default="ticketbench")
    wandb_entity: str | None = option("--wandb-entity", help="W&B team or user (default: your default entity)")
    wandb_group: str | None = option("--wandb-group",
                                     help="W&B group (default: <task>-<config hash>: every seed and arm)")
    wandb_tag: list[str] = option("--wandb-tag", action="append", default=[], metavar="TAG",
                                  help="extra W&B tag (repeatable)")

    def wandb_options(self, mode: str | None = None) -> WandbOptions:
        """The W&B options, checked against W&B's limits."""
        return WandbOptions(mode, self.wandb_project, self.wandb_entity, self.wandb_group, tuple(self.wandb_tag))


@dataclass(frozen=True)
class Pruning:
    """How a --method run prunes (``run``, ``sweep``): written into a job's argv only with a method."""

    densities: str = option("--densities", default="51.2,21.0,8.6,3.5,1.4", metavar="P,...", applies="method",
                            help="with --method: %% of weights remaining, one level each (default: "
                                 "51.2,21.0,8.6,3.5,1.4)")
    sanity: str | None = option("--sanity", choices=tuple(SANITY), applies="method",
                                help="with --method: shuffle kept positions within each layer, or reinitialise "
                                     "kept weights")
    iterative: bool = option("--iterative", action="store_true", default=False, applies="method",
                             help="with --method: each density starts from the previous level's mask "
                                  "(decreasing densities)")


TASK_HELP = "task name ({}) or a task YAML file (default: mnist1d-mlp)"


def task() -> Any:
    """The task positional of ``run``, ``show`` and ``instability``."""
    return option(nargs="?", default="mnist1d-mlp", help=TASK_HELP.format(", ".join(task_names())))


def seed() -> Any:
    return option("--seed", type=values.seed, default=0, help=f"0 to {MAX_SEED} (default 0)")


def progress() -> Any:
    return option("--progress", action=argparse.BooleanOptionalAction,
                  help="show Lightning's progress bar (default: when stderr is a terminal)")


def deterministic() -> Any:
    return option("--deterministic", action="store_true", default=False,
                  help="deterministic kernels only, so that a GPU run repeats bit for bit (slower on a GPU; CPU runs "
                       "repeat without it); recorded in every level record")


def checkpoint_every() -> Any:
    """How the levels of IMP arms and methods checkpoint (``run``, ``sweep``)."""
    return option("--checkpoint-every", type=values.minutes, metavar="MINUTES",
                  help="write a checkpoint of the level in progress at the first validation after every MINUTES "
                       "(and on SIGUSR1), so that a stopped level resumes midway instead of from its start (a "
                       "level stopped midway always resumes from one it finds)")


def resolve_task(name: str, protocol: Protocol) -> TaskConfig:
    """The task ``name`` with --config, then --set, then the shorthand options applied."""
    task = load_task(name)
    if protocol.config is not None:
        task = apply_overrides(task, read_overrides(protocol.config), f"--config {protocol.config}")
    if protocol.assignments:
        task = apply_overrides(task, [parse_assignment(a) for a in protocol.assignments], "--set")
    task = override(task, levels=protocol.levels, max_steps=protocol.max_steps, eval_every=protocol.eval_every,
                    precision=protocol.precision, compile=protocol.compile)
    check_task(task, name)
    return task


def training_setup(output: Output, deterministic: bool, progress: bool | None) -> tuple[WandbOptions, bool]:
    """What ``run`` and ``instability`` set up before training: quiet Lightning, deterministic
    kernels when asked, the W&B options (online checked to be reachable), the progress bar."""
    from ticketbench.seeding import use_deterministic_kernels
    from ticketbench.wandb_mode import check_reachable, resolve_mode

    _quiet_lightning()
    if deterministic:
        use_deterministic_kernels()
    wandb = output.wandb_options(resolve_mode(output.wandb))
    if wandb.mode == "online":
        check_reachable()
    return wandb, sys.stderr.isatty() if progress is None else progress


def _quiet_lightning() -> None:
    """Lightning's start-up banners and the warnings that do not apply to how a run trains (data on
    the device, no workers; one process, so no srun; W&B off, so no logger), for the terminal only."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    for message in (".*does not have many workers.*", ".*LeafSpec.*is deprecated.*",
                    ".*but have no logger configured.*", "The `srun` command is available"):
        warnings.filterwarnings("ignore", message=message)
