"""``ticketbench run``: train the levels of the arms of one task and seed, or of one method; and
the argv of a sweep's job, which is such a command."""

from __future__ import annotations

import typing
from dataclasses import dataclass

from ticketbench.cli import shared, values
from ticketbench.cli.options import group, option, to_argv
from ticketbench.cli.registry import command
from ticketbench.config import TaskConfig
from ticketbench.controls import CONTROLS
from ticketbench.errors import ConfigError

if typing.TYPE_CHECKING:
    from ticketbench.engine.arms import Arm


@dataclass(frozen=True)
class RunOptions:
    """The options of ``run``, in the order a job's argv writes them."""

    task: str = shared.task()
    seed: int = shared.seed()
    replicas: int | None = option("--replicas", type=values.positive, metavar="K",
                                  help="train K seeds (--seed, --seed+1, ...) of every arm at once in this process as "
                                       "stacked replicas, each with its own data order, masks and run directory (not "
                                       "with dropout)")
    control: str = option("--control", default="none", metavar="ARM[,ARM...]", applies="imp",
                          help=f"{' | '.join(CONTROLS)}: none = winning tickets; reinit / random-prune = controls on "
                               "its masks; several (comma-separated) train together, e.g. none,reinit,random-prune")
    at_levels: str | None = option("--at-levels", metavar="L[,L...]",
                                   help="train only these levels of a control (a control's level depends only on the "
                                        "winning tickets' mask of that level), e.g. the levels a task's claims read")
    method: str | None = option("--method", metavar="NAME",
                                help="prune once per density with a registered method (ticketbench methods) instead "
                                     "of IMP")
    protocol: shared.Protocol = group(shared.Protocol)
    checkpoint_every: float | None = shared.checkpoint_every()
    output: shared.Output = group(shared.Output)
    pruning: shared.Pruning = group(shared.Pruning)
    deterministic: bool = shared.deterministic()
    progress: bool | None = shared.progress()


def job_argv(options: RunOptions) -> list[str]:
    """The argv (after ``ticketbench``) of the ``run`` command with ``options``: a sweep's job."""
    return ["run", *to_argv(options)]


def plan(options: RunOptions) -> tuple[TaskConfig, list[Arm]]:
    """The task and the arms a ``run`` command trains (checked, nothing written)."""
    from ticketbench.engine.suite_runner import suite_arm

    task = shared.resolve_task(options.task, options.protocol)
    controls = values.controls(options.control)
    seeds = range(options.seed, options.seed + (options.replicas or 1))
    out, pruning = options.output.out, options.pruning
    at_levels = None if options.at_levels is None else _control_levels(options, controls, task)
    if options.method is None:
        if pruning.sanity or pruning.iterative:
            raise ConfigError(f"--{'sanity' if pruning.sanity else 'iterative'} applies to a --method")
        return task, [suite_arm(task, seed, control, out, ticket_alongside="none" in controls, at_levels=at_levels)
                      for seed in seeds for control in controls]
    from ticketbench.engine.method_arm import method_arm, method_task, parse_densities

    if controls != ["none"]:
        raise ConfigError("--control and --method exclude each other; for a method's controls use --sanity")
    densities = parse_densities(pruning.densities)
    arms = [method_arm(task, seed, options.method, densities, out, pruning.sanity, pruning.iterative)
            for seed in seeds]
    return method_task(task, densities), arms


def _control_levels(options: RunOptions, controls: list[str], task: TaskConfig) -> list[int]:
    """The levels of --at-levels, checked against the arms and the task's levels."""
    if options.method is not None or "none" in controls:
        raise ConfigError("--at-levels trains levels of a control alone (reinit, random-prune): a level of the "
                          "winning tickets or of a method needs the level before it")
    at_levels = sorted(values.int_list(str(options.at_levels), "--at-levels"))
    outside = [lv for lv in at_levels if not 1 <= lv < task.levels]
    if outside:
        raise ConfigError(f"--at-levels: level {outside[0]} is outside the control's levels 1 to "
                          f"{task.levels - 1} (--levels {task.levels})")
    return at_levels


@command("run", RunOptions, help="train the levels of one arm of a task (resumes a finished prefix)",
         kept="every finished level")
def train(options: RunOptions) -> None:
    from ticketbench.engine.suite_runner import train_suite  # heavy imports only when training

    task, arms = plan(options)
    wandb, progress = shared.training_setup(options.output, options.deterministic, options.progress)
    every = None if options.checkpoint_every is None else 60 * options.checkpoint_every
    for run in train_suite(task, arms, options.output.data_dir, progress, wandb=wandb, checkpoint_every=every):
        print(f"run directory: {run.path}")

