"""The commands that show what there is: ``list`` (``tasks``), ``methods``, ``show``, ``runs`` and
``table``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ticketbench.cli import shared, values
from ticketbench.cli.options import group, option
from ticketbench.cli.registry import command
from ticketbench.config import load_task, plain, task_names
from ticketbench.errors import RunError
from ticketbench.storage.analysis_dir import StabilityDir
from ticketbench.storage.discovery import discover, open_run


@dataclass(frozen=True)
class NoOptions:
    """The options of a command that takes none."""


@command("list", NoOptions, aliases=("tasks",), help="the benchmark tasks: protocol and time per level")
def list_tasks(options: NoOptions) -> None:
    from ticketbench.catalog import (
        CPU_BF16_STEP_SECONDS,
        CPU_LEVEL_SECONDS,
        CPU_STEP_SECONDS,
        GPU_LEVEL_SECONDS,
        GPU_STEP_SECONDS,
        level_time,
        protocol_summary,
    )

    for name in task_names():
        task = load_task(name)
        bf16 = f" (bf16-mixed: {level_time(task, {}, CPU_BF16_STEP_SECONDS)} with AMX-BF16)" \
            if name in CPU_BF16_STEP_SECONDS else ""
        print(f"{name}\n    {protocol_summary(task)}\n    time per level: "
              f"CPU {level_time(task, CPU_LEVEL_SECONDS, CPU_STEP_SECONDS)}{bf16}, "
              f"GPU {level_time(task, GPU_LEVEL_SECONDS, GPU_STEP_SECONDS)}")
    print("(CPU: 2-core x86 machine with AVX-512, 1 thread, float32 unless said; ~ marks a projection from "
          "measured seconds per step; a CPU with AVX2 only takes 1.5-2.2x as long for the CIFAR-10 tasks)")


@command("methods", NoOptions, help="the registered pruning methods (built in and installed plug-ins)")
def methods(options: NoOptions) -> None:
    from ticketbench.pruning.methods import broken_methods, get_method, method_names, refused_methods

    for name in method_names():
        chosen = get_method(name)
        when = "after training, rewound" if chosen.after_training else "at initialisation"
        print(f"{name:20s} {chosen.scope:9s} {when:24s} {chosen.fn.__module__}")
    for name, why in broken_methods().items():
        print(f"{name:20s} BROKEN: {why}")
    for name, why in refused_methods():
        print(f"{name:20s} REFUSED: {why}")


@dataclass(frozen=True)
class ShowOptions:
    """The options of ``show``."""

    protocol: shared.Protocol = group(shared.Protocol)
    task: str = shared.task()


@command("show", ShowOptions, help="the fully resolved configuration of a task")
def show(options: ShowOptions) -> None:
    import yaml

    task = shared.resolve_task(options.task, options.protocol)
    print(yaml.safe_dump(plain(task), sort_keys=False), end="")
    print(f"# fingerprint {task.fingerprint()}: run directories <out>/{task.name}/<arm>-seed<S>-{task.fingerprint()}")


@dataclass(frozen=True)
class RunsOptions:
    """The options of ``runs``."""

    roots: list[Path] = option(nargs="*", type=values.directory, default=[Path("runs")],
                               help="run directories, or directories to look under (default: runs)")


@command("runs", RunsOptions, help="run directories: task, arm, seed, levels done, status, W&B")
def runs(options: RunsOptions) -> None:
    from ticketbench.listing import run_row
    from ticketbench.report import text_table

    rows = [run_row(r) for r in discover(options.roots)]
    print(text_table(rows, list(rows[0])), end="")


@dataclass(frozen=True)
class TableOptions:
    """The options of ``table``."""

    runs: list[Path] = option(nargs="+", type=values.directory,
                              help="run directories (e.g. the imp and reinit arms)")
    mean: bool = option("--mean", action="store_true", default=False,
                        help="one column group per arm: seeds, mean early-stop step, mean test accuracy [95%% CI]")


@command("table", TableOptions, help="Markdown table of the per-level records of run directories (and the points of "
                                     "instability analyses)")
def table(options: TableOptions) -> None:
    from ticketbench.report import level_table, mean_table, path_table

    named = [open_run(_run_dir(p)) for p in options.runs]
    analyses = [r.path for r in named if isinstance(r, StabilityDir)]
    run_dirs = [r.path for r in named if not isinstance(r, StabilityDir)]
    if run_dirs:
        print((mean_table if options.mean else level_table)(run_dirs), end="")
    if analyses:
        print(("\n" if run_dirs else "") + path_table(analyses), end="")


def _run_dir(path: Path) -> Path:
    """A run directory named on the command line (it holds meta.json)."""
    if not (path / "meta.json").is_file():
        raise RunError(f"{path}: not a run directory (no meta.json); `ticketbench runs DIR` lists them")
    return path
