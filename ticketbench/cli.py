"""The ``ticketbench`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ticketbench.config import ConfigError, load_task, override, task_names
from ticketbench.data import DataError
from ticketbench.runs import CONTROLS, RunError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ticketbench", description="Lottery Ticket Hypothesis benchmarks.")
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train the levels of one arm of a task (resumes a finished prefix)")
    run.add_argument("task", help=f"task name ({', '.join(task_names())}) or a task YAML file")
    run.add_argument("--levels", type=_positive, help="levels in total, level 0 dense (17 -> 16 pruning rounds)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--max-steps", type=_positive, help="training steps per level")
    run.add_argument("--eval-every", type=_positive, help="validation cadence in steps")
    run.add_argument("--control", choices=list(CONTROLS), default="none",
                     help="none = winning tickets; reinit / random-prune = controls on its masks")
    run.add_argument("--out", type=Path, default=Path("runs"), help="root of the run directories")
    run.add_argument("--data-dir", help="directory holding <dataset>.npz (default: $TICKETBENCH_DATA, then the cache)")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="show Lightning's progress bar (default: when stderr is a terminal)")
    sub.add_parser("tasks", help="list the benchmark tasks")
    table = sub.add_parser("table", help="Markdown table of the per-level records of run directories")
    table.add_argument("runs", nargs="+", type=Path, help="run directories (e.g. the imp and reinit arms)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "tasks":
            for name in task_names():
                print(f"{name:20s} {load_task(name).description}")
            return 0
        if args.command == "table":
            missing = [str(p) for p in args.runs if not (p / "meta.json").is_file()]
            if missing:
                raise RunError(f"not a run directory (no meta.json): {missing[0]}")
            from ticketbench.report import level_table

            print(level_table(args.runs), end="")
            return 0
        from ticketbench.training.imp import run_imp  # heavy imports only when training

        task = override(load_task(args.task), levels=args.levels, max_steps=args.max_steps,
                        eval_every=args.eval_every)
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        run = run_imp(task, args.seed, args.control, args.out, args.data_dir, progress)
        print(f"run directory: {run.path}")
        return 0
    except (ConfigError, DataError, RunError) as err:
        print(f"ticketbench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
