"""Instability analysis: the path arithmetic checked by hand, and ``ticketbench instability``
end to end (negative control, endpoints, masks, θ_k, resume after a kill, bad input)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_cli import TINY, ticketbench, ticketbench_process
from torch import nn
from wandb_records import read_offline_run

from ticketbench.config import load_task
from ticketbench.data import load_arrays, make_split
from ticketbench.engine.instability import Analysis, Point, point_line
from ticketbench.interpolation import PathErrors, alphas, interpolate, path_errors, recompute_batchnorm
from ticketbench.models import build_model
from ticketbench.overrides import override
from ticketbench.pruning.masks import load_masks
from ticketbench.scoring import Diverged, _quantity
from ticketbench.storage.analysis_dir import StabilityDir
from ticketbench.storage.run_dir import RunDir

FOUR = [*TINY, "--levels", "4"]  # 40 steps per level, 4 levels: level 3 keeps ~51% of the hidden weights


def _linear_pair() -> tuple[nn.Module, dict, dict]:
    """Two deep-linear nets computing the same function (logits = x): W2 W1 = I and P P = I, P the swap."""
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    eye, swap = torch.eye(2), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    return net, {"0.weight": eye, "1.weight": eye}, {"0.weight": swap, "1.weight": swap}


def _labelled() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [1.0, 3.0]])
    return x, x.argmax(1)


def test_the_instability_of_a_hand_made_pair_matches_the_hand_computation() -> None:
    # On the path W1 = W2 = (1-a) I + a P, so logits = W2 W1 x and logit0 - logit1 = (1 - 2a)^2 (x0 - x1):
    # every point classifies like the endpoints except a = 1/2, where both logits tie, argmax picks
    # class 0 and the two class-1 examples are wrong: error 0.5 there, 0 elsewhere.
    net, a, b = _linear_pair()
    sets = {"all": lambda: [_labelled()]}
    odd = path_errors(net, a, b, sets, points=5)  # a = 0, 1/4, 1/2, 3/4, 1
    assert odd.errors["all"] == [0.0, 0.0, 0.5, 0.0, 0.0] and odd.instability("all") == 0.5
    even = path_errors(net, a, b, sets, points=4)  # a = 0, 1/3, 2/3, 1: the barrier falls between points
    assert even.errors["all"] == [0.0] * 4 and even.instability("all") == 0.0


def test_instability_is_the_peak_minus_the_mean_of_the_endpoints() -> None:
    errors = PathErrors([0.0, 0.5, 1.0], {"test": [0.10, 0.40, 0.20]})
    assert errors.instability("test") == pytest.approx(0.40 - 0.15)
    assert alphas(30)[0] == 0.0 and alphas(30)[-1] == 1.0 and len(alphas(30)) == 30
    with pytest.raises(ValueError, match="at least 2 points"):
        alphas(1)


def test_pruned_weights_are_exactly_zero_at_every_point_and_endpoints_are_the_states() -> None:
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(50, 40, generator=gen) > 0.7
    a = {"w": torch.randn(50, 40, generator=gen) * mask, "count": torch.tensor(3)}
    b = {"w": torch.randn(50, 40, generator=gen) * mask, "count": torch.tensor(7)}
    for alpha in alphas(30):
        point = interpolate(a, b, alpha, {"w": mask})
        assert torch.all(point["w"][~mask] == 0) and point["count"] == 3
    assert torch.equal(interpolate(a, b, 0.0)["w"], a["w"]) and torch.equal(interpolate(a, b, 1.0)["w"], b["w"])
    assert torch.equal(interpolate(a, a, 0.37)["w"], a["w"])  # identical copies: the same point everywhere


def test_recomputed_batchnorm_statistics_are_those_of_the_given_batches() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    batches = [torch.randn(16, 3, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    recompute_batchnorm(net, batches)
    with torch.no_grad():
        hidden = net[0](torch.cat(batches))
    bn = net[1]
    assert torch.allclose(bn.running_mean, hidden.mean(0), atol=1e-6)  # equal-size batches: the mean of means
    assert bn.momentum == 0.1 and not net.training
    with pytest.raises(ValueError, match="with BatchNorm"):
        path_errors(net, net.state_dict(), net.state_dict(), {}, bn="none")


def _analysis(out: Path, data: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return ticketbench("instability", "lenet300-mnist", *FOUR, "--out", str(out), *extra, data=data, env=env)


def _point(out: Path, name: str, arm: str = "instability") -> dict:
    (found,) = (out / "lenet300-mnist").glob(f"{arm}-seed0-*/points/{name}.json")
    return json.loads(found.read_text())


def test_identical_noise_gives_instability_exactly_zero_and_identical_copies(fake_data_dir, tmp_path) -> None:
    done = _analysis(tmp_path, fake_data_dir, "--same-noise", "--points", "7")
    assert done.returncode == 0, done.stderr
    rec = _point(tmp_path, "k000000-level00-none", "instability-same-noise")
    assert rec["instability_test"] == 0.0 and rec["instability_train"] == 0.0
    assert len(set(rec["test_error"])) == 1 and len(rec["alphas"]) == 7
    run = StabilityDir(next((tmp_path / "lenet300-mnist").glob("instability-same-noise-*")))
    first, second = (torch.load(p, weights_only=True)["state"] for p in sorted((run.path / "copies").glob("*.pt")))
    assert all(torch.equal(first[n], second[n]) for n in first)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, fake_data_dir: Path) -> Path:
    """IMP to level 3, then the dense network and level 3's ticket and random-pruned subnetwork."""
    out = tmp_path_factory.mktemp("instability")
    assert ticketbench("run", "lenet300-mnist", *FOUR, "--out", str(out), data=fake_data_dir).returncode == 0
    done = _analysis(out, fake_data_dir, "--at-levels", "0,3", "--control", "none,random-prune", "--points", "5")
    assert done.returncode == 0, done.stderr
    return out


def test_endpoints_reproduce_the_copies_and_masks_hold_along_the_path(analysed: Path) -> None:
    dense, ticket, random = (_point(analysed, n) for n in
                             ("k000000-level00-none", "k000000-level03-none", "k000000-level03-random-prune"))
    for rec in (dense, ticket, random):
        # the same weights on the same test set (the level's accuracy is a float32 torchmetrics value)
        assert [1 - rec["test_error"][0], 1 - rec["test_error"][-1]] == pytest.approx(rec["copy_test_acc_final"],
                                                                                      abs=1e-6)
        assert rec["copy_steps"] == [40, 40] and rec["bn"] == "none" and len(rec["train_error"]) == 5
        assert rec["instability_test"] == pytest.approx(max(rec["test_error"]) - (rec["test_error"][0] +
                                                                                  rec["test_error"][-1]) / 2)
    assert dense["weights_remaining_percent"] == 100.0
    assert ticket["weights_remaining_percent"] == random["weights_remaining_percent"] < 60
    imp = RunDir(next((analysed / "lenet300-mnist").glob("imp-seed0-*")))
    mask = load_masks(imp.mask_path(3))
    run = StabilityDir(next((analysed / "lenet300-mnist").glob("instability-seed0-*")))
    for copy in (0, 1):
        state = torch.load(run.path / "copies" / f"k000000-level03-none-copy{copy}.pt", weights_only=True)["state"]
        assert all(torch.all(state[n][~m] == 0) for n, m in mask.items())


def test_the_dense_rewind_point_is_the_imp_runs_theta_k(fake_data_dir: Path, tmp_path: Path) -> None:
    # θ_k trained here for the dense network equals the θ_k that IMP's level 0 captured; at one
    # thread here too, as in the IMP run (more threads sum the matrix products in another order:
    # 15 steps then differ by ~1e-7 on one machine and by more than 1e-6 on another)
    assert ticketbench("run", "lenet300-mnist", *TINY, "--levels", "1", "--set", "rewind_step=15", "--out",
                       str(tmp_path), data=fake_data_dir).returncode == 0
    task = override(load_task("lenet300-mnist"), val_size=100, batch_size=20, max_steps=40, eval_every=10, levels=1,
                    rewind_step=15)
    analysis = Analysis(task, 0, tmp_path)
    split = make_split(load_arrays("mnist", str(fake_data_dir)), "mnist", task.normalize, task.val_size, 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = analysis._start(Point(0, "none", 15), split)
    finally:
        torch.set_num_threads(threads)
    rewound = analysis.imp.load_rewind()
    assert start.step == 15
    assert all(torch.equal(v, rewound[n]) for n, v in start.model.state_dict().items())
    assert not torch.equal(rewound["fc1.weight"], build_model(task.model, 0).state_dict()["fc1.weight"])


def test_a_resumed_analysis_reuses_theta_k_and_retrains_copies_of_another_theta_k(fake_data_dir: Path,
                                                                                    tmp_path: Path) -> None:
    assert _analysis(tmp_path, fake_data_dir, "--rewind-steps", "15", "--points", "3").returncode == 0
    run = StabilityDir(next((tmp_path / "lenet300-mnist").glob("instability-seed0-*")))
    name = "k000015-level00-none"
    first = _point(tmp_path, name)
    # the point again from the cache: neither θ_k nor a copy is trained (a validation would fail)
    run.point_path(name).unlink()
    again = _analysis(tmp_path, fake_data_dir, "--rewind-steps", "15", "--points", "3",
                      env={"TICKETBENCH_FAULT": "enospc:level 0 step *"})
    assert again.returncode == 0, again.stderr
    assert {k: v for k, v in _point(tmp_path, name).items() if k != "seconds"} == \
        {k: v for k, v in first.items() if k != "seconds"}
    # a θ_k that is not the one the cached copies started from: both copies are trained again
    start = torch.load(run.start_path(name), weights_only=True)
    start["state"]["fc1.weight"] += 1e-3
    torch.save(start, run.start_path(name))
    run.point_path(name).unlink()
    retrained = _analysis(tmp_path, fake_data_dir, "--rewind-steps", "15", "--points", "3",
                          env={"TICKETBENCH_FAULT": "enospc:write copies/*-copy0.pt"})
    assert "disk full while writing (copies/k000015-level00-none-copy0.pt)" in retrained.stderr, retrained.stderr


@pytest.mark.parametrize("point", ["write copies/k000000-level00-none-copy1.pt",
                                   "write points/k000000-level00-none.json"])
def test_a_killed_analysis_resumes_to_the_uninterrupted_result(point: str, fake_data_dir: Path,
                                                                tmp_path: Path) -> None:
    uninterrupted = tmp_path / "whole"
    assert _analysis(uninterrupted, fake_data_dir, "--points", "5").returncode == 0
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ticketbench", "instability", "lenet300-mnist", *FOUR, "--points", "5",
           "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", TICKETBENCH_DATA=str(fake_data_dir), TICKETBENCH_FAULT=f"pause:{point}")
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("paused at"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = _analysis(out, fake_data_dir, "--points", "5")
    assert resumed.returncode == 0, resumed.stderr
    whole, again = _point(uninterrupted, "k000000-level00-none"), _point(out, "k000000-level00-none")
    assert {k: v for k, v in whole.items() if k != "seconds"} == {k: v for k, v in again.items() if k != "seconds"}


def test_a_stopped_analysis_says_what_it_kept(fake_data_dir: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "ticketbench", "instability", "lenet300-mnist", *FOUR, "--points", "5",
           "--out", str(tmp_path)]
    env = dict(os.environ, OMP_NUM_THREADS="1", TICKETBENCH_DATA=str(fake_data_dir),
               TICKETBENCH_FAULT="pause:write copies/k000000-level00-none-copy1.pt")
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("paused at"):
            break
    proc.send_signal(signal.SIGTERM)
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines()[-1] == ("ticketbench: stopped by SIGTERM; every finished point and trained "
                                               "copy is kept: run the same command to resume")


@pytest.mark.parametrize(("args", "message"), [
    (["--at-levels", "2"], "level 2 needs the winning-ticket mask"),
    (["--at-levels", "0,2", "--rewind-steps", "0,10"], "subnetworks are analysed at the rewind step"),
    (["--rewind-steps", "40"], "outside [0, max_steps = 40)"),
    (["--at-levels", "9"], "outside [0, levels = 4)"),
    (["--at-levels", "a"], "expected comma-separated whole numbers"),
    (["--points", "1"], "at least 2 points"),
    (["--control", "bogus", "--at-levels", "2"], "unknown control"),
])
def test_bad_analysis_input_is_one_line_and_exit_2(args: list[str], message: str, fake_data_dir: Path,
                                                   tmp_path: Path) -> None:
    done = _analysis(tmp_path, fake_data_dir, *args)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "lenet300-mnist").exists() or not list((tmp_path / "lenet300-mnist").glob("instab*"))


def test_runs_score_check_and_report_read_the_analysis(analysed: Path, tmp_path: Path) -> None:
    listing = ticketbench("runs", str(analysed))
    row = next(line for line in listing.stdout.splitlines() if "instability-seed0" in line)
    assert "3/3 points" in row and "complete" in row, listing.stdout
    claims = tmp_path / "claims.yaml"
    claims.write_text("""task: lenet300-mnist
protocol: mine
claims:
  - {id: dense-below-99, statement: s, metric: {kind: value, arm: instability@k0, quantity: instability_test,
     p_m: 100}, comparator: "<=", paper: 99.0, tolerance: 0.0, source: here, mark: V}
  - {id: random-below-zero, statement: s, metric: {kind: value, arm: instability-random-prune@k0,
     quantity: instability_train, p_m: 51.3}, comparator: "<=", paper: -0.5, tolerance: 0.0, source: here, mark: V}
  - {id: stable-from, statement: s, metric: {kind: value, arm: instability, quantity: stable_from_step, p_m: 100},
     comparator: within, paper: 0, tolerance: 0, source: here, mark: U}
""")
    root = analysed / "lenet300-mnist"
    table = ticketbench("table", *map(str, sorted(root.glob("*-seed0-*")))).stdout
    assert "| analysis | k | level | subnetwork | P_m % | seed 0 test / train pp |" in table
    assert "| instability | 0 | 3 | random-prune |" in table and "| level | P_m % |" in table  # and the IMP run
    checked = ticketbench("check", str(root), "--references", str(claims))
    assert checked.returncode == 1 and "claim random-below-zero FAILs" in checked.stderr, checked.stderr
    lines = {line.split()[0]: line for line in checked.stdout.splitlines() if line.strip()}
    assert "PASS" in lines["dense-below-99"] and "FAIL" in lines["random-below-zero"]
    dense = _point(analysed, "k000000-level00-none")
    stable = 100 * dense["instability_test"] < 2
    assert ("PASS" if stable else "NOT RUN") in lines["stable-from"]
    out = tmp_path / "figures"
    report = ticketbench("report", str(root), "--references", str(claims), "--out", str(out))
    assert report.returncode == 0, report.stderr
    assert {"instability_path.png", "instability.png"} <= {p.name for p in out.iterdir()}


def test_an_offline_analysis_logs_each_point_to_wandb(fake_data_dir: Path, tmp_path: Path) -> None:
    """As a real process: W&B completes its offline files when the command's process exits."""
    done = ticketbench_process("instability", "lenet300-mnist", *FOUR, "--out", str(tmp_path), "--points", "4",
                               "--wandb", "offline", data=fake_data_dir)
    assert done.returncode == 0, done.stderr
    run = next((tmp_path / "lenet300-mnist").glob("instability-seed0-*"))
    (segment,) = sorted((run / "wandb").glob("offline-run-*"))
    assert f"wandb sync {segment}" in done.stdout
    logged = read_offline_run(segment)
    assert logged.run.job_type == "instability" and logged.run.display_name == run.name
    rec = _point(tmp_path, "k000000-level00-none")
    assert logged.summary["instability/test"] == rec["instability_test"]
    path = json.loads((segment / "files" / logged.summary["path/k000000-level00-none/path"]).read_text())
    assert path["columns"] == ["alpha", "test_error", "train_error"]
    assert [row[1] for row in path["data"]] == rec["test_error"]


def test_a_point_whose_copy_diverged_is_not_a_measurement() -> None:
    # copies at chance all along the path have an instability near 0: it must not read as stable
    record = {"seed": 0, "arm": "instability", "level": 0, "control": "none", "rewind_step": 0,
              "weights_remaining_percent": 100.0, "test_error": [0.9] * 30, "instability_test": 0.001,
              "instability_train": 0.0, "copy_diverged": [False, True], "seconds": 1.0}
    with pytest.raises(Diverged):
        _quantity(record, "instability_test")
    assert "(a copy diverged: not a measurement)" in point_line(record)
    assert _quantity({**record, "copy_diverged": [False, False]}, "instability_test") == pytest.approx(0.1)
