"""``ticketbench sweep --executor slurm`` against a real SLURM: submitit submits the jobs as an
array to slurmctld, slurmd runs them. The cluster is the one ``SLURM_CONF`` names, or one brought
up on this machine for these tests with ``.ci/slurm-up`` (as root). Without ``sbatch`` the tests
are skipped, except where ``TICKETBENCH_REQUIRE_SLURM`` is set (in ``.ci/run``): there they fail.

What this proves: the submission (sbatch options, array, logs), jobs that train and write their
records, ``scancel`` leaving a job stopped that a second submission resumes, and a requeued job
(what a preemption does) resuming by itself. What a real cluster adds: several nodes, which must
share the file system that holds the run and sweep directories (the locks are ``flock`` locks).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SWEEP_GRID, SWEEP_SHORT, sweep_masks, sweep_records, wait_for
from test_cli import ticketbench

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SLURM = ["--executor", "slurm", "--cpus", "1", "--time", "15"]


def _sinfo_answers() -> bool:
    return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if shutil.which("sbatch") is None:
        reason = ("sbatch not found: the SLURM executor tests need a SLURM (apt-get install slurm-wlm munge; "
                  ".ci/run installs and starts one)")
        if os.environ.get("TICKETBENCH_REQUIRE_SLURM"):
            pytest.fail(reason)
        pytest.skip(reason)
    if os.environ.get("SLURM_CONF") and _sinfo_answers():
        yield
        return
    if os.geteuid() != 0:
        pytest.skip("no SLURM_CONF of a running cluster, and starting one (.ci/slurm-up) needs root")
    where = tmp_path_factory.mktemp("slurm")
    up = subprocess.run([str(REPO / ".ci" / "slurm-up"), str(where)], capture_output=True, text=True, timeout=180)
    assert up.returncode == 0, up.stderr
    os.environ["SLURM_CONF"] = up.stdout.strip().splitlines()[-1].split("=", 1)[1]
    try:
        yield
    finally:
        subprocess.run([str(REPO / ".ci" / "slurm-down"), str(where)], capture_output=True, timeout=120)
        del os.environ["SLURM_CONF"]


def _states(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("sweeps/*/jobs/*.json"))]


def _levels(out: Path) -> int:
    return len(list(out.glob("mnist1d-mlp/*/levels/level_*.json")))


def _log(out: Path) -> str:
    return "".join(p.read_text() for p in sorted(out.glob("sweeps/*/logs/*.log")))


def test_a_sweep_on_slurm_trains_what_separate_runs_train(slurm: None, tmp_path: Path, sweep_by_hand: Path) -> None:
    result = ticketbench(*SWEEP_GRID, *SLURM, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "submitted 2 job(s) as SLURM job" in result.stdout
    wait_for(lambda: [s.get("exit_code") for s in _states(tmp_path)] == [0, 0], "both SLURM jobs to finish")
    assert sweep_records(tmp_path) == sweep_records(sweep_by_hand)
    assert sweep_masks(tmp_path) == sweep_masks(sweep_by_hand)
    assert {s["executor"] for s in _states(tmp_path)} == {"slurm"}
    script = next(tmp_path.glob("sweeps/*/slurm/*_submission.sh")).read_text()
    assert "#SBATCH --array=0-1" in script and "#SBATCH --cpus-per-task=1" in script and "--requeue" in script
    status = ticketbench(*SWEEP_GRID, *SLURM, "--status", "--out", str(tmp_path))
    assert status.stdout.strip().endswith("2 of 2 job(s) done; nothing to train"), status.stdout
    again = ticketbench(*SWEEP_GRID, *SLURM, "--out", str(tmp_path))
    assert again.returncode == 0 and "nothing to train" in again.stdout


ONE = [*SWEEP_GRID[:3], "0", *SWEEP_GRID[4:]]  # seed 0 only


def test_a_cancelled_job_is_resumed_by_submitting_the_sweep_again(slurm: None, tmp_path: Path,
                                                                   sweep_by_hand: Path) -> None:
    """The job pauses as it writes level 1's record; ``scancel`` stops it (SIGTERM); the same sweep
    submitted again trains levels 1 and 2 only and ends with the records of an uninterrupted run."""
    first = ticketbench(*ONE, *SLURM, "--out", str(tmp_path),
                        env={"TICKETBENCH_FAULT": "pause:write levels/level_01.json"})
    assert first.returncode == 0, first.stderr
    wait_for(lambda: "paused at write levels/level_01.json" in _log(tmp_path), "the job to pause in level 1")
    (state,) = _states(tmp_path)
    running = ticketbench(*ONE, *SLURM, "--status", "--out", str(tmp_path))
    assert running.returncode == 1 and " running " in running.stdout and "pid " in running.stdout, running.stdout
    level_0 = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("mnist1d-mlp/*/levels/level_00.json")}
    subprocess.run(["scancel", state["slurm_job_id"]], check=True, timeout=30)
    wait_for(lambda: "stopped by SIGTERM" in _log(tmp_path), "the cancelled job to stop")
    wait_for(lambda: _states(tmp_path)[0]["exit_code"] == 143, "the job's exit to be recorded")
    status = ticketbench(*ONE, *SLURM, "--status", "--out", str(tmp_path))
    assert " stopped " in status.stdout and " 1/5 " in status.stdout, status.stdout

    second = ticketbench(*ONE, *SLURM, "--out", str(tmp_path))
    assert "submitted 1 job(s)" in second.stdout, second.stdout + second.stderr
    wait_for(lambda: _states(tmp_path)[0]["exit_code"] == 0, "the resubmitted job to finish")
    attempts = _log(tmp_path).split("=== ")[1:]
    assert len(attempts) == 2 and "level  0" not in attempts[1]
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("mnist1d-mlp/*/levels/level_00.json")} == level_0
    expected = {name: recs for name, recs in sweep_records(sweep_by_hand).items() if "-seed0-" in name}
    assert sweep_records(tmp_path) == expected


def test_a_requeued_job_resumes_by_itself(slurm: None, tmp_path: Path) -> None:
    """``scontrol requeue`` (what a preemption with PreemptMode=REQUEUE does) in the middle of
    level 1: SLURM restarts the job, which skips level 0 and finishes."""
    long = ["--max-steps", "1500", "--levels", "3"]
    grid = ["sweep", "mnist1d-mlp", "--seeds", "0", *SWEEP_SHORT, *long]
    assert ticketbench(*grid, *SLURM, "--out", str(tmp_path)).returncode == 0
    wait_for(lambda: _levels(tmp_path) == 1, "level 0 of the job")
    subprocess.run(["scontrol", "requeue", _states(tmp_path)[0]["slurm_job_id"]], check=True, timeout=30)
    wait_for(lambda: _levels(tmp_path) == 3, "the requeued job to finish", seconds=600)
    attempts = _log(tmp_path).split("=== ")[1:]
    assert len(attempts) == 2 and "stopped by SIGTERM" in attempts[0]
    assert "level  0" not in attempts[1] and "level  2" in attempts[1]
