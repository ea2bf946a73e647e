"""The ``ticketbench`` command."""

from __future__ import annotations

import argparse
import errno
import sys
from collections import Counter
from pathlib import Path

from ticketbench.config import (
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
from ticketbench.data import DataError
from ticketbench.runs import CONTROLS, RunError
from ticketbench.tracking import MODES


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _task_options() -> argparse.ArgumentParser:
    """The options that resolve a task: shared by ``run`` and ``show``."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("task", nargs="?", default="mnist1d-mlp",
                         help=f"task name ({', '.join(task_names())}) or a task YAML file (default: mnist1d-mlp)")
    options.add_argument("--config", type=Path, metavar="FILE.yaml",
                         help="YAML mapping of task keys to override, e.g. 'optimizer: {lr: 0.01}'")
    options.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="assignments",
                         help="override one task key, dotted for nested keys (repeatable): --set optimizer.lr=1e-3")
    options.add_argument("--levels", type=_positive, help="levels in total, level 0 dense (17 -> 16 pruning rounds)")
    options.add_argument("--max-steps", type=_positive, help="training steps per level")
    options.add_argument("--eval-every", type=_positive, help="validation cadence in steps")
    return options


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ticketbench", description="Lottery Ticket Hypothesis benchmarks.")
    sub = top.add_subparsers(dest="command", required=True)
    task_options = _task_options()
    run = sub.add_parser("run", parents=[task_options],
                         help="train the levels of one arm of a task (resumes a finished prefix)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--control", default="none", metavar="ARM[,ARM...]",
                     help=f"{' | '.join(CONTROLS)}: none = winning tickets; reinit / random-prune = controls on its "
                          "masks; several (comma-separated) train together, e.g. none,reinit,random-prune")
    run.add_argument("--replicas", type=_positive, default=1, metavar="K",
                     help="train K seeds (--seed, --seed+1, ...) of every arm at once in this process as stacked "
                          "replicas, each with its own data order, masks and run directory (not for BatchNorm models)")
    run.add_argument("--method", metavar="NAME",
                     help="prune once per density with a registered method (ticketbench methods) instead of IMP")
    run.add_argument("--densities", default="51.2,21.0,8.6,3.5,1.4", metavar="P,...",
                     help="with --method: %% of weights remaining, one level each (default: 51.2,21.0,8.6,3.5,1.4)")
    run.add_argument("--sanity", choices=("shuffle", "reinit"),
                     help="with --method: shuffle kept positions within each layer, or reinitialise kept weights")
    run.add_argument("--iterative", action="store_true",
                     help="with --method: each density starts from the previous level's mask (decreasing densities)")
    run.add_argument("--deterministic", action="store_true",
                     help="deterministic kernels only, so that a GPU run repeats bit for bit (slower on a GPU; "
                          "CPU runs repeat without it); recorded in every level record")
    run.add_argument("--out", type=Path, default=Path("runs"), help="root of the run directories")
    run.add_argument("--data-dir", help="directory holding <dataset>.npz (default: $TICKETBENCH_DATA, then the cache)")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="show Lightning's progress bar (default: when stderr is a terminal)")
    run.add_argument("--wandb", choices=MODES,
                     help="W&B logging (default: $WANDB_MODE if set, else online with an API key, else offline)")
    run.add_argument("--wandb-project", default="ticketbench")
    run.add_argument("--wandb-entity", help="W&B team or user (default: your default entity)")
    run.add_argument("--wandb-group", help="W&B group (default: <task>-<config hash>: every seed and arm)")
    run.add_argument("--wandb-tag", action="append", default=[], metavar="TAG", help="extra W&B tag (repeatable)")
    sub.add_parser("list", aliases=["tasks"], help="the benchmark tasks: protocol and time per level")
    sub.add_parser("methods", help="the registered pruning methods (built in and installed plug-ins)")
    sub.add_parser("show", parents=[task_options], help="the fully resolved configuration of a task")
    runs = sub.add_parser("runs", help="run directories: task, arm, seed, levels done, status, W&B")
    runs.add_argument("root", nargs="?", type=Path, default=Path("runs"), help="where to look (default: runs)")
    table = sub.add_parser("table", help="Markdown table of the per-level records of run directories")
    table.add_argument("runs", nargs="+", type=Path, help="run directories (e.g. the imp and reinit arms)")
    runs_help = "run directories, or directories holding them (seeds and arms of one task)"
    score = sub.add_parser("score", help="verdicts of the paper's claims; writes verdicts.json and VERDICTS.md")
    score.add_argument("runs", nargs="+", type=Path, help=runs_help)
    score.add_argument("--references", help="a references YAML file (default: the task's own)")
    check = sub.add_parser("check", help="exit 1 when a gating claim FAILs or accuracy regressed (for CI)")
    check.add_argument("runs", nargs="+", type=Path, help=runs_help)
    check.add_argument("--references", help="a references YAML file (default: the task's own)")
    check.add_argument("--baseline", type=Path, help="stored runs of the same task to compare level by level")
    check.add_argument("--tolerance", type=float, default=0.5,
                       help="allowed drop of mean test accuracy below the baseline, in pp (default 0.5)")
    check.add_argument("--allow-fail", default="", metavar="ID,...",
                       help="claims whose FAIL is a documented finding: reported, but not failing the check")
    report = sub.add_parser("report", help="figures: accuracy and early-stop step against % weights remaining")
    report.add_argument("runs", nargs="+", type=Path, help=runs_help)
    report.add_argument("--references", help="a references YAML file (default: the task's own)")
    report.add_argument("--out", type=Path, help="where to write the figures (default: beside the runs)")
    compare = sub.add_parser("compare", help="every method against IMP: one table and one figure")
    compare.add_argument("runs", nargs="+", type=Path, help=runs_help)
    compare.add_argument("--out", type=Path, help="where to write COMPARE.md, compare.png/svg (default: by the runs)")
    return top


def _compare(args: argparse.Namespace) -> None:
    from ticketbench.atomic import write_text
    from ticketbench.compare import figure, markdown, points
    from ticketbench.scoring import load_run_set

    run_set = load_run_set(args.runs)
    found = points(run_set)
    if not found:
        raise RunError("no finished levels to compare")
    out = args.out or run_set.root
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(run_set, found)
    write_text(out / "COMPARE.md", text)
    print(text, end="")
    for path in [out / "COMPARE.md", *figure(run_set, found, out)]:
        print(f"wrote {path}")


def _verdicts(args: argparse.Namespace) -> int:
    """score / check / report: the three commands that read run directories against references."""
    from ticketbench.atomic import write_json, write_text
    from ticketbench.references import load_references
    from ticketbench.report import figures, verdict_markdown, verdict_text
    from ticketbench.scoring import load_run_set, regressions, score, verdicts_json

    run_set = load_run_set(args.runs)
    results = score(load_references(args.references or run_set.task), run_set)
    print(verdict_text(results), end="")
    if args.command == "score":
        write_json(run_set.root / "verdicts.json", verdicts_json(results, run_set))
        write_text(run_set.root / "VERDICTS.md", verdict_markdown(results, run_set))
        print(f"wrote {run_set.root / 'verdicts.json'} and VERDICTS.md")
        return 0
    if args.command == "report":
        out = args.out or run_set.root
        out.mkdir(parents=True, exist_ok=True)
        for path in figures(results, run_set, out):
            print(f"wrote {path}")
        return 0
    allowed = {i for i in args.allow_fail.split(",") if i}
    unknown = sorted(allowed - {r.claim.id for r in results})
    if unknown:
        ids = ", ".join(r.claim.id for r in results)
        raise ConfigError(f"--allow-fail names unknown claim {unknown[0]!r}; claims: {ids}")
    failures = []
    for r in (r for r in results if r.gate_failed):
        line = f"claim {r.claim.id} FAILs" + (f" ({r.note})" if r.note else "")
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
    return override(task, levels=args.levels, max_steps=args.max_steps, eval_every=args.eval_every)


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
    from ticketbench.pruning.methods import get_method, method_names

    for name in method_names():
        chosen = get_method(name)
        when = "after training, rewound" if chosen.after_training else "at initialisation"
        print(f"{name:20s} {chosen.scope:9s} {when:24s} {chosen.fn.__module__}")


def _show(task: TaskConfig) -> None:
    import yaml

    print(yaml.safe_dump(plain(task), sort_keys=False), end="")
    print(f"# fingerprint {task.fingerprint()}: run directories <out>/{task.name}/<arm>-seed<S>-{task.fingerprint()}")


def _runs(root: Path) -> None:
    from ticketbench.report import text_table
    from ticketbench.runs import run_row
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


def _train(args: argparse.Namespace) -> None:
    from ticketbench.seeding import use_deterministic_kernels  # heavy imports only when training
    from ticketbench.tracking import WandbOptions, resolve_mode
    from ticketbench.training.imp import imp_arm, run_arms

    task = resolve_task(args)
    controls = _controls(args.control)
    if args.deterministic:
        use_deterministic_kernels()
    seeds = range(args.seed, args.seed + args.replicas)
    wandb = WandbOptions(resolve_mode(args.wandb), args.wandb_project, args.wandb_entity, args.wandb_group,
                         tuple(args.wandb_tag))
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    if args.method is None:
        if args.sanity or args.iterative:
            raise ConfigError(f"--{'sanity' if args.sanity else 'iterative'} applies to a --method")
        arms = [imp_arm(task, seed, control, args.out, ticket_alongside="none" in controls)
                for seed in seeds for control in controls]
    else:
        from ticketbench.training.method_run import method_arm, method_task, parse_densities

        if controls != ["none"]:
            raise ConfigError("--control and --method exclude each other; for a method's controls use --sanity")
        densities = parse_densities(args.densities)
        arms = [method_arm(task, seed, args.method, densities, args.out, args.sanity, args.iterative) for seed in seeds]
        task = method_task(task, densities)
    for run in run_arms(task, arms, args.data_dir, progress, wandb=wandb):
        print(f"run directory: {run.path}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
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
        elif args.command == "table":
            missing = [str(p) for p in args.runs if not (p / "meta.json").is_file()]
            if missing:
                raise RunError(f"not a run directory (no meta.json): {missing[0]}")
            from ticketbench.report import level_table

            print(level_table(args.runs), end="")
        else:
            _train(args)
        return 0
    except (ConfigError, DataError, RunError) as err:
        print(f"ticketbench: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or a write refused: the atomic writes kept every finished file
        print(f"ticketbench: error: {_os_error(err)}", file=sys.stderr)
        return 2


def _os_error(err: OSError) -> str:
    where = f" ({err.filename})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"disk full while writing{where}; every finished level is intact: free space and run the same "
                "command again to resume")
    return f"{err.strerror or err}{where}"


if __name__ == "__main__":
    sys.exit(main())
