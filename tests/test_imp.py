"""Invariants of the IMP loop (DESIGN.md), on the fabricated dataset through the real Lightning path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from ticketbench.config import OptimizerConfig, TaskConfig
from ticketbench.data import BatchStream, DeviceSplit, load_arrays, make_split
from ticketbench.data.tensors import ReplicaData
from ticketbench.engine.suite_runner import run_imp, suite_arm
from ticketbench.errors import RunError
from ticketbench.models import build_model
from ticketbench.overrides import override
from ticketbench.pruning.masks import Masks, full_masks
from ticketbench.pruning.select import random_masks
from ticketbench.storage.run_dir import RunDir
from ticketbench.training.level import LevelPlan, train_level
from ticketbench.training.replicas import Replicas


def _run(task, out: Path, data: Path, control: str = "none", seed: int = 0) -> RunDir:
    return run_imp(task, seed, control, out, str(data))


def _strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_rewind_restores_theta_k_on_kept_and_zero_on_pruned(tiny_task, fake_data_dir, tmp_path) -> None:
    run = _run(tiny_task, tmp_path, fake_data_dir)
    theta_0 = build_model("lenet300", 0).state_dict()
    assert all(torch.equal(theta_0[k], v) for k, v in run.load_rewind().items())
    start = suite_arm(tiny_task, 0, "none", tmp_path).start(2, None)
    model, masks = start.model, start.masks
    assert start.step == 0 and start.optimizer_state is None
    for name, mask in masks.items():
        w = model.get_parameter(name)
        assert torch.equal(w[mask], theta_0[name][mask])
        assert torch.equal(w[~mask], torch.zeros_like(w[~mask]))
        assert 0 < int(mask.sum()) < mask.numel()


def _train_one(task: TaskConfig, model: torch.nn.Module, masks: Masks, split: DeviceSplit) -> None:
    """One level of one model (a single replica), seed 0's data order."""
    train_level(LevelPlan(task, Replicas([model]), [masks], ReplicaData([split]),
                          [BatchStream(len(split.y_train), task.batch_size, 0)]))


def test_late_rewind_captures_the_weights_at_step_k(tiny_task, fake_data_dir, tmp_path) -> None:
    task = override(tiny_task, rewind_step=20, levels=2)
    run = _run(task, tmp_path, fake_data_dir)
    arrays = load_arrays("mnist", fake_data_dir)
    split = make_split(arrays, "mnist", "meanstd", task.val_size, 0)
    model = build_model("lenet300", 0)
    _train_one(override(task, max_steps=20, rewind_step=0), model, full_masks(model, list(dict(model.roles))), split)
    rewind = run.load_rewind()
    assert all(torch.equal(rewind[k], v) for k, v in model.state_dict().items())
    level1 = run.records()[1]
    assert level1["start_step"] == 20 and level1["steps"] == 20
    assert level1["early_stop_step"] is not None and 20 < level1["early_stop_step"] <= 40


@pytest.mark.parametrize("optimizer", [OptimizerConfig("adam", 1e-2, weight_decay=0.1),
                                       OptimizerConfig("sgd", 0.05, momentum=0.9, weight_decay=0.1)])
def test_pruned_weights_stay_exactly_zero(tiny_task, fake_data_dir, optimizer) -> None:
    task = dataclasses.replace(tiny_task, optimizer=optimizer)
    split = make_split(load_arrays("mnist", fake_data_dir), "mnist", "meanstd", task.val_size, 0)
    model = build_model("lenet300", 0)
    names = list(dict(model.roles))
    masks = random_masks(full_masks(model, names), {n: model.get_parameter(n).numel() // 3 for n in names},
                         torch.Generator().manual_seed(0))
    before = {n: model.get_parameter(n).detach().clone() for n in names}
    _train_one(task, model, masks, split)
    for n in names:
        w = model.get_parameter(n)
        assert torch.count_nonzero(w[~masks[n]]) == 0, f"{n}: a pruned weight moved"
        assert not torch.equal(w[masks[n]], before[n][masks[n]]), f"{n}: kept weights did not train"


def test_same_seed_gives_identical_masks_and_metrics(tiny_task, fake_data_dir, tmp_path) -> None:
    a, b = _run(tiny_task, tmp_path / "a", fake_data_dir), _run(tiny_task, tmp_path / "b", fake_data_dir)
    assert _strip(a.records()) == _strip(b.records())
    for level in range(tiny_task.levels + 1):
        assert a.mask_path(level).read_bytes() == b.mask_path(level).read_bytes()
    c = _run(tiny_task, tmp_path / "c", fake_data_dir, seed=1)
    assert _strip(c.records()) != _strip(a.records())


def test_resume_equals_an_uninterrupted_run(tiny_task, fake_data_dir, tmp_path) -> None:
    whole = _run(tiny_task, tmp_path / "whole", fake_data_dir)
    part = _run(override(tiny_task, levels=2), tmp_path / "part", fake_data_dir)
    first_two = part.level_path(1).stat().st_mtime_ns
    resumed = _run(tiny_task, tmp_path / "part", fake_data_dir)
    assert resumed.path.name == whole.path.name
    assert resumed.level_path(1).stat().st_mtime_ns == first_two, "a finished level was trained again"
    assert _strip(resumed.records()) == _strip(whole.records())
    for level in range(tiny_task.levels + 1):
        assert resumed.mask_path(level).read_bytes() == whole.mask_path(level).read_bytes()


def test_controls_use_the_winning_ticket_masks(tiny_task, fake_data_dir, tmp_path) -> None:
    imp = _run(tiny_task, tmp_path, fake_data_dir)
    reinit = _run(tiny_task, tmp_path, fake_data_dir, "reinit")
    rand = _run(tiny_task, tmp_path, fake_data_dir, "random-prune")
    assert [r["level"] for r in reinit.records()] == [1, 2] and reinit.records()[0]["arm"] == "reinit"
    theta = imp.load_rewind()
    for level in (1, 2):
        ticket = imp.load_masks(level)
        start = suite_arm(tiny_task, 0, "reinit", tmp_path).start(level, None)
        model, masks = start.model, start.masks
        for n, m in masks.items():
            assert torch.equal(m, ticket[n])
            assert (model.get_parameter(n)[m] != theta[n][m]).all(), "reinit kept an original value"
        start = suite_arm(tiny_task, 0, "random-prune", tmp_path).start(level, None)
        model, masks = start.model, start.masks
        for n, m in masks.items():
            assert int(m.sum()) == int(ticket[n].sum()) and not torch.equal(m, ticket[n])
            assert torch.equal(model.get_parameter(n)[m], theta[n][m])
        assert torch.equal(rand.load_masks(level)["fc1.weight"], masks["fc1.weight"])


def test_control_without_winning_ticket_run_is_refused(tiny_task, fake_data_dir, tmp_path) -> None:
    with pytest.raises(RunError, match="needs the winning-ticket mask"):
        _run(tiny_task, tmp_path, fake_data_dir, "reinit")


def test_run_metadata_and_record_schema(tiny_task, fake_data_dir, tmp_path) -> None:
    run = _run(tiny_task, tmp_path, fake_data_dir)
    meta = run.meta()
    assert meta["task"] == "lenet300-mnist" and meta["seed"] == 0 and meta["control"] == "none"
    assert meta["config"]["optimizer"] == {"name": "adam", "lr": 1.2e-3, "momentum": 0.0, "weight_decay": 0.0,
                                           "milestones": [], "gamma": 0.1, "at_rewind": "fresh"}
    record = run.records()[1]
    assert set(record) >= {"level", "weights_remaining_percent", "layer_remaining_percent", "early_stop_step",
                           "val_loss_at_early_stop", "test_acc_at_early_stop", "test_acc_final",
                           "train_acc_final", "steps", "seconds"}
    assert record["layer_remaining_percent"] == {"fc1.weight": 80.0, "fc2.weight": 80.0, "fc3.weight": 90.0}
    assert record["early_stop_step"] % tiny_task.eval_every == 0
    assert 0.0 <= record["test_acc_at_early_stop"] <= 1.0


def test_a_record_keeps_the_validation_curve_the_early_stop_was_read_from(tiny_task, fake_data_dir, tmp_path) -> None:
    for record in _run(tiny_task, tmp_path, fake_data_dir).records():
        curve = record["validation"]
        assert curve["step"] == [10, 20, 30, 40]
        best = min(range(len(curve["step"])), key=lambda i: (curve["loss"][i], i))  # the earliest lowest loss
        assert curve["step"][best] == record["early_stop_step"]
        assert (curve["loss"][best], curve["acc"][best]) == \
            (record["val_loss_at_early_stop"], record["val_acc_at_early_stop"])
        assert all(0.0 <= a <= 1.0 for a in curve["acc"])
