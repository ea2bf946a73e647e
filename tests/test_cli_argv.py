"""A sweep's job is a ``run`` command whose argv is written from the options of ``run``: every
option of ``run`` round-trips through it, every option a sweep shares with ``run`` reaches its
jobs, and a job's argv is the one earlier versions wrote (a sweep's directory is named by it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ticketbench.cli.registry import parse
from ticketbench.cli.run import RunOptions, job_argv
from ticketbench.cli.sweep import PASSED_ON, sweep_jobs

SAMPLES = {  # for every option of run, arguments that set it to a value other than its default
    "task": ["lenet300-mnist"],
    "seed": ["--seed", "7"],
    "replicas": ["--replicas", "3"],
    "control": ["--control", "none,reinit"],
    "at_levels": ["--control", "reinit", "--at-levels", "1,2"],
    "method": ["--method", "snip"],
    "config": ["--config", "{tmp}/lr.yaml"],
    "assignments": ["--set", "optimizer.lr=1e-3", "--set", "batch_size=32"],
    "levels": ["--levels", "4"],
    "max_steps": ["--max-steps", "20"],
    "eval_every": ["--eval-every", "5"],
    "precision": ["--precision", "bf16-mixed"],
    "compile": ["--compile", "default"],
    "checkpoint_every": ["--checkpoint-every", "0.5"],
    "out": ["--out", "{tmp}/runs"],
    "data_dir": ["--data-dir", "{tmp}"],
    "wandb": ["--wandb", "off"],
    "wandb_project": ["--wandb-project", "lottery"],
    "wandb_entity": ["--wandb-entity", "lab"],
    "wandb_group": ["--wandb-group", "g"],
    "wandb_tag": ["--wandb-tag", "a", "--wandb-tag", "b"],
    "densities": ["--method", "snip", "--densities", "50,20"],
    "sanity": ["--method", "snip", "--sanity", "shuffle"],
    "iterative": ["--method", "snip", "--iterative"],
    "deterministic": ["--deterministic"],
    "progress": ["--progress"],
}
TOGETHER = {  # several options at once, as a run of IMP arms and as a method run
    "imp": ["lenet300-mnist", "--seed", "3", "--control", "none,random-prune", "--no-progress",
            *SAMPLES["config"], *SAMPLES["assignments"], *SAMPLES["levels"], *SAMPLES["max_steps"],
            *SAMPLES["checkpoint_every"], *SAMPLES["out"], *SAMPLES["wandb_tag"], *SAMPLES["deterministic"]],
    "method": ["--method", "snip", "--densities", "40,10", "--sanity", "reinit", "--iterative", "--replicas", "2",
               *SAMPLES["precision"], *SAMPLES["data_dir"], *SAMPLES["wandb"], *SAMPLES["wandb_group"]],
}


def _options(options: Any) -> dict[str, Any]:
    """Every option of a dataclass of options (groups flattened), by field name."""
    found = {}
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        found |= _options(value) if "group" in f.metadata else {f.name: value}
    return found


def _run(args: list[str], tmp: Path) -> RunOptions:
    """The options of ``run`` with ``args`` and an absolute --out (a job's paths are absolute)."""
    chosen, options = parse(["run", "--out", str(tmp / "default"), *(a.format(tmp=tmp) for a in args)])
    assert chosen.name == "run" and isinstance(options, RunOptions)
    return options


def test_every_option_of_run_has_a_sample() -> None:
    assert set(SAMPLES) == set(_options(RunOptions()))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_option_of_run_round_trips_through_a_sweep_job(name: str, tmp_path: Path) -> None:
    options = _run(SAMPLES[name], tmp_path.resolve())
    assert _options(options)[name] != _options(RunOptions())[name], "the sample must set the option"
    argv = job_argv(options)
    assert argv[0] == "run" and parse(argv)[1] == options, argv


@pytest.mark.parametrize("kind", sorted(TOGETHER))
def test_options_together_round_trip_through_a_sweep_job(kind: str, tmp_path: Path) -> None:
    options = _run(TOGETHER[kind], tmp_path.resolve())
    assert parse(job_argv(options))[1] == options


def test_a_job_makes_paths_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = job_argv(_run(["--out", "runs", "--data-dir", "data", "--config", "lr.yaml"], tmp_path))
    here = tmp_path.resolve()
    assert [argv[argv.index(flag) + 1] for flag in ("--out", "--data-dir", "--config")] == \
        [str(here / "runs"), str(here / "data"), str(here / "lr.yaml")]


def test_a_sweep_passes_every_option_it_shares_with_run_on_to_its_jobs(tmp_path: Path) -> None:
    (tmp_path / "lr.yaml").write_text("optimizer: {lr: 0.01}\n")
    shared = [*SAMPLES["config"], *SAMPLES["assignments"], *SAMPLES["levels"], *SAMPLES["max_steps"],
              *SAMPLES["eval_every"], *SAMPLES["precision"], *SAMPLES["compile"], *SAMPLES["checkpoint_every"],
              *SAMPLES["out"], *SAMPLES["data_dir"], *SAMPLES["wandb"], *SAMPLES["wandb_project"],
              *SAMPLES["wandb_entity"], *SAMPLES["wandb_group"], *SAMPLES["wandb_tag"], *SAMPLES["deterministic"],
              "--densities", "50,20", "--sanity", "shuffle", "--iterative"]
    argv = ["sweep", "mnist1d-mlp", "--seeds", "0,2", "--method", "magnitude-init",
            *(a.format(tmp=tmp_path.resolve()) for a in shared)]
    sweep = parse(argv)[1]
    jobs = sweep_jobs(sweep)
    assert [job.name for job in jobs] == ["mnist1d-mlp-seed0-magnitude-init-iterative+shuffle",
                                          "mnist1d-mlp-seed2-magnitude-init-iterative+shuffle"]
    for job, seed in zip(jobs, (0, 2), strict=True):
        options = parse(list(job.argv))[1]
        assert (options.task, options.seed, options.method, options.progress) == \
            ("mnist1d-mlp", seed, "magnitude-init", False)
        assert [getattr(options, name) for name in PASSED_ON] == [getattr(sweep, name) for name in PASSED_ON]
    assert set(PASSED_ON) >= {"protocol", "output", "pruning", "checkpoint_every", "deterministic"}


def test_a_jobs_argv_is_the_one_earlier_versions_wrote(tmp_path: Path) -> None:
    """A sweep's directory is named by a hash of its jobs' argv: an unchanged argv finds the
    bookkeeping (job states, SLURM ids, logs) of a sweep begun by an earlier version."""
    out = str(tmp_path.resolve())
    imp = sweep_jobs(parse(["sweep", "mnist1d-mlp", "--arms", "none,reinit", "--levels", "3", "--wandb-tag", "t",
                            "--checkpoint-every", "30", "--out", out, "--sanity", "shuffle", "--deterministic"])[1])
    method = sweep_jobs(parse(["sweep", "lenet300-mnist", "--method", "snip", "--seeds", "3", "--out", out])[1])
    assert list(imp[0].argv) == ["run", "mnist1d-mlp", "--seed", "0", "--control", "none,reinit", "--levels", "3",
                                 "--checkpoint-every", "30.0", "--out", out, "--wandb-project", "ticketbench",
                                 "--wandb-tag", "t", "--deterministic", "--no-progress"]
    assert list(method[0].argv) == ["run", "lenet300-mnist", "--seed", "3", "--method", "snip", "--out", out,
                                    "--wandb-project", "ticketbench", "--densities", "51.2,21.0,8.6,3.5,1.4",
                                    "--no-progress"]
