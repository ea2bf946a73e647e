"""``ticketbench instability``: linear mode connectivity of two copies trained from θ_k."""

from __future__ import annotations

from dataclasses import dataclass

from ticketbench.cli import shared, values
from ticketbench.cli.options import group, option
from ticketbench.cli.registry import command
from ticketbench.config import BN_MODES
from ticketbench.controls import CONTROLS


@dataclass(frozen=True)
class InstabilityOptions:
    """The options of ``instability``."""

    task: str = shared.task()
    seed: int = shared.seed()
    progress: bool | None = shared.progress()
    protocol: shared.Protocol = group(shared.Protocol)
    deterministic: bool = shared.deterministic()
    output: shared.Output = group(shared.Output)
    at_levels: str = option("--at-levels", default="0", metavar="L[,L...]",
                            help="0: the dense network; L > 0: the subnetwork of IMP level L of this task and seed "
                                 "(its winning-ticket run must have reached it) (default: 0)")
    control: str = option("--control", default="none", metavar="ARM[,ARM...]",
                          help=f"for levels > 0: {' | '.join(CONTROLS)}, the subnetworks of which arms (default: "
                               "none)")
    rewind_steps: str | None = option("--rewind-steps", metavar="K[,K...]",
                                      help="the steps k the dense network is rewound to (default: the task's "
                                           "rewind_step); subnetworks use the rewind step of their IMP run")
    points: int = option("--points", type=values.path_points, default=30,
                         help="points on the path, endpoints included (default 30, as the paper)")
    bn: str = option("--bn", choices=BN_MODES, default="recompute",
                     help="BatchNorm statistics along the path: re-estimated on training batches at every point "
                          "(default) or interpolated with the weights; ignored without BatchNorm")
    same_noise: bool = option("--same-noise", action="store_true", default=False,
                              help="negative control: both copies draw the same data order (instability must be 0)")


@command("instability", InstabilityOptions, kept="every finished point and trained copy",
         help="linear mode connectivity: error along the path between two copies trained from θ_k")
def instability(options: InstabilityOptions) -> None:
    from ticketbench.engine.instability import Analysis, plan_points

    task = shared.resolve_task(options.task, options.protocol)
    levels = values.int_list(options.at_levels, "--at-levels")
    steps = None if options.rewind_steps is None else values.int_list(options.rewind_steps, "--rewind-steps")
    points = plan_points(task, levels, values.controls(options.control), steps)
    wandb, progress = shared.training_setup(options.output, options.deterministic, options.progress)
    analysis = Analysis(task, options.seed, options.output.out, options.same_noise, options.bn, options.points,
                        progress, wandb=wandb)
    analysis.analyse(points, options.output.data_dir)
    print(f"run directory: {analysis.run.path}")
