"""Task files and overrides: validated, with one-line errors naming the key and the valid values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ticketbench.config import load_task, task_names
from ticketbench.errors import ConfigError
from ticketbench.overrides import override
from ticketbench.task_check import check_task


def test_packaged_task_loads_with_the_frankle_carbin_protocol() -> None:
    task = load_task("lenet300-mnist")
    assert "lenet300-mnist" in task_names()
    assert (task.batch_size, task.max_steps, task.eval_every, task.val_size) == (60, 50_000, 100, 5000)
    assert (task.optimizer.name, task.optimizer.lr) == ("adam", 1.2e-3)
    assert task.pruning.rates == {"hidden": 0.2, "output": 0.1} and task.rewind_step == 0


HEAD = "name: x\ndataset: mnist\nmodel: lenet300\n"


@pytest.mark.parametrize(("extra", "message"), [
    ("description: d\nbatchsize: 3", "unknown key 'batchsize'; valid keys: name"),
    ("description: d\nmax_steps: ten", "max_steps: expected int, got 'ten'"),
    ("description: d\nnormalize: zscore", "choose one of meanstd, none"),
    ("description: d\noptimizer: {name: rmsprop}", "choose one of adam, sgd"),
    ("description: d\npruning: {rates: {hidden: 1.5}}", "must be in [0, 1)"),
    ("levels: 3", "missing 1 required positional argument: 'description'"),
])
def test_schema_errors_name_the_problem(tmp_path, extra: str, message: str) -> None:
    path = tmp_path / "task.yaml"
    path.write_text(HEAD + extra + "\n")
    with pytest.raises(ConfigError) as err:
        load_task(str(path))
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_unknown_task_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown task 'lenet5'; valid tasks: .*lenet300-mnist"):
        load_task("lenet5")


def test_override_is_validated_and_fingerprint_tracks_training_settings() -> None:
    task = load_task("lenet300-mnist")
    with pytest.raises(ConfigError, match="rewind_step must be in"):
        override(task, max_steps=10, rewind_step=10)
    assert override(task, levels=3).fingerprint() == task.fingerprint()
    assert override(task, max_steps=100).fingerprint() != task.fingerprint()
    assert override(task, levels=None) == task


def test_a_task_file_may_borrow_a_built_in_name_only_for_its_model_and_dataset(tmp_path: Path) -> None:
    variant = override(load_task("lenet300-mnist"), max_steps=100)  # the protocol with another setting
    check_task(variant, str(tmp_path / "short-lenet.yaml"))
    impostor = dataclasses.replace(load_task("mnist1d-mlp"), name="lenet300-mnist")
    with pytest.raises(ConfigError, match="name='lenet300-mnist' is the built-in task of lenet300 on mnist"):
        check_task(impostor, str(tmp_path / "mine.yaml"))
