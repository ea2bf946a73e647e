"""The SLURM executor, through submitit: one array task per job of the sweep.

Each array task runs its job's ``ticketbench run`` as a child process, its output appended to
the job's log in the sweep directory. Before the time limit SLURM sends SIGUSR2 (``--signal``),
and submitit requeues the task; the child ignores SIGUSR2 and is stopped with SIGTERM on the way
out. A requeued or resubmitted task runs the same command, which resumes after the last finished
level. Preempted tasks are requeued by SLURM (``--requeue``). A cancelled task (``scancel``)
stays cancelled; running the sweep again submits it anew.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ticketbench.catalog import CPU_LEVEL_SECONDS, CPU_STEP_SECONDS, duration, projected_level_seconds
from ticketbench.config import TaskConfig, load_task
from ticketbench.errors import ConfigError
from ticketbench.sweep.jobs import Job, SweepDir, end_job, in_slurm, start_job, thread_env
from ticketbench.yaml_files import parse_yaml, read_text

log = logging.getLogger(__name__)

WARNING_MINUTES = 2  # SLURM signals a job this long before its time limit (submitit's signal_delay_s)
TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_time(text: str | int) -> int:
    """A SLURM time limit as minutes: ``90``, ``4:00:00``, ``1-12:00`` (days-hours:minutes)."""
    match = TIME.match(str(text).strip())
    if not match:
        raise ConfigError(f"--time: {text!r} is not a time limit; valid: minutes (90), H:MM:SS (4:00:00) "
                          "or D-HH:MM (1-12:00)")
    days, first, second, third = (int(g) if g else None for g in match.groups())
    if days is None and second is None:  # plain minutes
        return max(1, first or 0)
    if days is None:  # H:MM[:SS]
        return max(1, (first or 0) * 60 + (second or 0) + ((third or 0) + 59) // 60)
    return max(1, days * 1440 + (first or 0) * 60 + (second or 0))


@dataclass(frozen=True)
class SlurmOptions:
    """What each array task asks SLURM for; a YAML file (``--slurm-config``) holds the same keys."""

    partition: str | None = None
    time: int = 240  # minutes; a longer job is requeued and resumes
    cpus: int = 1
    gpus: int = 0
    mem_gb: float | None = None
    max_requeues: int = 20  # time-limit requeues of one job before it counts as failed
    sbatch: dict[str, str] = field(default_factory=dict)  # further sbatch options, e.g. {account: lab}

    @classmethod
    def load(cls, path: Path | None, **flags: Any) -> SlurmOptions:
        """The options of ``path`` (YAML) with the command-line ``flags`` that are not None on top."""
        options = cls()
        if path is not None:
            where = f"--slurm-config {path}"
            data = parse_yaml(read_text(Path(path), "--slurm-config"), where) or {}
            if not isinstance(data, dict):
                raise ConfigError(f"--slurm-config {path}: expected a mapping of options")
            options = cls._from(data, where)
        given = {k: v for k, v in flags.items() if v is not None and v != {}}
        if "sbatch" in given:
            given["sbatch"] = {**options.sbatch, **given["sbatch"]}
        checked = cls._from(given, "command line")
        return replace(options, **{k: getattr(checked, k) for k in given})

    @classmethod
    def _from(cls, data: dict[str, Any], where: str) -> SlurmOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(sorted(known))}")
        values = dict(data)
        try:
            if "time" in values:
                values["time"] = parse_time(values["time"])
                if values["time"] <= WARNING_MINUTES:
                    raise ConfigError(f"--time {values['time']} min is not longer than the {WARNING_MINUTES}-minute "
                                      "warning SLURM sends before the limit: every job would be requeued at once, "
                                      f"again and again; give more than {WARNING_MINUTES} minutes")
            for key in ("cpus", "gpus", "max_requeues"):
                if key in values:
                    values[key] = int(values[key])
                    if values[key] < (1 if key == "cpus" else 0):
                        raise ValueError(f"{key} must be >= {1 if key == 'cpus' else 0}")
            if values.get("mem_gb") is not None:
                values["mem_gb"] = float(values["mem_gb"])
                if not values["mem_gb"] > 0:
                    raise ValueError("mem_gb must be > 0")
            if not isinstance(values.get("sbatch", {}), dict):
                raise ValueError("sbatch must be a mapping of sbatch options to values")
            values["sbatch"] = {str(k): str(v) for k, v in values.get("sbatch", {}).items()}
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: {err}") from None
        return cls(**values)

    def parameters(self) -> dict[str, Any]:
        """submitit's SlurmExecutor parameters."""
        params: dict[str, Any] = {"time": self.time, "cpus_per_task": self.cpus, "ntasks_per_node": 1,
                                  "signal_delay_s": 60 * WARNING_MINUTES, "stderr_to_stdout": True,
                                  "additional_parameters": {"requeue": True, **self.sbatch}}
        if self.partition:
            params["partition"] = self.partition
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        if self.mem_gb is not None:
            params["mem"] = f"{int(self.mem_gb * 1024)}M"
        return params


@dataclass
class SlurmTask:
    """One job of the sweep as a submitit callable (picklable: the sweep directory, the job's
    name and its ``ticketbench`` arguments)."""

    sweep: Path
    name: str
    argv: tuple[str, ...]

    def __call__(self) -> None:
        sweep = SweepDir(self.sweep)
        threads = int(os.environ.get("SLURM_CPUS_PER_TASK", "1"))
        process = start_job(sweep, self.name, self.argv, thread_env(threads), "slurm",
                            preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))
        try:
            code = process.wait()
        finally:  # submitit's requeue handler exits this process: stop the child first
            if process.poll() is None:
                process.terminate()
                code = process.wait()
            end_job(sweep, self.name, code)
        if code:
            raise RuntimeError(f"{self.name}: ticketbench exited with {code}: {sweep.last_line(self.name)}")

    def checkpoint(self, *_: Any, **__: Any) -> Any:
        """submitit calls this before requeueing: the same job again (it resumes by itself)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def level_outlasts(task: TaskConfig, minutes: int, argv: tuple[str, ...]) -> str | None:
    """One line when a level of ``task``, as measured or projected on one CPU thread, outlasts a
    job's time limit less SLURM's warning (None when it fits or was never measured)."""
    if task.name in CPU_LEVEL_SECONDS:
        seconds = CPU_LEVEL_SECONDS[task.name] * task.max_steps / load_task(task.name).max_steps
    elif task.name in CPU_STEP_SECONDS:
        seconds = projected_level_seconds(task, *CPU_STEP_SECONDS[task.name])
    else:
        return None
    if seconds <= 60 * (minutes - WARNING_MINUTES):
        return None
    then = ("each requeued job resumes its level from the last checkpoint (--checkpoint-every)"
            if "--checkpoint-every" in argv else "without --checkpoint-every a level that outlasts the limit starts "
            "again from its beginning at every requeue and never finishes")
    return (f"sweep: warning: a level of {task.name} takes about {duration(seconds)} on one CPU thread, longer than "
            f"--time {minutes} min less SLURM's {WARNING_MINUTES}-minute warning; {then}")


def submit(sweep: SweepDir, jobs: list[Job], options: SlurmOptions) -> int:
    """Submit every job with levels left that is neither queued nor running, as one job array."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--executor slurm needs submitit: pip install submitit") from None
    queued = squeue()
    todo = []
    for job in (j for j in jobs if j.unfinished()):
        state = sweep.state(job.name)
        listed, holder = in_slurm(state, queued), job.holder()
        if listed or holder:
            where = f"queued as SLURM job {state['slurm_job_id']}" if listed else holder
            log.info(f"[{job.name}] already {where}: not submitted again")
        else:
            todo.append(job)
    if not todo:
        log.info("sweep: nothing to submit")
        return 0
    if not options.gpus:
        for line in dict.fromkeys(level_outlasts(job.task, options.time, job.argv) for job in todo):
            if line:
                log.warning(line)
    executor = submitit.SlurmExecutor(folder=sweep.path / "slurm", max_num_timeout=options.max_requeues)
    executor.update_parameters(job_name=f"ticketbench-{sweep.path.name}", **options.parameters())
    try:
        with executor.batch():
            submitted = [executor.submit(SlurmTask(sweep.path.resolve(), job.name, job.argv)) for job in todo]
    except (submitit.core.utils.FailedJobError, OSError, subprocess.SubprocessError) as err:
        first = str(err).strip().splitlines()
        raise ConfigError(f"sbatch refused the sweep: {first[-1] if first else type(err).__name__}") from None
    for job, handle in zip(todo, submitted, strict=True):
        sweep.record(job.name, command=["ticketbench", *job.argv], executor="slurm", state="submitted",
                     slurm_job_id=handle.job_id, exit_code=None)
    ids = sorted({h.job_id.split("_")[0] for h in submitted})
    log.info(f"sweep: submitted {len(todo)} job(s) as SLURM job {', '.join(ids)} ({options.time} min, {options.cpus} "
             f"CPU(s){f', {options.gpus} GPU(s)' if options.gpus else ''} each); logs in {sweep.path / 'logs'}; "
             "`--status` with the same arguments follows them")
    return 0


def squeue() -> dict[str, str]:
    """SLURM job id (array tasks as ``<array>_<task>``) -> state, of the jobs SLURM still knows."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True, timeout=30,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(line.split(None, 1) for line in out.splitlines() if len(line.split(None, 1)) == 2)
