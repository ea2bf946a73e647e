"""``ticketbench sweep``: tasks x seeds x arms (or methods) as jobs, each a ``run`` command whose
argv is written from the sweep's options; trained on local processes or SLURM."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path

from ticketbench.cli import shared, values
from ticketbench.cli.options import group, option
from ticketbench.cli.registry import command, parse
from ticketbench.cli.run import RunOptions, job_argv, plan
from ticketbench.config import TaskConfig
from ticketbench.controls import CONTROLS
from ticketbench.errors import ConfigError

if typing.TYPE_CHECKING:
    from ticketbench.sweep.jobs import Job


@dataclass(frozen=True)
class SlurmFlags:
    """The SLURM resources of ``sweep --executor slurm``."""

    slurm_config: Path | None = option("--slurm-config", type=Path, metavar="FILE.yaml",
                                       help="YAML with any of: partition, time, cpus, gpus, mem_gb, max_requeues, "
                                            "sbatch (mapping)")
    partition: str | None = option("--partition")
    time: str | None = option("--time", help="time limit per job: minutes, H:MM:SS or D-HH:MM (default 240 min); "
                                             "a job reaching it is requeued and resumes")
    cpus: int | None = option("--cpus", type=values.positive, help="CPUs per job (default 1)")
    gpus: int | None = option("--gpus", type=int, help="GPUs per job (default 0)")
    mem_gb: float | None = option("--mem-gb", type=float, help="memory per job in GB")
    max_requeues: int | None = option("--max-requeues", type=int,
                                      help="time-limit requeues of a job before it fails (default 20)")
    sbatch: list[str] = option("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                               help="any further sbatch option, e.g. --sbatch account=lab --sbatch qos=low "
                                    "(repeatable)")


@dataclass(frozen=True)
class SweepOptions:
    """The options of ``sweep``; those of the same name as an option of ``run`` are passed on to
    every job (``method`` aside: here it names several)."""

    protocol: shared.Protocol = group(shared.Protocol)
    deterministic: bool = shared.deterministic()
    output: shared.Output = group(shared.Output)
    pruning: shared.Pruning = group(shared.Pruning)
    checkpoint_every: float | None = shared.checkpoint_every()
    tasks: list[str] = option(nargs="*", default=["mnist1d-mlp"], metavar="task",
                              help="task names or task YAML files (default: mnist1d-mlp)")
    seeds: str = option("--seeds", default="0", help="seeds: 0-4, 0,3,7 or 0-2,7 (default: 0)")
    arms: str = option("--arms", default="none", metavar="ARM[,ARM...]",
                       help=f"arms trained together in each job: {', '.join(CONTROLS)} (default: none)")
    method: str | None = option("--method", metavar="NAME[,NAME...]",
                                help="registered pruning methods instead of IMP arms: one job per method and seed")
    status: bool = option("--status", action="store_true", default=False,
                          help="show every job's state and train nothing; exit 1 while any job has levels left")
    executor: str = option("--executor", choices=("local", "slurm"), default="local",
                           help="local: processes on this machine (default); slurm: one array task per job via "
                                "submitit")
    jobs: int | None = option("--jobs", type=values.positive, metavar="N",
                              help="local: jobs at once (default: one per visible GPU, else one per CPU core)")
    threads: int | None = option("--threads", type=values.positive, metavar="T",
                                 help="local: CPU threads per job (default: the cores shared out evenly among the "
                                      "jobs)")
    slurm: SlurmFlags = group(SlurmFlags, "SLURM (--executor slurm; flags override --slurm-config)")


PASSED_ON = sorted({f.name for f in dataclasses.fields(SweepOptions)} & {f.name for f in dataclasses.fields(RunOptions)}
                   - {"method"})


def sweep_jobs(options: SweepOptions) -> list[Job]:
    """The grid of ``sweep`` as jobs: task x seed x (all arms together | each method)."""
    from ticketbench.seeds import parse_seeds
    from ticketbench.sweep.jobs import Job

    seeds = parse_seeds(options.seeds)
    options.output.wandb_options()
    methods = list(dict.fromkeys(m.strip() for m in (options.method or "").split(",") if m.strip()))
    if options.method is not None and not methods:
        raise ConfigError(f"--method {options.method!r} names no method; `ticketbench methods` lists them")
    if methods and options.arms != "none":
        raise ConfigError("--arms and --method exclude each other: a sweep trains IMP arms or pruning methods")
    controls = ",".join(values.controls(options.arms))
    passed = {name: getattr(options, name) for name in PASSED_ON}
    jobs: list[Job] = []
    for name in options.tasks:
        task_ref = str(Path(name).resolve()) if name.endswith((".yaml", ".yml")) else name
        for seed in seeds:
            for method in methods or [None]:
                argv = job_argv(RunOptions(task_ref, seed, control=controls, method=method, progress=False, **passed))
                task, arms = plan(parse(argv)[1])
                if len(arms) > 1 and seed == seeds[0]:
                    _check_stackable(task, options.arms)
                label = "+".join(arm.name for arm in arms)
                jobs.append(Job(f"{task.name}-seed{seed}-{label}", tuple(argv), task, arms))
    return jobs


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


def _sbatch_option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ConfigError(f"--sbatch {text!r}: expected KEY=VALUE (an sbatch option without its dashes), "
                          "e.g. account=lab")
    return key.strip(), value.strip()


@command("sweep", SweepOptions, kept="every finished level",
         help="many runs: tasks x seeds x arms (or methods) as jobs on local processes or SLURM")
def sweep(options: SweepOptions) -> int:
    from ticketbench.report import text_table
    from ticketbench.sweep.jobs import SweepDir, job_status

    jobs = sweep_jobs(options)
    sweep_dir = SweepDir.for_jobs(options.output.out, jobs)
    if options.executor == "slurm":
        from ticketbench.sweep.slurm import SlurmOptions

        flags = options.slurm
        slurm = SlurmOptions.load(flags.slurm_config, partition=flags.partition, time=flags.time, cpus=flags.cpus,
                                  gpus=flags.gpus, mem_gb=flags.mem_gb, max_requeues=flags.max_requeues,
                                  sbatch=dict(map(_sbatch_option, flags.sbatch)))
    pending = [job for job in jobs if job.unfinished()]
    if options.status or not pending:
        from ticketbench.sweep.slurm import squeue

        queued = squeue() if any(sweep_dir.state(j.name).get("executor") == "slurm" for j in jobs) else {}
        rows = [job_status(sweep_dir, job, queued).row() for job in jobs]
        print(text_table(rows, list(rows[0])), end="")
        done = sum(r["state"] == "done" for r in rows)
        print(f"sweep: {done} of {len(jobs)} job(s) done" + ("; nothing to train" if not pending else ""))
        return 0 if not pending else 1
    if options.executor == "slurm":
        from ticketbench.sweep.slurm import submit

        return submit(sweep_dir, jobs, slurm)
    from ticketbench.sweep.local import run_local

    return run_local(sweep_dir, jobs, options.jobs, options.threads)
