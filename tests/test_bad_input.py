"""Everything a user can get wrong, through the real command: exit code 2, one line on stderr
naming what was wrong and what is valid, no traceback, and earlier results byte for byte the same.

The earlier results are a finished MNIST-1D run (winning tickets and random pruning, seeds 0
and 1, two levels); each case works on a copy of them where it edits files by hand."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import install, one_line_error, snapshot
from test_cli import ticketbench

SHORT = ["--max-steps", "20", "--eval-every", "10", "--wandb", "off"]
RUN = ["run", "mnist1d-mlp", *SHORT]


@pytest.fixture(scope="module")
def earlier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The --out root of a finished run: two levels of both arms, seeds 0 and 1 as replicas."""
    out = tmp_path_factory.mktemp("earlier")
    result = ticketbench(*RUN, "--levels", "2", "--replicas", "2", "--control", "none,random-prune", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def copied(earlier: Path, tmp_path: Path) -> Path:
    """A copy of the earlier results that a case may edit."""
    return Path(shutil.copytree(earlier, tmp_path / "copy"))


def _run(root: Path, arm: str = "imp", seed: int = 0) -> Path:
    (path,) = (root / "mnist1d-mlp").glob(f"{arm}-seed{seed}-*")
    return path


def _refused(*args: str, untouched: Path, data: Path | None = None, env: dict[str, str] | None = None) -> str:
    before = snapshot(untouched)
    error = one_line_error(ticketbench(*args, data=data, env=env))
    assert snapshot(untouched) == before, "a refused command changed earlier results"
    return error


# -- the task after overrides: checked before anything is trained or written ---------------------

TASK_CASES = {
    "a pruning role without a rate": (["--set", "pruning.rates={hidden: 0.2}"],
                                      "pruning.rates has no rate for role 'all'; mlp1d layer-wise needs exactly"),
    "a rate for a role no layer has": (["--set", "pruning.rates.conv=0.1"], "names role 'conv', which no layer has"),
    "a model for another dataset": (["--set", "model=lenet300"], "model lenet300 takes mnist examples, not mnist1d"),
    "an unknown model": (["--set", "model=vgg"], "model='vgg' is not valid; choose one of lenet300,"),
    "a batch larger than the data": (["--set", "batch_size=5000"], "batch_size=5000 exceeds the 4000 training"),
    "a hold-out of all the data": (["--set", "val_size=4000"], "val_size=4000 leaves no training examples"),
    "a NaN learning rate": (["--set", "optimizer.lr=nan"], "optimizer.lr: expected a finite number, got nan"),
    "an infinite learning rate": (["--set", "optimizer.lr=.inf"], "expected a finite number, got inf"),
    "a negative weight decay": (["--set", "optimizer.weight_decay=-1"], "optimizer.weight_decay must be >= 0"),
    "momentum of 1": (["--set", "optimizer.momentum=1"], "optimizer.momentum must be in [0, 1), got 1.0"),
    "every tensor excluded": (["--set", "pruning.exclude=['*']"], "excludes every prunable tensor of mlp1d"),
    "a dict where a number goes": (["--set", "max_steps={a: 1}"], "max_steps: expected int, got {'a': 1}"),
    "a sub-key of a number": (["--set", "max_steps.x=1"], "'max_steps' has no sub-key 'x'"),
    "a task name that is a path": (["--set", "name=../../x"], "name='../../x' cannot name a directory of results"),
    "another built-in task's name": (["--set", "name=lenet300-mnist"], "mnist1d-mlp: name='lenet300-mnist' is the "
                                     "built-in task of lenet300 on mnist, whose runs are filed and judged under that"),
    # settings the task would ignore, while they change the run directories' fingerprint
    "standardising float features": (["--set", "normalize=meanstd"], "normalize=meanstd would have no effect"),
    "augmenting MNIST-1D": (["--set", "augment=crop-flip"], "augment=crop-flip would have no effect: crops and "
                                                            "flips apply to image datasets (mnist, cifar10)"),
    "a stratified split of no hold-out": (["--set", "split=stratified"], "split=stratified would have no effect"),
    "momentum for Adam": (["--set", "optimizer.momentum=0.9"], "adam ignores momentum"),
    "gamma without milestones": (["--set", "optimizer.gamma=0.5"], "optimizer.gamma=0.5 would have no effect"),
}


@pytest.mark.parametrize("case", list(TASK_CASES))
def test_a_task_that_cannot_run_is_refused_before_anything_is_written(case: str, earlier: Path) -> None:
    args, message = TASK_CASES[case]
    assert message in _refused(*RUN, *args, "--out", str(earlier), untouched=earlier)


@pytest.mark.parametrize(("args", "message"), [
    ([], "ticketbench: error: the following arguments are required: command (see: ticketbench --help)"),
    (RUN + ["--levels", "0"], "ticketbench run: error: argument --levels: expected a whole number >= 1, got '0' "
                              "(see: ticketbench run --help)"),
    (["check", ".", "--tolerance", "nan"], "ticketbench check: error: argument --tolerance: must be a finite number "
                                           "of pp >= 0, got 'nan' (see: ticketbench check --help)"),
    (RUN + ["--seed", "-1"], "ticketbench run: error: argument --seed: expected a seed from 0 to 4294967295, got "
                             "'-1' (see: ticketbench run --help)"),
    (RUN + ["--seed", "\u0663"], "ticketbench run: error: argument --seed: expected a seed from 0 to 4294967295, "
                                 "got '\u0663' (see: ticketbench run --help)"),
    (RUN + ["--levels", "\u0663"], "ticketbench run: error: argument --levels: expected a whole number >= 1, got "
                                   "'\u0663' (see: ticketbench run --help)"),
    (RUN + ["--out", "pyproject.toml"], "ticketbench run: error: argument --out: pyproject.toml is a file; expected a "
                                        "directory (see: ticketbench run --help)"),
    (["score", "README.md"], "ticketbench score: error: argument runs: README.md is a file; expected a directory "
                             "(see: ticketbench score --help)"),
    (["report", ".", "--out", "README.md"], "ticketbench report: error: argument --out: README.md is a file; "
                                            "expected a directory (see: ticketbench report --help)"),
])
def test_a_usage_error_is_one_line_with_a_pointer_to_the_help(args: list[str], message: str) -> None:
    result = ticketbench(*args, cwd=Path(__file__).parents[1])
    assert result.returncode == 2 and result.stderr == message + "\n"


@pytest.mark.parametrize(("content", "message"), [
    (b"name: x\n  model: [\n", "not valid YAML at line 2, column 8"),
    (b"name: caf\xe9\n", "not UTF-8 text"),
    (b"- a list\n", "expected a mapping at the top level"),
])
def test_a_broken_task_or_config_file_is_one_line(content: bytes, message: str, earlier: Path,
                                                  tmp_path: Path) -> None:
    path = tmp_path / "task.yaml"
    path.write_bytes(content)
    assert message in _refused("run", str(path), *SHORT, "--out", str(earlier), untouched=earlier)
    if "mapping" not in message:
        assert message in _refused(*RUN, "--config", str(path), "--out", str(earlier), untouched=earlier)


@pytest.mark.parametrize(("args", "message"), [
    (["--seeds", "0-99999999"], "--seeds '0-99999999': more than 10000 seeds in one sweep"),
    (["--seeds", "\u0663"], "--seeds: '\u0663' is not a seed or a range"),
    (["--method", ""], "--method '' names no method; `ticketbench methods` lists them"),
    (["--method", " , "], "--method ' , ' names no method"),
    (["--wandb-tag", ""], "--wandb-tag '': W&B takes tags of 1-64 printable characters"),
    (["--wandb-tag", "t" * 65], "W&B takes tags of 1-64 printable characters"),
    (["--wandb-project", "lab/tickets"], "--wandb-project 'lab/tickets': W&B takes 1-128 printable characters "
                                         "without any of /"),
    (["--wandb-group", "g" * 129], "--wandb-group"),
])
def test_a_sweep_or_run_that_cannot_work_is_refused_before_it_starts(args: list[str], message: str,
                                                                     earlier: Path) -> None:
    grid = ["sweep", "mnist1d-mlp", "--levels", "3", *SHORT[:4], "--out", str(earlier)]
    assert message in _refused(*grid, *args, untouched=earlier)
    if args[0] not in ("--seeds", "--method"):
        assert message in _refused(*RUN, "--levels", "3", *args, "--out", str(earlier), untouched=earlier)


def test_a_density_that_keeps_no_weight_is_refused(earlier: Path) -> None:
    error = _refused(*RUN, "--method", "snip", "--densities", "50,1e-9", "--out", str(earlier), untouched=earlier)
    assert "--densities 1e-09% keeps no weight of" in error and "% keeps one" in error


# -- dataset files ---------------------------------------------------------------------------------

def _arrays(n_train: int = 60, n_test: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
            "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "y_test": rng.integers(0, 10, n_test).astype(np.uint8)}


DATA_CASES = {
    "float images": ({"x_train": _arrays()["x_train"].astype(np.float32)}, "x_train is float32 [60, 28, 28]; "
                                                                           "mnist needs uint8 [N, 28, 28]"),
    "int64 images": ({"x_test": _arrays()["x_test"].astype(np.int64)}, "x_test is int64"),
    "images of another shape": ({"x_train": np.zeros((60, 32, 32, 3), np.uint8)}, "mnist needs uint8 [N, 28, 28]"),
    "labels out of range": ({"y_train": np.full(60, 10, np.uint8)}, "holds labels from 10 to 10; mnist has classes"),
    "negative labels": ({"y_test": np.full(20, -1, np.int64)}, "holds labels from -1 to -1"),
    "float labels": ({"y_train": np.zeros(60, np.float32)}, "labels must be a 1-d integer array"),
    "fewer labels than images": ({"y_train": np.zeros(59, np.uint8)}, "60 images but 59 labels in the train split"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_dataset_arrays_of_the_wrong_kind_are_refused(case: str, tmp_path: Path) -> None:
    change, message = DATA_CASES[case]
    np.savez(tmp_path / "mnist.npz", **(_arrays() | change))
    args = ["run", "lenet300-mnist", "--set", "val_size=10", "--set", "batch_size=10", *SHORT, "--out",
            str(tmp_path / "runs")]
    error = _refused(*args, untouched=tmp_path, data=tmp_path)
    assert f"{tmp_path / 'mnist.npz'}: " in error and message in error


@pytest.mark.parametrize(("damage", "message"), [
    (lambda npz: npz.write_bytes(b""), "not a readable .npz archive (an empty file)"),
    (lambda npz: npz.write_bytes(npz.read_bytes()[:5000]), "not a readable .npz archive"),
    (lambda npz: npz.with_name("mnist.npz.sha256").write_text(""), "mnist.npz.sha256: not a sha256 record"),
    (lambda npz: np.save(npz.with_suffix(".npy"), np.zeros(3)) or npz.with_suffix(".npy").rename(npz),
     "not a readable .npz archive"),
])
def test_a_damaged_data_file_is_refused_naming_it(damage, message: str, tmp_path: Path) -> None:  # noqa: ANN001
    np.savez(tmp_path / "mnist.npz", **_arrays())
    damage(tmp_path / "mnist.npz")
    error = _refused("run", "lenet300-mnist", *SHORT, "--out", str(tmp_path / "runs"), untouched=tmp_path,
                     data=tmp_path)
    assert message in error


# -- run directories edited or copied by hand -------------------------------------------------------

def _level(run: Path, level: int) -> Path:
    return run / "levels" / f"level_{level:02d}.json"


def _edit_record(run: Path, **fields: object) -> None:
    path = _level(run, 1)
    path.write_text(json.dumps(json.loads(path.read_text()) | fields))


EDITS = {
    "a record that is not JSON": (lambda run: _level(run, 1).write_text("{"), "level_01.json: not a valid JSON file"),
    "a NaN accuracy": (lambda run: _edit_record(run, test_acc_final=float("nan")), "field 'test_acc_final'"),
    "an accuracy given as text": (lambda run: _edit_record(run, test_acc_final="0.9"), "field 'test_acc_final'"),
    "an accuracy in percent": (lambda run: _edit_record(run, test_acc_final=93.0), "less than or equal to 1"),
    "a record missing a key": (lambda run: _level(run, 1).write_text(json.dumps(
        {k: v for k, v in json.loads(_level(run, 1).read_text()).items() if k != "diverged"})), "field 'diverged'"),
    "a validation curve with a step missing": (lambda run: _edit_record(run, validation={
        "step": [10], "loss": [0.5, 0.4], "acc": [0.8, 0.9]}), "one value per validation"),
    "a record under another level's name": (lambda run: _level(run, 0).rename(_level(run, 3)),
                                            "level_03.json: the record is of level 0"),
    "a record of another seed": (lambda run: _edit_record(run, seed=7), "the record is of seed 7, but meta.json"),
    "meta.json missing": (lambda run: (run / "meta.json").unlink(), "holds levels but no meta.json"),
    "meta.json with a seed as text": (lambda run: (run / "meta.json").write_text(json.dumps(
        json.loads((run / "meta.json").read_text()) | {"seed": "0"})), "meta.json: field 'seed'"),
}


@pytest.mark.parametrize("case", list(EDITS))
def test_an_edited_run_directory_is_refused_naming_the_file(case: str, copied: Path) -> None:
    edit, message = EDITS[case]
    edit(_run(copied))
    for command in (["score", str(copied)], [*RUN, "--levels", "3", "--out", str(copied)]):
        error = _refused(*command, untouched=copied)
        assert message in error and str(_run(copied)) in error


def test_an_edited_mask_or_rewind_point_is_refused_before_training(copied: Path) -> None:
    run = _run(copied)
    resume = [*RUN, "--levels", "3", "--out", str(copied)]
    mask = run / "masks" / "level_02.npz"
    good = mask.read_bytes()
    mask.write_bytes(good[:100])
    assert "masks/level_02.npz: not a readable mask file" in _refused(*resume, untouched=copied)
    shutil.copy(run / "masks" / "level_00.npz", mask)  # level 0's all-kept mask: revives pruned weights
    assert "keeps weights of fc1.weight that level 1 pruned" in _refused(*resume, untouched=copied)
    mask.write_bytes(good)
    (run / "rewind.pt").write_bytes((run / "rewind.pt").read_bytes()[:200])
    assert "rewind.pt: not a readable rewind point" in _refused(*resume, untouched=copied)
    (run / "rewind.sha256").write_text("not a digest\n")
    assert "rewind.sha256: not a sha256 digest" in _refused(*resume, untouched=copied)


def test_a_mask_of_another_shape_is_refused(copied: Path) -> None:
    from ticketbench.pruning.masks import load_masks, save_masks

    run = _run(copied)
    masks = load_masks(run / "masks" / "level_02.npz")
    masks["fc1.weight"] = masks["fc1.weight"][:, :10]
    save_masks(run / "masks" / "level_02.npz", masks)
    error = _refused(*RUN, "--levels", "3", "--out", str(copied), untouched=copied)
    assert "the mask of fc1.weight has shape (500, 10), the model's tensor (500, 40)" in error


def test_a_damaged_wandb_id_is_refused(copied: Path) -> None:
    (_run(copied) / "wandb.json").write_text('{"id": "../../x"}')
    error = _refused(*RUN, "--levels", "3", "--wandb", "offline", "--out", str(copied), untouched=copied)
    assert "wandb.json: not a W&B run id record" in error


# -- commands that read runs -----------------------------------------------------------------------

def test_check_fails_when_the_runs_cannot_answer_a_gating_claim(copied: Path) -> None:
    only_control = copied / "mnist1d-mlp"
    for run in only_control.glob("imp-*"):
        shutil.rmtree(run)
    result = ticketbench("check", str(copied))
    assert result.returncode == 1 and "claim dense-accuracy cannot be answered by these runs (arm 'imp' was not " \
        "run)" in result.stderr
    for level in (only_control).glob("*/levels/*.json"):
        level.unlink()
    assert ticketbench("check", str(copied)).returncode == 1


def test_check_refuses_a_baseline_of_another_task_and_a_tolerance_that_is_not_a_number(earlier: Path,
                                                                                      tmp_path: Path) -> None:
    from conftest import write_run

    other = write_run(tmp_path, 0, "imp", [(0, 0.98, 100)])
    assert "--baseline holds lenet300-mnist (f0), the runs are mnist1d-mlp" in _refused(
        "check", str(earlier), "--baseline", str(other), untouched=earlier)
    for value in ("nan", "inf", "-1", "x"):
        result = ticketbench("check", str(earlier), "--tolerance", value)
        assert result.returncode == 2 and "must be a finite number of pp >= 0" in result.stderr
        assert result.stderr.count("\n") == 1


def test_check_baseline_compares_the_final_accuracy_of_a_task_without_early_stopping(earlier: Path,
                                                                                      copied: Path) -> None:
    """MNIST-1D has no validation split, so records hold no accuracy at early stop: the regression
    gate must read the final test accuracy (it compared null with null and passed before)."""
    line = "check: imp level 1: test accuracy"
    assert line not in ticketbench("check", str(copied), "--baseline", str(earlier)).stderr
    for seed in (0, 1):
        record = _level(_run(copied, seed=seed), 1)
        data = json.loads(record.read_text())
        assert data["test_acc_at_early_stop"] is None
        record.write_text(json.dumps(data | {"test_acc_final": data["test_acc_final"] - 0.01}))
    result = ticketbench("check", str(copied), "--baseline", str(earlier), "--tolerance", "0.5")
    assert result.returncode == 1 and line in result.stderr and "- 0.5 pp" in result.stderr


def test_table_gives_each_run_its_own_column_and_refuses_what_it_cannot_combine(earlier: Path, copied: Path,
                                                                               tmp_path: Path) -> None:
    seed0, seed1 = _run(earlier), _run(earlier, seed=1)
    table = ticketbench("table", str(seed0), str(seed1))
    assert table.returncode == 0
    header, _, level0, _ = table.stdout.splitlines()
    assert "imp seed 0" in header and "imp seed 1" in header
    finals = [json.loads(_level(run, 0).read_text())["test_acc_final"] for run in (seed0, seed1)]
    assert level0.strip("| ").split(" | ")[2:4] == [f"{100 * acc:.2f}" for acc in finals]
    assert "is given twice" in _refused("table", str(seed0), str(seed0), untouched=earlier)
    assert "are both arm imp seed 0" in _refused("table", str(seed0), str(_run(copied)), untouched=earlier)
    assert "are both arm imp seed 0" in _refused("score", str(earlier), str(copied), untouched=earlier)


def test_a_diverging_run_without_a_validation_split_is_caught_by_its_training_loss(tmp_path: Path) -> None:
    error = one_line_error(ticketbench(*RUN, "--levels", "2", "--set", "optimizer.lr=1e30", "--out", str(tmp_path)))
    assert "level 0 diverged (non-finite training or validation loss)" in error
    assert json.loads(_level(_run(tmp_path), 0).read_text())["diverged"] is True
    result = ticketbench("check", str(tmp_path))
    assert result.returncode == 1 and "diverged" in result.stderr


# -- references, W&B and plug-ins ------------------------------------------------------------------

REFERENCE = """task: mnist1d-mlp
protocol: p
claims:
  - id: c1
    statement: s
    metric: {kind: value, p_m: 100}
    comparator: ">="
    paper: PAPER
    tolerance: TOLERANCE
    source: x
    mark: V
"""


@pytest.mark.parametrize(("paper", "tolerance", "message"), [
    ("60", ".inf", "claim c1: field 'tolerance' must be a finite number, got inf"),
    (".nan", "1", "claim c1: field 'paper' must be a finite number, got nan"),
    ("60", "[1", "not valid YAML at line 10"),
])
def test_a_references_file_that_would_let_a_claim_pass_is_refused(paper: str, tolerance: str, message: str,
                                                                  earlier: Path, tmp_path: Path) -> None:
    path = tmp_path / "claims.yaml"
    path.write_text(REFERENCE.replace("PAPER", paper).replace("TOLERANCE", tolerance))
    for command in ("score", "check"):
        assert message in _refused(command, str(earlier), "--references", str(path), untouched=earlier)


def test_a_references_file_in_another_encoding_is_one_line(earlier: Path, tmp_path: Path) -> None:
    path = tmp_path / "claims.yaml"
    path.write_bytes(REFERENCE.replace("statement: s", "statement: \xe9").encode("latin-1"))
    assert "not UTF-8 text" in _refused("score", str(earlier), "--references", str(path), untouched=earlier)


@pytest.mark.parametrize(("env", "message"), [
    ({"WANDB_MODE": ""}, "WANDB_MODE='' is not a W&B mode; valid: online,"),
    ({"WANDB_MODE": "sometimes"}, "WANDB_MODE='sometimes' is not a W&B mode"),
    ({"WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"},
     "W&B online: cannot reach http://127.0.0.1:9"),
])
def test_wandb_settings_that_cannot_work_are_refused_before_writing(env: dict[str, str], message: str,
                                                                    earlier: Path) -> None:
    wandb = ["--wandb", "online"] if "WANDB_API_KEY" in env else []
    args = [a for a in RUN if a not in ("--wandb", "off")] + wandb
    assert message in _refused(*args, "--levels", "3", "--out", str(earlier), untouched=earlier, env=env)


@pytest.fixture
def plugins(site: Path) -> None:
    """An installed distribution declaring one plug-in that fails to import and one that returns
    NaN scores."""
    install(site, "bad-plugins", "bad_plugins",
            "import torch\n\ndef nan_scores(request):\n"
            "    return {n: torch.full(m.shape, float('nan')) for n, m in request.masks.items()}\n",
            "broken = no_such_module:scores\nnan-scores = bad_plugins:nan_scores\n")


@pytest.mark.usefixtures("plugins")
def test_a_broken_plugin_is_listed_and_the_others_still_work(earlier: Path, tmp_path: Path) -> None:
    listed = ticketbench("methods")
    assert listed.returncode == 0, listed.stderr
    assert "snip" in listed.stdout and "nan-scores" in listed.stdout
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith("broken ")]
    assert "BROKEN: entry point no_such_module:scores fails to import (ModuleNotFoundError" in line
    assert "method broken is installed but broken" in _refused(
        *RUN, "--method", "broken", "--out", str(earlier), untouched=earlier)
    error = _refused(*RUN, "--method", "nan-scores", "--densities", "50", "--out", str(tmp_path), untouched=earlier)
    assert "method nan-scores: fc1.weight has 20000 NaN score(s)" in error
    assert not list(tmp_path.glob("mnist1d-mlp/*/masks/level_01.npz")), "no mask from a refused answer"
    assert ticketbench(*RUN, "--levels", "2", "--method", "magnitude-init", "--densities", "50",
                       "--out", str(tmp_path)).returncode == 0


def test_a_plugin_cannot_take_a_built_in_methods_name(site: Path) -> None:
    """One plug-in declares the entry point ``snip``, another registers ``snip`` with @method: the
    first is refused, the second is broken, and ``snip`` stays the built-in SNIP."""
    install(site, "impostor", "impostor", "def scores(request):\n    raise AssertionError('never called')\n",
            "snip = impostor:scores\n")
    install(site, "impostor-decorated", "impostor_decorated",
            "from ticketbench.pruning.methods import method\n\n@method('snip')\ndef scores(request):\n"
            "    raise AssertionError('never called')\n", "decorated = impostor_decorated\n")
    listed = ticketbench("methods")
    assert listed.returncode == 0, listed.stderr
    snip = [line.split(maxsplit=1)[1] for line in listed.stdout.splitlines() if line.startswith("snip ")]
    assert snip[0].endswith("ticketbench_baselines.snip")
    assert snip[1] == "REFUSED: entry point impostor:scores declares the name of a built-in method; rename the plug-in"
    (decorated,) = [line for line in listed.stdout.splitlines() if line.startswith("decorated ")]
    assert "BROKEN: entry point impostor_decorated fails to import (ValueError: method 'snip' is registered " \
           "already (by ticketbench_baselines.snip)" in decorated


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    """`ticketbench list | head -0`: the reader has gone before the first line is written."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run([sys.executable, "-m", "ticketbench.cli", "list"], stdout=write, stderr=subprocess.PIPE,
                          text=True, timeout=300)
    os.close(write)
    assert proc.returncode == 141 and proc.stderr == ""


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (its bit in SigCgt of /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # it has exited
        return False
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) >> (sig - 1) & 1)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads signal dispositions from Linux's /proc")
@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_while_the_command_starts_is_one_line(delay: float, sig: int) -> None:
    """Ctrl-C (or a scheduler's SIGTERM) while the modules still load: one line, 128 + signal,
    never a traceback, whichever module is loading at that moment. The delay counts from the
    moment the entry point catches stop signals: before it, in the interpreter's own start-up
    (milliseconds on an idle machine, much longer on a loaded one), Python's defaults apply."""
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "ticketbench", "methods"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while not _catches(proc.pid, signal.SIGTERM) and proc.poll() is None:
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=300)
    if proc.returncode == 0:
        pytest.skip(f"the command finished within {delay} s, before the signal")
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr and stderr.count("\n") == 1
    assert stderr.startswith(f"ticketbench: stopped by {signal.Signals(sig).name}")


def test_files_are_written_with_the_users_umask(tmp_path: Path) -> None:
    """Results are shared files: the atomic writes must not leave them private (0600)."""
    import os

    from ticketbench.atomic import write_text

    previous = os.umask(0o022)
    try:
        write_text(tmp_path / "shared.txt", "x")
        os.umask(0o077)
        write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(previous)
    assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600


def test_results_about_runs_are_never_written_above_the_directories_named(earlier: Path, tmp_path: Path) -> None:
    for seed, place in ((0, "a"), (1, "b")):
        shutil.copytree(_run(earlier, seed=seed), tmp_path / place / _run(earlier, seed=seed).name)
    named = [str(next((tmp_path / p).iterdir())) for p in ("a", "b")]
    for command in (["score"], ["report"], ["compare"]):
        error = _refused(*command, *named, untouched=tmp_path)
        assert f"whose common parent is {tmp_path}; name one directory that holds them all" in error
    assert ticketbench("report", *named, "--out", str(tmp_path / "figures")).returncode == 0
