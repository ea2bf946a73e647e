"""Jobs of a sweep, the sweep's directory, and the state of every job.

A job is what an executor schedules: one seed of one task with all of its requested arms
(winning tickets and controls train together, so no job waits on another), or one method run.
It is one ``ticketbench run`` command; everything it trains lives in ordinary run directories,
so a job resumes at level granularity, and their locks keep two jobs off one directory.

The sweep's own directory, ``<out>/sweeps/sweep-<hash of its jobs>/``, holds only bookkeeping::

    jobs/<job>.json     the job's command and its last attempt: host, pid, SLURM id, exit code
    logs/<job>.log      the output of every attempt of the job, appended
    slurm/              submitit's files (with --executor slurm)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ticketbench.atomic import write_json
from ticketbench.config import TaskConfig
from ticketbench.engine.arms import Arm
from ticketbench.storage.directory import Directory


@dataclass
class Job:
    """One ``ticketbench run`` (``argv`` after ``ticketbench``) and the arms it trains."""

    name: str
    argv: tuple[str, ...]
    task: TaskConfig
    arms: list[Arm]

    def levels(self) -> tuple[int, int]:
        """Levels finished and levels asked for, over all of the job's arms."""
        asked = sum(len(arm.levels) for arm in self.arms)
        return sum(arm.run.has_level(level) for arm in self.arms for level in arm.levels), asked

    def unfinished(self) -> list[tuple[Arm, int]]:
        """The (arm, level) pairs without a record yet, an arm stopping at a diverged level."""
        left = []
        for arm in self.arms:
            if arm.run.path.is_dir() and arm.run.diverged_level() is not None:
                continue
            left += [(arm, level) for level in arm.levels if not arm.run.has_level(level)]
        return left

    def steps(self, level: int) -> int:
        """Optimizer steps of one arm's ``level`` (later levels start at the rewind step)."""
        return self.task.max_steps - (self.task.rewind_step if level else 0)

    def holder(self) -> str | None:
        """Who trains one of this job's run directories right now (from its lock), if anyone."""
        return next((who for who in map(lock_holder, (a.run for a in self.arms)) if who), None)


def lock_holder(run: Directory) -> str | None:
    """The holder named in a run directory's lock while a process holds it; None when free."""
    path = run.path / ".lock"
    if not path.is_file():
        return None
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "another process"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


ATTEMPT = "=== "  # the log line that opens each attempt of a job


@dataclass(frozen=True)
class SweepDir:
    """The bookkeeping directory of one sweep (see the module docstring); jobs by name."""

    path: Path

    @classmethod
    def for_jobs(cls, out: Path, jobs: list[Job]) -> SweepDir:
        digest = hashlib.sha256("\n".join(" ".join(j.argv) for j in jobs).encode()).hexdigest()[:8]
        return cls(Path(out) / "sweeps" / f"sweep-{digest}")

    def state_path(self, name: str) -> Path:
        return self.path / "jobs" / f"{name}.json"

    def log_path(self, name: str) -> Path:
        return self.path / "logs" / f"{name}.log"

    def state(self, name: str) -> dict[str, Any]:
        """The job's last recorded attempt ({} when it never started or the file is unreadable)."""
        try:
            state = json.loads(self.state_path(name).read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def record(self, name: str, **fields: Any) -> None:
        """Update the job's state file with ``fields``."""
        write_json(self.state_path(name), {**self.state(name), "job": name, **fields})

    def last_line(self, name: str) -> str:
        """The last line the job printed in its log ('' when there is none)."""
        try:
            with open(self.log_path(name), "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 8192))
                text = handle.read().decode(errors="replace")
                lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(ATTEMPT)]
        except OSError:
            return ""
        return lines[-1] if lines else ""


def start_job(sweep: SweepDir, name: str, argv: tuple[str, ...], env: dict[str, str], executor: str,
              **popen: Any) -> subprocess.Popen:
    """Start one attempt of job ``name`` (``python -m ticketbench`` with ``argv``) for ``executor``,
    its output appended to its log, and record it as running."""
    log = sweep.log_path(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write(f"{ATTEMPT}{_now()} on {socket.gethostname()}: ticketbench {' '.join(argv)}\n")
        handle.flush()
        process = subprocess.Popen([sys.executable, "-m", "ticketbench", *argv], stdout=handle,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, **popen)
    sweep.record(name, command=["ticketbench", *argv], executor=executor, state="running", host=socket.gethostname(),
                 pid=process.pid, started=_now(), exit_code=None)
    return process


ENDED = ("CANCELLED", "COMPLETED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")


def in_slurm(state: dict[str, Any], queued: dict[str, str]) -> str | None:
    """The squeue state of a job's SLURM job while SLURM still runs or holds it (None when it does
    not): squeue lists a job for a while after it ended, in an ended state, or COMPLETING once the
    job's command has exited and recorded it (after ``scancel``, say)."""
    slurm_id = state.get("slurm_job_id") if state.get("executor") == "slurm" else None
    listed = queued.get(slurm_id) if slurm_id else None
    if listed is None or listed in ENDED or (listed == "COMPLETING" and state.get("state") == "exited"):
        return None
    return listed


STOPPED = (128 + 2, 128 + 15, -2, -15)  # exit codes of a job stopped by SIGINT / SIGTERM: it resumes


def end_job(sweep: SweepDir, name: str, exit_code: int) -> None:
    sweep.record(name, state="exited", exit_code=exit_code, ended=_now())


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def thread_env(threads: int) -> dict[str, str]:
    """This process's environment for a job limited to ``threads`` CPU threads."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    return env


@dataclass
class JobStatus:
    """One row of ``ticketbench sweep --status``."""

    job: str
    levels: str
    state: str  # done | running | queued | failed | stopped (levels left; resumes) | not started
    detail: str

    def row(self) -> dict[str, str]:
        return asdict(self)


def job_status(sweep: SweepDir, job: Job, queued: dict[str, str] | None = None) -> JobStatus:
    """Where ``job`` stands, from its run directories (levels, locks), its state file and log, and
    ``queued`` (SLURM job id -> squeue state) for jobs handed to a scheduler."""
    done, asked = job.levels()
    levels = f"{done}/{asked}"
    state = sweep.state(job.name)
    if not job.unfinished():
        diverged = [a.run.path.name for a in job.arms if a.run.path.is_dir() and a.run.diverged_level() is not None]
        if diverged:
            return JobStatus(job.name, levels, "failed", f"diverged: {', '.join(diverged)}")
        return JobStatus(job.name, levels, "done", "")
    holder = job.holder()
    if holder:
        return JobStatus(job.name, levels, "running", holder)
    listed = in_slurm(state, queued or {})
    if listed:
        word = "running" if listed in ("RUNNING", "COMPLETING") else "queued"
        return JobStatus(job.name, levels, word, f"SLURM job {state['slurm_job_id']} {listed}")
    if not state:  # never run by this sweep: not at all, or by hand / another sweep
        return JobStatus(job.name, levels, "not started" if not done else "stopped", "")
    code, last = state.get("exit_code"), sweep.last_line(job.name)
    if code not in (None, 0, *STOPPED):
        return JobStatus(job.name, levels, "failed", f"exit {code}: {last}")
    how = "killed" if code is None else f"exit {code}"
    return JobStatus(job.name, levels, "stopped", f"{how}: {last}" if last else how)
