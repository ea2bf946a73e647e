"""``show``, ``--config`` / ``--set``, ``runs`` and progress through the real command: every error
is one line on stderr with exit code 2, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_cli import TINY, ticketbench

from ticketbench.config import TaskConfig, load_task
from ticketbench.typed_mapping import from_mapping


def _error(result) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_show_prints_the_resolved_config_with_overrides_applied(tmp_path: Path) -> None:
    overrides = tmp_path / "sgd.yaml"
    overrides.write_text("optimizer:\n  name: sgd\n  momentum: 0.9\npruning:\n  rates: {hidden: 0.3, output: 0.1}\n")
    result = ticketbench("show", "lenet300-mnist", "--config", str(overrides), "--set", "optimizer.lr=1e-2",
                         "--levels", "5")
    assert result.returncode == 0, result.stderr
    shown = from_mapping(TaskConfig, yaml.safe_load(result.stdout), "shown")
    base = load_task("lenet300-mnist")
    assert (shown.optimizer.name, shown.optimizer.momentum, shown.optimizer.lr) == ("sgd", 0.9, 0.01)
    assert shown.pruning.rates == {"hidden": 0.3, "output": 0.1} and shown.levels == 5
    assert shown.max_steps == base.max_steps and shown.fingerprint() != base.fingerprint()
    assert f"# fingerprint {shown.fingerprint()}" in result.stdout


def test_set_of_a_sub_configuration_merges_like_a_config_file(tmp_path: Path) -> None:
    """``--set 'optimizer={lr: 0.05}'`` changes the learning rate and keeps SGD, momentum and the
    schedule of the task, as ``optimizer: {lr: 0.05}`` in a --config file does."""
    config = tmp_path / "lr.yaml"
    config.write_text("optimizer: {lr: 0.05}\n")
    shown = [ticketbench("show", "resnet20-cifar10", *args) for args in
             (["--set", "optimizer={lr: 0.05}"], ["--config", str(config)], ["--set", "optimizer.lr=0.05"])]
    assert all(r.returncode == 0 for r in shown), [r.stderr for r in shown]
    assert shown[0].stdout == shown[1].stdout == shown[2].stdout
    optimizer = yaml.safe_load(shown[0].stdout)["optimizer"]
    assert optimizer | {"lr": 0.1} == yaml.safe_load(ticketbench("show", "resnet20-cifar10").stdout)["optimizer"]


def test_set_changes_the_run_directory_name(tmp_path: Path, fake_data_dir: Path) -> None:
    for lr in ("1e-3", "2e-3"):
        result = ticketbench("run", "lenet300-mnist", *TINY, "--set", f"optimizer.lr={lr}", "--levels", "1",
                             "--out", str(tmp_path), "--wandb", "off", data=fake_data_dir)
        assert result.returncode == 0, result.stderr
    runs = sorted(p.name for p in (tmp_path / "lenet300-mnist").iterdir())
    assert len(runs) == 2 and all(name.startswith("imp-seed0-") for name in runs)


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "optimizer.lrr=3"], "--set optimizer.lrr: unknown key 'lrr'; valid keys here: name, lr, momentum, "
     "weight_decay, milestones, gamma, at_rewind"),
    (["--set", "max_steps=many"], "--set max_steps: expected int, got 'many'"),
    (["--set", "optimizer.name=rmsprop"], "--set optimizer.name: name='rmsprop' is not valid; choose one of adam, sgd"),
    (["--set", "pruning.rates.hidden=1.5"], "--set: pruning.rates.hidden must be in [0, 1), got 1.5"),
    (["--set", "levels"], "--set 'levels': expected KEY=VALUE, e.g. optimizer.lr=1e-3"),
    (["--set", "batch_size.x=1"], "--set batch_size.x: 'batch_size' has no sub-key 'x'"),
    (["--config", "missing.yaml"], "--config missing.yaml: no such file"),
    (["--config", "."], "--config .: is a directory; expected a YAML file"),
])
def test_bad_overrides_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    for command in ("run", "show"):
        extra = ["--out", str(tmp_path)] if command == "run" else []
        result = ticketbench(command, "lenet300-mnist", *args, *extra, cwd=tmp_path)
        assert _error(result) == f"ticketbench: error: {message}"
    assert not any(tmp_path.iterdir()), "a refused run must not write anything"


def test_bad_config_files_exit_2_with_one_line(tmp_path: Path) -> None:
    cases = {"list.yaml": ("- 1\n", "expected a mapping of task keys"),
             "broken.yaml": ("a: [1\n", "not valid YAML"),
             "unknown.yaml": ("optimizer: {lrr: 1}\n", "--config {path} optimizer.lrr: unknown key 'lrr'")}
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        assert message.format(path=path) in _error(ticketbench("show", "lenet300-mnist", "--config", str(path)))


def test_unknown_wandb_mode_is_rejected_by_the_parser() -> None:
    result = ticketbench("run", "--wandb", "cloud")
    assert result.returncode == 2 and "invalid choice: 'cloud'" in result.stderr


def test_wandb_online_without_a_key_exits_2(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("")
    result = ticketbench("run", "--wandb", "online", "--out", str(tmp_path / "runs"),
                         env={"NETRC": str(netrc), "WANDB_API_KEY": ""})
    assert _error(result).startswith(
        "ticketbench: error: W&B online (--wandb online or WANDB_MODE) needs a W&B API key")
    assert not (tmp_path / "runs").exists()


def test_runs_lists_task_arm_seed_levels_and_status(tmp_path: Path, fake_data_dir: Path) -> None:
    result = ticketbench("run", "lenet300-mnist", *TINY, "--levels", "2", "--out", str(tmp_path), "--wandb", "off",
                         data=fake_data_dir)
    assert result.returncode == 0, result.stderr
    (run,) = (tmp_path / "lenet300-mnist").iterdir()
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "levels": 3}))  # as if asked for 3 levels and stopped
    rows = ticketbench("runs", str(tmp_path)).stdout.splitlines()
    assert rows[0].split() == ["task", "run", "arm", "seed", "levels", "P_m", "reached", "status", "W&B"]
    assert rows[2].split() == ["lenet300-mnist", str(run), "imp", "0", "2/3", "80.0%", "incomplete", "-"]
    again = ticketbench("run", "lenet300-mnist", *TINY, "--levels", "3", "--out", str(tmp_path), "--wandb", "off",
                        data=fake_data_dir)
    assert "level  2" in again.stdout and "level  1" not in again.stdout, "resuming trains only the missing level"
    assert ticketbench("runs", str(tmp_path)).stdout.splitlines()[2].split()[4:7] == ["3/3", "64.1%", "complete"]
    named_twice = ticketbench("runs", str(run), str(tmp_path)).stdout.splitlines()
    assert len(named_twice) == 3, "a run named directly and found under a directory is listed once"


def test_runs_of_an_empty_directory_exits_2(tmp_path: Path) -> None:
    message = f"ticketbench: error: no run directories (with meta.json) under {tmp_path}"
    assert _error(ticketbench("runs", str(tmp_path))) == message


def test_level_lines_carry_an_eta_and_the_bar_counts_steps(tmp_path: Path, fake_data_dir: Path) -> None:
    result = ticketbench("run", "lenet300-mnist", *TINY, "--levels", "2", "--out", str(tmp_path), "--wandb", "off",
                         "--progress", data=fake_data_dir)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("[imp seed 0] level  ")]
    assert "ETA" in lines[0] and "for the remaining levels" in lines[0] and "done in" in lines[1]
    assert "[imp seed 0] level 1/1" in result.stdout and "40/40" in result.stdout, "the bar counts 40 steps"


def test_runs_of_a_missing_directory_and_show_of_an_unknown_task_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert _error(ticketbench("runs", str(missing))) == f"ticketbench: error: {missing} does not exist"
    unknown = _error(ticketbench("show", "lenet-5"))
    assert unknown.startswith("ticketbench: error: unknown task 'lenet-5'; valid tasks: ")
