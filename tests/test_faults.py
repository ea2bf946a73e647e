"""Faults through the real command: kills (SIGKILL mid-level and mid-write), a locked run
directory, a full disk, divergence, and bad input — each leaves earlier results intact.

The windows are made reachable with ``TICKETBENCH_FAULT`` (ticketbench.faults): ``pause:POINT``
stops the run at a named point so that the test kills it exactly there."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import one_line_error, snapshot
from test_cli import TINY, ticketbench
from test_data import _source, serve, write_official_files
from test_scoring import CLAIM

from ticketbench.data.store import download
from ticketbench.storage.run_dir import RunDir

LEVELS = 3
RUN = ["run", "lenet300-mnist", *TINY, "--levels", str(LEVELS), "--wandb", "off"]


def _run_dir(out: Path) -> RunDir:
    (path,) = (out / "lenet300-mnist").glob("imp-seed0-*")
    return RunDir(path)


def _records(run: RunDir, ignore: tuple[str, ...] = ("seconds",)) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ignore} for r in run.records()]


def _masks(run: RunDir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run.path / "masks").glob("*.npz"))}


def _trained_levels(stdout: str) -> list[int]:
    return [int(m) for m in re.findall(r"^\[imp seed 0\] level +(\d+)", stdout, re.M)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, fake_data_dir: Path) -> RunDir:
    out = tmp_path_factory.mktemp("uninterrupted")
    result = ticketbench(*RUN, "--out", str(out), data=fake_data_dir)
    assert result.returncode == 0, result.stderr
    assert _trained_levels(result.stdout) == list(range(LEVELS))
    return _run_dir(out)


def _paused(out: Path, data: Path, point: str) -> subprocess.Popen:
    """The run started as a subprocess and stopped at ``point`` (still alive, holding its lock)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TICKETBENCH_DATA=str(data), TICKETBENCH_FAULT=f"pause:{point}")
    proc = subprocess.Popen([sys.executable, "-m", "ticketbench.cli", *RUN, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith(f"paused at {point}"):
            return proc
    proc.wait()
    raise AssertionError(f"the run ended (exit {proc.returncode}) without reaching {point}")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


@pytest.mark.parametrize(("point", "killed_level"), [("level 2 step 20", 2), ("write levels/level_01.json", 1)])
def test_a_killed_run_resumes_to_the_uninterrupted_result(point: str, killed_level: int, uninterrupted: RunDir,
                                                          fake_data_dir: Path, tmp_path: Path) -> None:
    _kill(_paused(tmp_path, fake_data_dir, point))
    run = _run_dir(tmp_path)
    assert [r["level"] for r in run.records()] == list(range(killed_level)), "the killed level must not count"
    if point.startswith("write"):
        assert list((run.path / "levels").glob(".level_01.json.*.tmp")), "the kill should hit a half-done write"
    finished = {p.name: p.stat().st_mtime_ns for p in (run.path / "levels").glob("level_*.json")}

    result = ticketbench(*RUN, "--out", str(tmp_path), data=fake_data_dir)
    assert result.returncode == 0, result.stderr
    assert _trained_levels(result.stdout) == list(range(killed_level, LEVELS)), "only the killed level is redone"
    assert {p: run.level_path(int(p[6:8])).stat().st_mtime_ns for p in finished} == finished
    assert not list(run.path.rglob("*.tmp")), "the interrupted write's temporary file must be gone"
    assert _records(run) == _records(uninterrupted)
    assert _masks(run) == _masks(uninterrupted)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_mid_level_stops_in_one_line_and_resumes(stop: signal.Signals, uninterrupted: RunDir,
                                                                   fake_data_dir: Path, tmp_path: Path) -> None:
    """What a scheduler sends at a time limit or a preemption (SIGTERM), and Ctrl-C: exit 128 +
    the signal with one line, not 0 and not a traceback; the interrupted level does not count."""
    proc = _paused(tmp_path, fake_data_dir, "level 1 step 20")
    proc.send_signal(stop)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + stop, stderr
    assert stderr.strip().splitlines()[-1] == (f"ticketbench: stopped by {stop.name}; every finished level is kept: "
                                               "run the same command to resume")
    assert "Traceback" not in stderr
    run = _run_dir(tmp_path)
    assert [r["level"] for r in run.records()] == [0]
    result = ticketbench(*RUN, "--out", str(tmp_path), data=fake_data_dir)
    assert result.returncode == 0 and _trained_levels(result.stdout) == [1, 2], result.stderr
    assert _records(run) == _records(uninterrupted)


def test_a_run_rewound_to_step_0_resumes_without_its_rewind_file(uninterrupted: RunDir, fake_data_dir: Path,
                                                                   tmp_path: Path) -> None:
    """rewind.pt is not committed: with k = 0 the resumed run rebuilds θ0 from the seed, checked
    against rewind.sha256, and ends as the uninterrupted run; a digest that does not match stops it."""
    _kill(_paused(tmp_path, fake_data_dir, "level 2 step 20"))
    run = _run_dir(tmp_path)
    run.rewind_path.unlink()
    digest = run.rewind_digest_path.read_text()
    run.rewind_digest_path.write_text("0" * 64 + "\n")
    error = one_line_error(ticketbench(*RUN, "--out", str(tmp_path), data=fake_data_dir))
    assert "rewind.pt is missing and the initialisation rebuilt from the seed differs" in error
    assert [r["level"] for r in run.records()] == [0, 1]
    run.rewind_digest_path.write_text(digest)
    result = ticketbench(*RUN, "--out", str(tmp_path), data=fake_data_dir)
    assert result.returncode == 0 and _trained_levels(result.stdout) == [2], result.stderr
    assert _records(run) == _records(uninterrupted)
    assert _masks(run) == _masks(uninterrupted)


def test_a_run_older_than_its_digest_resumes_under_the_torch_that_trained_it(uninterrupted: RunDir,
                                                                           fake_data_dir: Path, tmp_path: Path) -> None:
    """Runs from before rewind.sha256 existed have neither it nor rewind.pt: with k = 0 they resume
    when meta.json names this torch version (the initialisation depends on the seed and torch
    alone), and are refused under another."""
    _kill(_paused(tmp_path, fake_data_dir, "level 2 step 20"))
    run = _run_dir(tmp_path)
    run.rewind_path.unlink()
    run.rewind_digest_path.unlink()
    meta_path = run.path / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "code": {**meta["code"], "torch": "2.0.0"}}))
    assert "the rewind point of this run is lost" in one_line_error(ticketbench(*RUN, "--out", str(tmp_path),
                                                                               data=fake_data_dir))
    meta_path.write_text(json.dumps(meta))
    result = ticketbench(*RUN, "--out", str(tmp_path), data=fake_data_dir)
    assert result.returncode == 0 and _trained_levels(result.stdout) == [2], result.stderr
    assert _records(run) == _records(uninterrupted)


def test_a_second_run_on_a_locked_directory_names_the_holder(fake_data_dir: Path, tmp_path: Path) -> None:
    holder = _paused(tmp_path, fake_data_dir, "level 1 step 10")
    try:
        error = one_line_error(ticketbench(*RUN, "--out", str(tmp_path), data=fake_data_dir))
        assert "is in use by pid" in error and f"pid {holder.pid} " in error and "choose another --out" in error
    finally:
        _kill(holder)
    result = ticketbench(*RUN, "--out", str(tmp_path), data=fake_data_dir)  # a dead holder leaves no lock
    assert result.returncode == 0, result.stderr


def test_a_full_disk_stops_the_run_and_keeps_every_finished_level(uninterrupted: RunDir, fake_data_dir: Path,
                                                                  tmp_path: Path) -> None:
    full = ticketbench(*RUN, "--out", str(tmp_path), data=fake_data_dir,
                       env={"TICKETBENCH_FAULT": "enospc:write levels/level_02.json"})
    assert one_line_error(full) == ("ticketbench: error: disk full while writing (levels/level_02.json); every "
                                     "finished level is intact: free space and run the same command again to resume")
    run = _run_dir(tmp_path)
    assert _records(run) == _records(uninterrupted)[:2]
    assert not list(run.path.rglob("*.tmp"))
    resumed = ticketbench(*RUN, "--out", str(tmp_path), data=fake_data_dir)
    assert resumed.returncode == 0 and _trained_levels(resumed.stdout) == [2], resumed.stderr
    assert _records(run) == _records(uninterrupted) and _masks(run) == _masks(uninterrupted)


def test_a_diverging_level_is_recorded_and_the_arm_stops(fake_data_dir: Path, tmp_path: Path) -> None:
    args = [*RUN, "--set", "optimizer.lr=1e30", "--out", str(tmp_path)]
    error = one_line_error(ticketbench(*args, data=fake_data_dir))
    assert "level 0 diverged (non-finite training or validation loss)" in error and "optimizer.lr" in error
    run = _run_dir(tmp_path)
    (record,) = run.records()
    assert record["diverged"] is True and record["val_loss_at_early_stop"] is None
    again = ticketbench(*args, data=fake_data_dir)  # the same command trains nothing more
    assert "level 0 diverged" in one_line_error(again) and len(run.records()) == 1


@pytest.fixture(scope="module")
def earlier(uninterrupted: RunDir) -> Path:
    """The --out root holding a finished run that no refused command may touch."""
    return uninterrupted.path.parent.parent


def _bad_references(tmp_path: Path) -> Path:
    """A references file with one schema error: a claim's comparator that does not exist."""
    path = tmp_path / "refs.yaml"
    path.write_text(CLAIM.replace('comparator: ">="', "comparator: '>'"))
    return path


def _corrupt_cache(tmp_path: Path) -> dict[str, str]:
    """A cache holding a downloaded mnist.npz (from fabricated official files) that was then truncated."""
    served = tmp_path / "served"
    write_official_files(served)
    with serve(served) as url:
        npz = download("mnist", tmp_path / "xdg" / "ticketbench", _source(url, served))
    npz.write_bytes(npz.read_bytes()[:1000])
    return {"XDG_CACHE_HOME": str(tmp_path / "xdg")}


BAD_INPUT = {
    "unknown task": (["run", "lenet-5"], "unknown task 'lenet-5'"),
    "unknown method": (["run", "lenet300-mnist", "--method", "magic"], "unknown method 'magic'; valid methods: "),
    "unknown control": (["run", "lenet300-mnist", "--control", "none,shuffle"], "unknown control 'shuffle'; valid: "),
    "unknown override key": (["run", "lenet300-mnist", "--set", "optimizer.lrr=3"], "unknown key 'lrr'; valid keys"),
    "override of the wrong type": (["run", "lenet300-mnist", "--set", "max_steps=many"], "expected int, got 'many'"),
    "override out of range": (["run", "lenet300-mnist", "--set", "pruning.rates.hidden=1.5"],
                              "pruning.rates.hidden must be in [0, 1), got 1.5"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_in_one_line_and_touches_nothing(case: str, earlier: Path, fake_data_dir: Path) -> None:
    args, message = BAD_INPUT[case]
    before = snapshot(earlier)
    error = one_line_error(ticketbench(*args, "--out", str(earlier), data=fake_data_dir))
    assert message in error
    assert snapshot(earlier) == before


def test_missing_data_without_network_names_the_way_out(earlier: Path, tmp_path: Path) -> None:
    before = snapshot(earlier)
    env = {"XDG_CACHE_HOME": str(tmp_path / "empty-cache"), "TICKETBENCH_MIRROR": "http://127.0.0.1:9/"}
    error = one_line_error(ticketbench(*RUN, "--seed", "1", "--out", str(earlier), env=env,
                                        drop=("TICKETBENCH_DATA",)))
    assert "cannot download http://127.0.0.1:9/train-images-idx3-ubyte.gz" in error
    assert "point TICKETBENCH_DATA (or --data-dir) at it" in error
    assert "official files: https://ossci-datasets.s3.amazonaws.com/mnist/" in error
    assert snapshot(earlier) == before


def test_a_corrupted_cache_is_refused_naming_the_file(earlier: Path, tmp_path: Path) -> None:
    before = snapshot(earlier)
    env = _corrupt_cache(tmp_path)
    error = one_line_error(ticketbench(*RUN, "--seed", "1", "--out", str(earlier), env=env,
                                        drop=("TICKETBENCH_DATA",)))
    assert f"{tmp_path / 'xdg' / 'ticketbench' / 'mnist.npz'}: sha256 mismatch" in error
    assert "corrupted or truncated" in error
    assert snapshot(earlier) == before


def test_a_references_schema_error_is_one_line(earlier: Path, tmp_path: Path) -> None:
    before = snapshot(earlier)
    for command in ("score", "check", "report"):
        result = ticketbench(command, str(earlier), "--references", str(_bad_references(tmp_path)))
        assert f"{tmp_path / 'refs.yaml'}: claim c1: field 'comparator' is '>'; valid: >=, <=, within" \
            in one_line_error(result)
    assert snapshot(earlier) == before



def test_deterministic_kernels_change_nothing_on_a_cpu(uninterrupted: RunDir, fake_data_dir: Path,
                                                       tmp_path: Path) -> None:
    result = ticketbench(*RUN, "--deterministic", "--out", str(tmp_path), data=fake_data_dir)
    assert result.returncode == 0, result.stderr
    run = _run_dir(tmp_path)
    assert all(r["deterministic"] for r in run.records()) and not any(r["deterministic"] for r in
                                                                        uninterrupted.records())
    ignore = ("seconds", "deterministic")
    assert _records(run, ignore) == _records(uninterrupted, ignore) and _masks(run) == _masks(uninterrupted)
