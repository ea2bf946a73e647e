"""The local executor: the jobs of a sweep as separate processes on this machine, N at a time,
each with its share of the CPU threads, or one GPU each when GPUs are visible.

It prints one line per finished level of every job (read from the records the jobs write) with
the sweep's overall ETA. Ctrl-C or SIGTERM stops every job cleanly (each gets SIGTERM and ends
after its finished levels); the same command resumes. Jobs run in sessions of their own, so
Ctrl-C in the terminal reaches only this process, and on Linux each job gets SIGTERM if this
process dies without stopping it.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ticketbench.catalog import duration
from ticketbench.engine.arms import Arm
from ticketbench.engine.record import level_line
from ticketbench.interrupt import Interrupted, stop_on_signals
from ticketbench.sweep.jobs import Job, SweepDir, end_job, start_job, thread_env

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
STOP_GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class Slots:
    """How many jobs run at once, the CPU threads of each and the GPUs they take turns on."""

    jobs: int
    threads: int
    gpus: tuple[str, ...] = ()

    def describe(self) -> str:
        each = f"GPU {', '.join(self.gpus)} (one per job), " if self.gpus else ""
        return f"{self.jobs} at a time, {each}{self.threads} CPU thread(s) each"


def plan_slots(requested: int | None, pending: int, threads: int | None = None) -> Slots:
    """``requested`` jobs at once (default: one per GPU where GPUs are visible, else one per
    core), never more than the jobs pending; ``threads`` CPU threads each (default: the cores
    shared out evenly)."""
    import torch

    cores = len(os.sched_getaffinity(0))
    gpus: tuple[str, ...] = ()
    if torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = tuple(visible.split(",")) if visible else tuple(map(str, range(torch.cuda.device_count())))
    n = max(1, min(requested or len(gpus) or cores, pending))
    return Slots(n, threads or max(1, cores // n), gpus)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the sweep process dies (Linux prctl)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Progress:
    """The level records that appear while the sweep runs, and the ETA of what is left, from the
    optimizer steps done per second of wall time since the sweep began."""

    jobs: list[Job]
    began: float = field(default_factory=time.monotonic)
    left: dict[str, list[tuple[Arm, int, int]]] = field(default_factory=dict)  # job -> [(arm, level, steps)]
    steps_left: int = 0
    steps_done: int = 0
    levels_done: int = 0
    levels: int = 0

    def __post_init__(self) -> None:
        for job in self.jobs:
            self.left[job.name] = [(arm, level, job.steps(level)) for arm, level in job.unfinished()]
        self.steps_left = sum(steps for left in self.left.values() for _, _, steps in left)
        self.levels = sum(map(len, self.left.values()))

    def finished_levels(self, job: Job) -> Iterator[dict]:
        """Records of ``job`` that appeared since the last call, counted as they are yielded."""
        still = []
        for arm, level, steps in self.left[job.name]:
            if not arm.run.has_level(level):
                still.append((arm, level, steps))
                continue
            self.steps_left -= steps
            self.steps_done += steps
            self.levels_done += 1
            yield json.loads(arm.run.level_path(level).read_text())
        self.left[job.name] = still

    def eta(self) -> str:
        elapsed = time.monotonic() - self.began
        head = f"sweep {self.levels_done}/{self.levels} levels"
        if not self.steps_done or not self.steps_left:
            return head
        return f"{head}, ETA {duration(elapsed / self.steps_done * self.steps_left)}"


def run_local(sweep: SweepDir, jobs: list[Job], requested: int | None, threads: int | None = None) -> int:
    """Run every job with levels left, ``requested`` at a time with ``threads`` CPU threads each;
    0 when all finished, 1 when a job failed, 128 + signal when stopped by SIGINT / SIGTERM."""
    queue = []
    for job in (j for j in jobs if j.unfinished()):
        holder = job.holder()
        if holder:
            log.info(f"[{job.name}] is being trained by {holder}: not started again")
        else:
            queue.append(job)
    slots = plan_slots(requested, len(queue), threads)
    progress = Progress(queue)
    log.info(f"sweep: {len(queue)} job(s) with {progress.levels} level(s) to train, {slots.describe()}; "
             f"logs in {sweep.path / 'logs'}")
    running: dict[int, tuple[Job, subprocess.Popen]] = {}  # slot -> job
    failed: list[str] = []
    try:
        with stop_on_signals():
            while queue or running:
                for slot in range(slots.jobs):
                    if slot in running or not queue:
                        continue
                    job = queue.pop(0)
                    env = thread_env(slots.threads)
                    if slots.gpus:
                        env["CUDA_VISIBLE_DEVICES"] = slots.gpus[slot % len(slots.gpus)]
                    process = start_job(sweep, job.name, job.argv, env, "local", start_new_session=True,
                                        preexec_fn=_die_with_parent)
                    running[slot] = (job, process)
                    log.info(f"[{job.name}] started (pid {process.pid})")
                time.sleep(POLL_SECONDS)
                for slot, (job, process) in list(running.items()):
                    code = process.poll()  # before reading the records: a job that ended has written all of its
                    for rec in progress.finished_levels(job):
                        log.info(f"[{job.name}] {level_line(rec)}  | {progress.eta()}")
                    if code is None:
                        continue
                    del running[slot]
                    end_job(sweep, job.name, code)
                    if code == 0:
                        log.info(f"[{job.name}] done")
                    else:
                        failed.append(job.name)
                        log.warning(f"[{job.name}] failed (exit {code}): {sweep.last_line(job.name)}")
    except Interrupted as stop:
        _stop(sweep, list(running.values()))
        log.warning(f"sweep: stopped by {stop.name}; {len(running)} job(s) were interrupted after their finished "
                    "levels; run the same command to resume")
        return stop.exit_code
    if failed:
        log.warning(f"sweep: {len(failed)} job(s) failed ({', '.join(failed)}); their logs are in "
                    f"{sweep.path / 'logs'}; the same command retries them")
        return 1
    log.info(f"sweep: every job done ({progress.levels_done} level(s) trained) in "
             f"{duration(time.monotonic() - progress.began)}")
    return 0


def _stop(sweep: SweepDir, running: list[tuple[Job, subprocess.Popen]]) -> None:
    """SIGTERM to every job, then SIGKILL to any still alive after the grace period."""
    for _, process in running:
        process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for job, process in running:
        try:
            code = process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        end_job(sweep, job.name, code)
