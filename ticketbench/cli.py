"""The ``ticketbench`` command."""

from __future__ import annotations

import argparse
import errno
import logging
import math
import os
import signal
import sys
import typing
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ticketbench.config import (
    BN_MODES,
    COMPILE_MODES,
    PRECISIONS,
    ConfigError,
    TaskConfig,
    apply_overrides,
    load_task,
    override,
    parse_assignment,
    plain,
    read_overrides,
    task_names,
)
from ticketbench.controls import CONTROLS, SANITY
from ticketbench.data import DataError
from ticketbench.interrupt import Interrupted, stop_on_signals
from ticketbench.runs import RunError, StabilityDir, open_run
from ticketbench.seeds import DIGITS, MAX_SEED
from ticketbench.task_check import check_task
from ticketbench.wandb_mode import MODES, WandbOptions

if typing.TYPE_CHECKING:
    from ticketbench.scoring import RunSet


def _positive(text: str) -> int:
    value = int(text) if DIGITS.fullmatch(text) else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _seed(text: str) -> int:
    if not DIGITS.fullmatch(text) or int(text) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to {MAX_SEED}, got {text!r}")
    return int(text)


def _directory(text: str) -> Path:
    """A directory argument: refused at once when a file of that name is in the way."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; expected a directory")
    return path


class Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line and a pointer to the help, instead of the usage text."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number of pp >= 0, got {text!r}")
    return value


def _override_options() -> argparse.ArgumentParser:
    """The options that change a task's protocol: shared by ``run``, ``show`` and ``sweep``."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--config", type=Path, metavar="FILE.yaml",
                         help="YAML mapping of task keys to override, e.g. 'optimizer: {lr: 0.01}'")
    options.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="assignments",
                         help="override one task key, dotted for nested keys (repeatable): --set optimizer.lr=1e-3")
    options.add_argument("--levels", type=_positive, help="levels in total, level 0 dense (17 -> 16 pruning rounds)")
    options.add_argument("--max-steps", type=_positive, help="training steps per level")
    options.add_argument("--eval-every", type=_positive, help="validation cadence in steps")
    options.add_argument("--precision", choices=PRECISIONS,
                         help="32-true (default: float32, TF32 off on GPUs) or bf16-mixed (bfloat16 autocast); "
                              "a bf16 run has its own run directory")
    options.add_argument("--compile", choices=COMPILE_MODES,
                         help="torch.compile the forward pass and loss of training (default off; reduce-overhead "
                              "adds CUDA graphs on a GPU); rounding differs from eager, masks hold exactly; recorded "
                              "in every level record")
    return options


def _method_options() -> argparse.ArgumentParser:
    """How a --method run prunes: shared by ``run`` and ``sweep`` (which passes them on)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--densities", default="51.2,21.0,8.6,3.5,1.4", metavar="P,...",
                         help="with --method: %% of weights remaining, one level each (default: 51.2,21.0,8.6,3.5,1.4)")
    options.add_argument("--sanity", choices=tuple(SANITY),
                         help="with --method: shuffle kept positions within each layer, or reinitialise kept weights")
    options.add_argument("--iterative", action="store_true",
                         help="with --method: each density starts from the previous level's mask "
                              "(decreasing densities)")
    return options


def _subject_options(task_help: str) -> argparse.ArgumentParser:
    """What one training command trains, and whether it shows progress: shared by ``run`` and
    ``instability``."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("task", nargs="?", default="mnist1d-mlp", help=task_help)
    options.add_argument("--seed", type=_seed, default=0, help=f"0 to {MAX_SEED} (default 0)")
    options.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                         help="show Lightning's progress bar (default: when stderr is a terminal)")
    return options


def _training_options() -> argparse.ArgumentParser:
    """How runs train and where they write: shared by ``run``, ``sweep`` and ``instability``."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--deterministic", action="store_true",
                         help="deterministic kernels only, so that a GPU run repeats bit for bit (slower on a GPU; "
                              "CPU runs repeat without it); recorded in every level record")
    options.add_argument("--out", type=_directory, default=Path("runs"), help="root of the run directories")
    options.add_argument("--data-dir", type=_directory,
                         help="directory holding <dataset>.npz (default: $TICKETBENCH_DATA, then the cache)")
    options.add_argument("--wandb", choices=MODES,
                         help="W&B logging (default: $WANDB_MODE if set, else online with an API key, else offline)")
    options.add_argument("--wandb-project", default="ticketbench")
    options.add_argument("--wandb-entity", help="W&B team or user (default: your default entity)")
    options.add_argument("--wandb-group", help="W&B group (default: <task>-<config hash>: every seed and arm)")
    options.add_argument("--wandb-tag", action="append", default=[], metavar="TAG", help="extra W&B tag (repeatable)")
    return options


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected minutes > 0 (e.g. 30 or 0.5), got {text!r}")
    return value


def _level_options() -> argparse.ArgumentParser:
    """How the levels of IMP arms and methods train: shared by ``run`` and ``sweep``."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--checkpoint-every", type=_minutes, metavar="MINUTES",
                         help="write a checkpoint of the level in progress at the first validation after every "
                              "MINUTES (and on SIGUSR1), so that a stopped level resumes midway instead of from its "
                              "start (a level stopped midway always resumes from one it finds)")
    return options


def _sweep_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    sweep = sub.add_parser("sweep", parents=parents,
                           help="many runs: tasks x seeds x arms (or methods) as jobs on local processes or SLURM")
    sweep.add_argument("tasks", nargs="*", default=["mnist1d-mlp"], metavar="task",
                       help="task names or task YAML files (default: mnist1d-mlp)")
    sweep.add_argument("--seeds", default="0", help="seeds: 0-4, 0,3,7 or 0-2,7 (default: 0)")
    sweep.add_argument("--arms", default="none", metavar="ARM[,ARM...]",
                       help=f"arms trained together in each job: {', '.join(CONTROLS)} (default: none)")
    sweep.add_argument("--method", metavar="NAME[,NAME...]",
                       help="registered pruning methods instead of IMP arms: one job per method and seed")
    sweep.add_argument("--status", action="store_true",
                       help="show every job's state and train nothing; exit 1 while any job has levels left")
    sweep.add_argument("--executor", choices=("local", "slurm"), default="local",
                       help="local: processes on this machine (default); slurm: one array task per job via submitit")
    sweep.add_argument("--jobs", type=_positive, metavar="N",
                       help="local: jobs at once (default: one per visible GPU, else one per CPU core)")
    sweep.add_argument("--threads", type=_positive, metavar="T",
                       help="local: CPU threads per job (default: the cores shared out evenly among the jobs)")
    slurm = sweep.add_argument_group("SLURM (--executor slurm; flags override --slurm-config)")
    slurm.add_argument("--slurm-config", type=Path, metavar="FILE.yaml",
                       help="YAML with any of: partition, time, cpus, gpus, mem_gb, max_requeues, sbatch (mapping)")
    slurm.add_argument("--partition")
    slurm.add_argument("--time", help="time limit per job: minutes, H:MM:SS or D-HH:MM (default 240 min); "
                                      "a job reaching it is requeued and resumes")
    slurm.add_argument("--cpus", type=_positive, help="CPUs per job (default 1)")
    slurm.add_argument("--gpus", type=int, help="GPUs per job (default 0)")
    slurm.add_argument("--mem-gb", type=float, help="memory per job in GB")
    slurm.add_argument("--max-requeues", type=int, help="time-limit requeues of a job before it fails (default 20)")
    slurm.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                       help="any further sbatch option, e.g. --sbatch account=lab --sbatch qos=low (repeatable)")


def _instability_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    stab = sub.add_parser("instability", parents=parents,
                          help="linear mode connectivity: error along the path between two copies trained from θ_k")
    stab.add_argument("--at-levels", default="0", metavar="L[,L...]",
                      help="0: the dense network; L > 0: the subnetwork of IMP level L of this task and seed "
                           "(its winning-ticket run must have reached it) (default: 0)")
    stab.add_argument("--control", default="none", metavar="ARM[,ARM...]",
                      help=f"for levels > 0: {' | '.join(CONTROLS)}, the subnetworks of which arms (default: none)")
    stab.add_argument("--rewind-steps", metavar="K[,K...]",
                      help="the steps k the dense network is rewound to (default: the task's rewind_step); "
                           "subnetworks use the rewind step of their IMP run")
    stab.add_argument("--points", type=_path_points, default=30, help="points on the path, endpoints included "
                                                                      "(default 30, as the paper)")
    stab.add_argument("--bn", choices=BN_MODES, default="recompute",
                      help="BatchNorm statistics along the path: re-estimated on training batches at every point "
                           "(default) or interpolated with the weights; ignored without BatchNorm")
    stab.add_argument("--same-noise", action="store_true",
                      help="negative control: both copies draw the same data order (instability must be 0)")


def _path_points(text: str) -> int:
    value = _positive(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"a path needs at least 2 points, got {text!r}")
    return value


def _int_list(text: str, option: str) -> list[int]:
    parts = [v.strip() for v in text.split(",")]
    values = [int(v) for v in parts] if all(DIGITS.fullmatch(v) for v in parts) else []
    if not values:
        raise ConfigError(f"{option} {text!r}: expected comma-separated whole numbers >= 0, e.g. 0,3,7")
    return list(dict.fromkeys(values))


def _instability(args: argparse.Namespace) -> None:
    from ticketbench.training.stability import Analysis, plan_points

    task = resolve_task(args)
    levels = _int_list(args.at_levels, "--at-levels")
    steps = None if args.rewind_steps is None else _int_list(args.rewind_steps, "--rewind-steps")
    points = plan_points(task, levels, _controls(args.control), steps)
    wandb, progress = _training_setup(args)
    analysis = Analysis(task, args.seed, args.out, args.same_noise, args.bn, args.points, progress, wandb=wandb)
    analysis.analyse(points, args.data_dir)
    print(f"run directory: {analysis.run.path}")


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="ticketbench", description="Lottery Ticket Hypothesis benchmarks.")
    sub = top.add_subparsers(dest="command", required=True)
    overrides, training, method, levels = _override_options(), _training_options(), _method_options(), _level_options()
    task_help = f"task name ({', '.join(task_names())}) or a task YAML file (default: mnist1d-mlp)"
    subject = _subject_options(task_help)
    run = sub.add_parser("run", parents=[subject, overrides, training, method, levels],
                         help="train the levels of one arm of a task (resumes a finished prefix)")
    run.add_argument("--control", default="none", metavar="ARM[,ARM...]",
                     help=f"{' | '.join(CONTROLS)}: none = winning tickets; reinit / random-prune = controls on its "
                          "masks; several (comma-separated) train together, e.g. none,reinit,random-prune")
    run.add_argument("--replicas", type=_positive, default=1, metavar="K",
                     help="train K seeds (--seed, --seed+1, ...) of every arm at once in this process as stacked "
                          "replicas, each with its own data order, masks and run directory (not with dropout)")
    run.add_argument("--method", metavar="NAME",
                     help="prune once per density with a registered method (ticketbench methods) instead of IMP")
    run.add_argument("--at-levels", metavar="L[,L...]",
                     help="train only these levels of a control (a control's level depends only on the winning "
                          "tickets' mask of that level), e.g. the levels a task's claims read")
    _sweep_parser(sub, [overrides, training, method, levels])
    _instability_parser(sub, [subject, overrides, training])
    sub.add_parser("list", aliases=["tasks"], help="the benchmark tasks: protocol and time per level")
    sub.add_parser("methods", help="the registered pruning methods (built in and installed plug-ins)")
    show = sub.add_parser("show", parents=[overrides], help="the fully resolved configuration of a task")
    show.add_argument("task", nargs="?", default="mnist1d-mlp", help=task_help)
    runs = sub.add_parser("runs", help="run directories: task, arm, seed, levels done, status, W&B")
    runs.add_argument("root", nargs="?", type=_directory, default=Path("runs"), help="where to look (default: runs)")
    table = sub.add_parser("table", help="Markdown table of the per-level records of run directories (and the "
                                        "points of instability analyses)")
    table.add_argument("runs", nargs="+", type=_directory, help="run directories (e.g. the imp and reinit arms)")
    table.add_argument("--mean", action="store_true",
                       help="one column group per arm: seeds, mean early-stop step, mean test accuracy [95%% CI]")
    runs_help = "run directories, or directories holding them (seeds and arms of one task)"
    score = sub.add_parser("score", help="verdicts of the paper's claims; writes verdicts.json and VERDICTS.md")
    score.add_argument("runs", nargs="+", type=_directory, help=runs_help)
    score.add_argument("--references", help="a references YAML file (default: the task's own)")
    check = sub.add_parser("check", help="exit 1 when a gating claim FAILs or accuracy regressed (for CI)")
    check.add_argument("runs", nargs="+", type=_directory, help=runs_help)
    check.add_argument("--references", help="a references YAML file (default: the task's own)")
    check.add_argument("--baseline", type=_directory, help="stored runs of the same task to compare level by level")
    check.add_argument("--tolerance", type=_tolerance, default=0.5,
                       help="allowed drop of mean test accuracy below the baseline, in pp (default 0.5)")
    check.add_argument("--allow-fail", default="", metavar="ID,...",
                       help="claims whose FAIL (or NOT RUN) is a documented finding: reported, but not failing "
                            "the check")
    report = sub.add_parser("report", help="figures: accuracy and early-stop step against %% weights remaining")
    report.add_argument("runs", nargs="+", type=_directory, help=runs_help)
    report.add_argument("--references", help="a references YAML file (default: the task's own)")
    report.add_argument("--out", type=_directory, help="where to write the figures (default: beside the runs)")
    compare = sub.add_parser("compare", help="every method against IMP: one table and one figure")
    compare.add_argument("runs", nargs="+", type=_directory, help=runs_help)
    compare.add_argument("--out", type=_directory,
                         help="where to write COMPARE.md, compare.png/svg (default: by the runs)")
    return top


def _compare(args: argparse.Namespace) -> None:
    from ticketbench.atomic import write_text
    from ticketbench.compare import figure, markdown, points
    from ticketbench.scoring import load_run_set

    run_set = load_run_set(args.runs)
    found = points(run_set)
    if not found:
        raise RunError("no finished levels to compare")
    out = args.out or _beside(run_set, args.runs)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(run_set, found)
    write_text(out / "COMPARE.md", text)
    print(text, end="")
    for path in [out / "COMPARE.md", *figure(run_set, found, out)]:
        print(f"wrote {path}")


def _beside(run_set: RunSet, named: list[Path]) -> Path:
    """Where results about the runs go by default: the directory holding them all, when it is one
    the user named or the parent of a run directory named (never a directory above what was named)."""
    root = run_set.root
    if any(root == p.resolve() or ((p / "meta.json").is_file() and root == p.resolve().parent) for p in named):
        return root
    raise RunError(f"the runs named lie in different directories, whose common parent is {root}; name one "
                   "directory that holds them all (or give --out where the command has it)")


def _verdicts(args: argparse.Namespace) -> int:
    """score / check / report: the three commands that read run directories against references."""
    from ticketbench.atomic import write_json, write_text
    from ticketbench.references import load_references
    from ticketbench.report import figures, verdict_markdown, verdict_text
    from ticketbench.scoring import load_run_set, regressions, score, verdicts_json

    run_set = load_run_set(args.runs)
    results = score(load_references(args.references or run_set.task), run_set)
    out = None if args.command == "check" else getattr(args, "out", None) or _beside(run_set, args.runs)
    print(verdict_text(results), end="")
    if args.command == "score":
        write_json(out / "verdicts.json", verdicts_json(results, run_set))
        write_text(out / "VERDICTS.md", verdict_markdown(results, run_set))
        print(f"wrote {out / 'verdicts.json'} and VERDICTS.md")
        return 0
    if args.command == "report":
        from ticketbench.path_figures import path_figures

        out.mkdir(parents=True, exist_ok=True)
        for path in figures(results, run_set, out) + path_figures(run_set, out):
            print(f"wrote {path}")
        return 0
    allowed = {i for i in args.allow_fail.split(",") if i}
    unknown = sorted(allowed - {r.claim.id for r in results})
    if unknown:
        ids = ", ".join(r.claim.id for r in results)
        raise ConfigError(f"--allow-fail names unknown claim {unknown[0]!r}; claims: {ids}")
    failures = []
    for r in (r for r in results if r.claim.gating and r.pending):
        print(f"check: claim {r.claim.id} waits for levels in progress ({r.note})", file=sys.stderr)
    for r in (r for r in results if r.gate_failed or r.gate_unanswered):
        what = "FAILs" if r.gate_failed else "cannot be answered by these runs"
        line = f"claim {r.claim.id} {what}" + (f" ({r.note})" if r.note else "")
        if r.claim.id in allowed:
            print(f"check: {line} — allowed as a documented finding", file=sys.stderr)
        else:
            failures.append(line)
    if args.baseline is not None:
        failures += regressions(run_set, load_run_set([args.baseline]), args.tolerance)
    for line in failures:
        print(f"check: {line}", file=sys.stderr)
    counts = Counter(r.verdict for r in results)
    summary = ", ".join(f"{counts[v]} {v}" for v in ("PASS", "FAIL", "INCONCLUSIVE", "NOT RUN") if counts[v])
    print(f"check: {'FAILED' if failures else 'passed'} ({len(failures)} problem(s); claims: {summary})")
    return 1 if failures else 0


def resolve_task(args: argparse.Namespace) -> TaskConfig:
    """The task with --config, then --set, then the shorthand options applied."""
    task = load_task(args.task)
    if args.config is not None:
        task = apply_overrides(task, read_overrides(args.config), f"--config {args.config}")
    if args.assignments:
        task = apply_overrides(task, [parse_assignment(a) for a in args.assignments], "--set")
    task = override(task, levels=args.levels, max_steps=args.max_steps, eval_every=args.eval_every,
                    precision=args.precision, compile=args.compile)
    check_task(task, args.task)
    return task


def _list() -> None:
    from ticketbench.catalog import (
        CPU_LEVEL_SECONDS,
        CPU_STEP_SECONDS,
        GPU_LEVEL_SECONDS,
        GPU_STEP_SECONDS,
        level_time,
        protocol_summary,
    )

    for name in task_names():
        task = load_task(name)
        print(f"{name}\n    {protocol_summary(task)}\n    time per level: "
              f"CPU {level_time(task, CPU_LEVEL_SECONDS, CPU_STEP_SECONDS)}, "
              f"GPU {level_time(task, GPU_LEVEL_SECONDS, GPU_STEP_SECONDS)}")
    print("(CPU: 2-core x86 machine, 1 thread; ~ marks a projection from measured seconds per step)")


def _methods() -> None:
    from ticketbench.pruning.methods import broken_methods, get_method, method_names

    for name in method_names():
        chosen = get_method(name)
        when = "after training, rewound" if chosen.after_training else "at initialisation"
        print(f"{name:20s} {chosen.scope:9s} {when:24s} {chosen.fn.__module__}")
    for name, why in broken_methods().items():
        print(f"{name:20s} BROKEN: {why}")


def _show(task: TaskConfig) -> None:
    import yaml

    print(yaml.safe_dump(plain(task), sort_keys=False), end="")
    print(f"# fingerprint {task.fingerprint()}: run directories <out>/{task.name}/<arm>-seed<S>-{task.fingerprint()}")


def _runs(root: Path) -> None:
    from ticketbench.listing import run_row
    from ticketbench.report import text_table
    from ticketbench.scoring import discover

    rows = [run_row(r) for r in discover([root])]
    print(text_table(rows, list(rows[0])), end="")


def _controls(text: str) -> list[str]:
    controls = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in controls if c not in CONTROLS]
    if not controls or unknown:
        raise ConfigError(f"unknown control {unknown[0] if unknown else text!r}; valid: {', '.join(CONTROLS)} "
                          "(several comma-separated)")
    return list(dict.fromkeys(controls))


def _plan(args: argparse.Namespace) -> tuple[TaskConfig, list]:
    """The task and the arms a ``run`` command trains (checked, nothing written)."""
    from ticketbench.training.imp import imp_arm

    task = resolve_task(args)
    controls = _controls(args.control)
    seeds = range(args.seed, args.seed + args.replicas)
    at_levels = getattr(args, "at_levels", None)
    if at_levels is not None:
        if args.method is not None or "none" in controls:
            raise ConfigError("--at-levels trains levels of a control alone (reinit, random-prune): a level of the "
                              "winning tickets or of a method needs the level before it")
        at_levels = sorted(_int_list(at_levels, "--at-levels"))
        outside = [lv for lv in at_levels if not 1 <= lv < task.levels]
        if outside:
            raise ConfigError(f"--at-levels: level {outside[0]} is outside the control's levels 1 to "
                              f"{task.levels - 1} (--levels {task.levels})")
    if args.method is None:
        if args.sanity or args.iterative:
            raise ConfigError(f"--{'sanity' if args.sanity else 'iterative'} applies to a --method")
        return task, [imp_arm(task, seed, control, args.out, ticket_alongside="none" in controls, at_levels=at_levels)
                      for seed in seeds for control in controls]
    from ticketbench.training.method_run import method_arm, method_task, parse_densities

    if controls != ["none"]:
        raise ConfigError("--control and --method exclude each other; for a method's controls use --sanity")
    densities = parse_densities(args.densities)
    arms = [method_arm(task, seed, args.method, densities, args.out, args.sanity, args.iterative) for seed in seeds]
    return method_task(task, densities), arms


def _quiet_lightning() -> None:
    """Lightning's start-up banners and the warnings that do not apply to how a run trains (data on
    the device, no workers; one process, so no srun; W&B off, so no logger), for the terminal only."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    for message in (".*does not have many workers.*", ".*LeafSpec.*is deprecated.*",
                    ".*but have no logger configured.*", "The `srun` command is available"):
        warnings.filterwarnings("ignore", message=message)


def _train(args: argparse.Namespace) -> None:
    from ticketbench.training.imp import run_arms  # heavy imports only when training

    task, arms = _plan(args)
    wandb, progress = _training_setup(args)
    every = None if args.checkpoint_every is None else 60 * args.checkpoint_every
    for run in run_arms(task, arms, args.data_dir, progress, wandb=wandb, checkpoint_every=every):
        print(f"run directory: {run.path}")


def _training_setup(args: argparse.Namespace) -> tuple[WandbOptions, bool]:
    """What ``run`` and ``instability`` set up before training: quiet Lightning, deterministic
    kernels when asked, the W&B options (online checked to be reachable), the progress bar."""
    from ticketbench.seeding import use_deterministic_kernels
    from ticketbench.wandb_mode import check_reachable, resolve_mode

    _quiet_lightning()
    if args.deterministic:
        use_deterministic_kernels()
    wandb = _wandb_options(args, resolve_mode(args.wandb))
    if wandb.mode == "online":
        check_reachable()
    return wandb, sys.stderr.isatty() if args.progress is None else args.progress


def _wandb_options(args: argparse.Namespace, mode: str | None = None) -> WandbOptions:
    """The W&B options of ``run`` and ``sweep``, checked against W&B's limits."""
    return WandbOptions(mode, args.wandb_project, args.wandb_entity, args.wandb_group, tuple(args.wandb_tag))


def _passed_on(args: argparse.Namespace) -> list[str]:
    """The options of ``sweep`` that every job's ``run`` receives, paths made absolute."""
    def absolute(path: object) -> str:
        return str(Path(str(path)).resolve())

    argv = [] if args.config is None else ["--config", absolute(args.config)]
    for assignment in args.assignments:
        argv += ["--set", assignment]
    for flag, value in (("--levels", args.levels), ("--max-steps", args.max_steps), ("--eval-every", args.eval_every),
                        ("--precision", args.precision), ("--compile", args.compile),
                        ("--checkpoint-every", args.checkpoint_every),
                        ("--out", absolute(args.out)), ("--data-dir", args.data_dir and absolute(args.data_dir)),
                        ("--wandb", args.wandb), ("--wandb-project", args.wandb_project),
                        ("--wandb-entity", args.wandb_entity), ("--wandb-group", args.wandb_group)):
        if value is not None:
            argv += [flag, str(value)]
    for tag in args.wandb_tag:
        argv += ["--wandb-tag", tag]
    if args.method:
        argv += ["--densities", args.densities] + (["--sanity", args.sanity] if args.sanity else [])
        argv += ["--iterative"] if args.iterative else []
    return argv + (["--deterministic"] if args.deterministic else []) + ["--no-progress"]


def _sbatch_option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ConfigError(f"--sbatch {text!r}: expected KEY=VALUE (an sbatch option without its dashes), "
                          "e.g. account=lab")
    return key.strip(), value.strip()


def _check_stackable(task: TaskConfig, arms: str) -> None:
    """A job's arms train together as replicas: refuse a grid whose model cannot."""
    from ticketbench.models import build_model
    from ticketbench.training.replicas import check_batchable

    try:
        check_batchable(build_model(task.model, 0), task.model)
    except ConfigError:
        raise ConfigError(f"--arms {arms}: a job trains its arms together as stacked replicas, which {task.model} "
                          "(dropout) does not allow; sweep --arms none first, then each control on "
                          "its own") from None


def _sweep_jobs(args: argparse.Namespace) -> list:
    """The grid of ``sweep`` as jobs: task x seed x (all arms together | each method)."""
    from ticketbench.seeds import parse_seeds
    from ticketbench.sweep.jobs import Job

    seeds = parse_seeds(args.seeds)
    _wandb_options(args)
    methods = list(dict.fromkeys(m.strip() for m in (args.method or "").split(",") if m.strip()))
    if args.method is not None and not methods:
        raise ConfigError(f"--method {args.method!r} names no method; `ticketbench methods` lists them")
    if methods and args.arms != "none":
        raise ConfigError("--arms and --method exclude each other: a sweep trains IMP arms or pruning methods")
    controls = _controls(args.arms)
    common = _passed_on(args)
    jobs = []
    for name in args.tasks:
        task_ref = str(Path(name).resolve()) if name.endswith((".yaml", ".yml")) else name
        for seed in seeds:
            for method in methods or [None]:
                what = ["--method", method] if method else ["--control", ",".join(controls)]
                argv = ["run", task_ref, "--seed", str(seed), *what, *common]
                task, arms = _plan(parser().parse_args(argv))
                if len(arms) > 1 and seed == seeds[0]:
                    _check_stackable(task, args.arms)
                label = "+".join(arm.name for arm in arms)
                jobs.append(Job(f"{task.name}-seed{seed}-{label}", tuple(argv), task, arms))
    return jobs


def _sweep(args: argparse.Namespace) -> int:
    from ticketbench.report import text_table
    from ticketbench.sweep.jobs import SweepDir, job_status

    jobs = _sweep_jobs(args)
    sweep = SweepDir.for_jobs(args.out, jobs)
    if args.executor == "slurm":
        from ticketbench.sweep.slurm import SlurmOptions

        options = SlurmOptions.load(args.slurm_config, partition=args.partition, time=args.time, cpus=args.cpus,
                                    gpus=args.gpus, mem_gb=args.mem_gb, max_requeues=args.max_requeues,
                                    sbatch=dict(map(_sbatch_option, args.sbatch)))
    pending = [job for job in jobs if job.unfinished()]
    if args.status or not pending:
        from ticketbench.sweep.slurm import squeue

        queued = squeue() if any(sweep.state(j.name).get("executor") == "slurm" for j in jobs) else {}
        rows = [job_status(sweep, job, queued).row() for job in jobs]
        print(text_table(rows, list(rows[0])), end="")
        done = sum(r["state"] == "done" for r in rows)
        print(f"sweep: {done} of {len(jobs)} job(s) done" + ("; nothing to train" if not pending else ""))
        return 0 if not pending else 1
    if args.executor == "slurm":
        from ticketbench.sweep.slurm import submit

        return submit(sweep, jobs, options)
    from ticketbench.sweep.local import run_local

    return run_local(sweep, jobs, args.jobs, args.threads)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("list", "tasks"):
        _list()
    elif args.command == "methods":
        _methods()
    elif args.command == "show":
        _show(resolve_task(args))
    elif args.command == "runs":
        _runs(args.root)
    elif args.command == "compare":
        _compare(args)
    elif args.command in ("score", "check", "report"):
        return _verdicts(args)
    elif args.command == "sweep":
        return _sweep(args)
    elif args.command == "instability":
        _instability(args)
    elif args.command == "table":
        from ticketbench.report import level_table, mean_table, path_table

        named = [open_run(_run_dir(p)) for p in args.runs]
        analyses = [r.path for r in named if isinstance(r, StabilityDir)]
        runs = [r.path for r in named if not isinstance(r, StabilityDir)]
        if runs:
            print((mean_table if args.mean else level_table)(runs), end="")
        if analyses:
            print(("\n" if runs else "") + path_table(analyses), end="")
    else:
        _train(args)
    return 0


@contextmanager
def _settings_kept() -> Iterator[None]:
    """Put back what a command changes for the whole process (the warning filters, Lightning's log
    level, torch's choice of kernels under --deterministic), so that a program can call ``main``
    more than once."""
    import torch

    lightning = logging.getLogger("lightning.pytorch")
    level = lightning.level
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    try:
        with warnings.catch_warnings():
            yield
    finally:
        lightning.setLevel(level)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        with stop_on_signals(), _settings_kept():
            args = parser().parse_args(argv)
            return _dispatch(args)
    except Interrupted as stop:
        kept = {"run": "every finished level", "sweep": "every finished level",
                "instability": "every finished point and trained copy"}.get(args.command if args else "")
        what = f"{kept} is kept: run the same command to resume" if kept else "nothing was left half-written"
        print(f"ticketbench: stopped by {stop.name}; {what}", file=sys.stderr)
        return stop.exit_code
    except (ConfigError, DataError, RunError) as err:
        print(f"ticketbench: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of our output went away (e.g. `ticketbench runs | head -1`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 128 + signal.SIGPIPE
    except OSError as err:  # a full disk or a write refused: the atomic writes kept every finished file
        print(f"ticketbench: error: {_os_error(err)}", file=sys.stderr)
        return 2


def _run_dir(path: Path) -> Path:
    """A run directory named on the command line (it holds meta.json)."""
    if not (path / "meta.json").is_file():
        raise RunError(f"{path}: not a run directory (no meta.json); `ticketbench runs DIR` lists them")
    return path


def _os_error(err: OSError) -> str:
    where = f" ({err.filename})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"disk full while writing{where}; every finished level is intact: free space and run the same "
                "command again to resume")
    return f"{err.strerror or err}{where}"


if __name__ == "__main__":
    sys.exit(main())
