"""``ticketbench sweep`` with the local executor: the grid, its errors, real job processes on
MNIST-1D whose records equal the same commands run by hand, and a sweep killed mid-level that
finishes with the same records when it is run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SWEEP_GRID as GRID
from conftest import sweep_masks, sweep_records, wait_for
from test_cli import ticketbench

from ticketbench.config import load_task
from ticketbench.errors import ConfigError
from ticketbench.seeds import parse_seeds
from ticketbench.sweep.slurm import SlurmOptions, level_outlasts, parse_time


@pytest.mark.parametrize(("text", "seeds"), [("0-4", [0, 1, 2, 3, 4]), ("0,3,7", [0, 3, 7]), ("0-2,7,1", [0, 1, 2, 7]),
                                             ("5", [5])])
def test_seeds_are_ranges_and_lists(text: str, seeds: list[int]) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "3-1", "-1", "0-", "1,,2", "0-2-4"])
def test_bad_seeds_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds(text)


@pytest.mark.parametrize(("args", "message"), [
    (["--seeds", "4-2"], "--seeds: '4-2' is not an increasing range"),
    (["--arms", "none,shuffle"], "unknown control 'shuffle'"),
    (["--method", "snip", "--arms", "reinit"], "--arms and --method exclude each other"),
    (["--executor", "slurm", "--time", "soon"], "--time: 'soon' is not a time limit"),
    (["--executor", "slurm", "--time", "2"], "--time 2 min is not longer than the 2-minute warning SLURM sends"),
    (["--executor", "slurm", "--sbatch", "account"], "--sbatch 'account': expected KEY=VALUE"),
    (["--executor", "slurm", "--slurm-config", "{missing}"], "--slurm-config {missing}: no such file"),
    (["--arms", "reinit"], "needs the winning-ticket mask"),
    (["--method", "nonesuch"], "unknown method 'nonesuch'"),
    (["conv2-cifar10", "--set", "model=conv2-dropout", "--arms", "none,random-prune"],
     "which conv2-dropout (dropout) does not allow"),
])
def test_bad_sweeps_exit_2_in_one_line_and_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    missing = str(tmp_path / "cluster.yaml")
    args = [a.format(missing=missing) for a in args]
    message = message.format(missing=missing)
    result = ticketbench("sweep", *([] if args[0].endswith("cifar10") else ["mnist1d-mlp"]), *args,
                         "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not any(tmp_path.iterdir())


def test_slurm_options_come_from_yaml_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text("partition: gpu\ntime: '1-02:00'\ngpus: 1\nsbatch: {account: lab, qos: low}\n")
    options = SlurmOptions.load(config, time="3:30:00", cpus=4, sbatch={"qos": "high"})
    assert (options.partition, options.time, options.cpus, options.gpus) == ("gpu", 210, 4, 1)
    assert options.sbatch == {"account": "lab", "qos": "high"}
    params = options.parameters()
    assert params["additional_parameters"] == {"requeue": True, "account": "lab", "qos": "high"}
    assert (params["partition"], params["time"], params["gpus_per_node"], params["cpus_per_task"]) == ("gpu", 210, 1, 4)
    assert parse_time(90) == 90 and parse_time("1-12:00") == 2160 and parse_time("0:00:30") == 1
    config.write_text("partition: gpu\nwalltime: 10\n")
    with pytest.raises(ConfigError, match="unknown key 'walltime'; valid: cpus, gpus, max_requeues"):
        SlurmOptions.load(config)
    config.write_text("cpus: 0\n")
    with pytest.raises(ConfigError, match="cpus must be >= 1"):
        SlurmOptions.load(config)


def test_a_time_limit_shorter_than_a_level_is_said_with_both_numbers() -> None:
    lenet = load_task("lenet300-mnist")  # 320 s a level measured on one CPU thread
    assert level_outlasts(lenet, 60, ("run",)) is None
    assert level_outlasts(lenet, 5, ("run",)) == (
        "sweep: warning: a level of lenet300-mnist takes about 5.3 min on one CPU thread, longer than --time 5 min "
        "less SLURM's 2-minute warning; without --checkpoint-every a level that outlasts the limit starts again "
        "from its beginning at every requeue and never finishes")
    assert level_outlasts(lenet, 5, ("run", "--checkpoint-every", "2")).endswith(
        "each requeued job resumes its level from the last checkpoint (--checkpoint-every)")
    assert "6.1 h" in level_outlasts(load_task("conv6-cifar10"), 240, ("run",))  # projected from a step's time


def test_the_local_sweep_equals_separate_runs_and_resumes_to_done(tmp_path: Path, sweep_by_hand: Path) -> None:
    result = ticketbench(*GRID, "--jobs", "2", "--threads", "1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 at a time, 1 CPU thread(s) each" in result.stdout
    lines = [line for line in result.stdout.splitlines() if " level " in line]
    assert len(lines) == 10 and all("| sweep " in line for line in lines)  # 2 seeds x (3 imp + 2 control)
    assert sweep_records(tmp_path) == sweep_records(sweep_by_hand) and len(sweep_records(tmp_path)) == 4
    assert sweep_masks(tmp_path) == sweep_masks(sweep_by_hand)
    again = ticketbench(*GRID, "--out", str(tmp_path))
    assert again.returncode == 0 and again.stdout.strip().endswith("2 of 2 job(s) done; nothing to train")
    rows = [line.split()[1:3] for line in again.stdout.splitlines()[2:-1]]
    assert rows == [["5/5", "done"]] * 2 and "level  0" not in again.stdout


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL])
def test_a_sweep_stopped_mid_level_finishes_with_the_same_records(tmp_path: Path, sweep_by_hand: Path,
                                                                  stop: signal.Signals) -> None:
    """Both jobs pause while writing level 1's record (level 0 recorded; MNIST-1D has no
    validation split, so no mid-level point); the sweep is stopped (Ctrl-C, or killed outright:
    its jobs then get SIGTERM from the kernel) and run again."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TICKETBENCH_FAULT="pause:write levels/level_01.json")
    sweep = subprocess.Popen([sys.executable, "-m", "ticketbench", *GRID, "--jobs", "2", "--threads", "1",
                              "--out", str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    def logs() -> list[Path]:
        return sorted(tmp_path.glob("sweeps/*/logs/*.log"))

    wait_for(lambda: sum("paused at write levels/level_01.json" in p.read_text() for p in logs()) == 2,
             "both jobs to pause in level 1")
    sweep.send_signal(stop)
    output, _ = sweep.communicate(timeout=120)
    wait_for(lambda: all("stopped by SIGTERM" in p.read_text() for p in logs()), "both jobs to stop")
    if stop == signal.SIGINT:  # the sweep stops its jobs, waits for them and says so
        assert sweep.returncode == 130 and "stopped by SIGINT" in output, output
        states = [json.loads(p.read_text()) for p in tmp_path.glob("sweeps/*/jobs/*.json")]
        assert [s["exit_code"] for s in states] == [143, 143]
    # killed outright, the sweep leaves its jobs to the SIGTERM the kernel sends them when it dies
    assert {r["level"] for recs in sweep_records(tmp_path).values() for r in recs} == {0}
    status = ticketbench(*GRID, "--status", "--out", str(tmp_path))
    rows = [line.split()[1:3] for line in status.stdout.splitlines()[2:-1]]
    assert status.returncode == 1 and rows == [["1/5", "stopped"]] * 2, status.stdout  # 1: levels are left
    again = ticketbench(*GRID, "--jobs", "2", "--threads", "1", "--out", str(tmp_path))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "level  0" not in again.stdout  # finished levels are not trained again
    assert sweep_records(tmp_path) == sweep_records(sweep_by_hand)
    assert sweep_masks(tmp_path) == sweep_masks(sweep_by_hand)


def test_a_job_squeue_still_lists_after_it_ended_counts_as_stopped() -> None:
    from ticketbench.sweep.jobs import in_slurm

    submitted = {"executor": "slurm", "slurm_job_id": "7", "state": "submitted"}
    exited = {**submitted, "state": "exited", "exit_code": 143}
    assert in_slurm(submitted, {"7": "PENDING"}) == "PENDING" and in_slurm(submitted, {"7": "RUNNING"}) == "RUNNING"
    assert in_slurm(submitted, {"7": "COMPLETING"}) == "COMPLETING", "its command may still be running"
    assert in_slurm(exited, {"7": "COMPLETING"}) is None, "scancel'd: the command exited, SLURM cleans up"
    assert in_slurm(submitted, {"7": "CANCELLED"}) is None and in_slurm(submitted, {}) is None
    assert in_slurm({**submitted, "executor": "local"}, {"7": "RUNNING"}) is None
