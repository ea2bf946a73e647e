"""The speed benchmarks: ``pytest benchmarks/ --benchmark-only`` (see README.md here).

Each workload also checks that it trained (an accuracy far above chance), so a loop that skips
work cannot pass as fast."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
import torch
from alternatives import lottery_ticket_level, modelpruning_level, torch_prune_level
from workload import Workload, adam, bare_level, loss_and_accuracy, masked_steps

from ticketbench.data.tensors import ReplicaData
from ticketbench.pruning.masks import apply_masks
from ticketbench.pruning.schedule import next_masks
from ticketbench.training.level import LevelPlan, fit_level, train_level
from ticketbench.training.replicas import Replicas

ROUNDS = 5
rounds = pytest.mark.parametrize("rnd", range(ROUNDS))  # placed below a loop parameter: rounds interleave
TRAINED = 0.85  # LeNet-300-100 passes this within 1,000 steps; chance is 0.10


def _level_ticketbench(w: Workload) -> float:
    model = w.model()
    result = train_level(LevelPlan(w.task, Replicas([model]), [w.masks], ReplicaData([w.splits[0]]), [w.stream()]))[0]
    roles = {n: r for n, r in model.roles.items() if n in w.masks}
    masks = next_masks(model, w.masks, roles, w.task.pruning)  # prune, then rewind to θ0
    model.load_state_dict(w.model().state_dict())
    apply_masks(model, masks)
    return result.test_acc_final


@pytest.mark.parametrize("loop", ["bare", "ticketbench"])
@rounds
def test_step(measure, step_workload, loop) -> None:
    w = dataclasses.replace(step_workload, task=dataclasses.replace(step_workload.task, eval_every=10 ** 9))
    split = w.splits[0]
    if loop == "bare":
        def run(model, rows):
            masked_steps(model, w.masks, adam(model, w.task), rows, split)
            return loss_and_accuracy(model, split.x_val, split.y_val)[1]  # the level's one validation
        accuracy = measure("step-bare", run, lambda: (w.model(), w.rows()))
    else:
        def run(model):
            fitted = fit_level(LevelPlan(w.task, model, [w.masks], ReplicaData([split]), [w.stream()]))
            return fitted.module.val_acc[0].item()
        accuracy = measure("step-ticketbench", run, lambda: (Replicas([w.model()]),))
    assert accuracy > TRAINED


@pytest.mark.parametrize("loop", ["bare", "bare-unfused", "ticketbench", "torch-prune", "modelpruning",
                                  "lottery-ticket"])
@rounds
def test_level(measure, level_workload, loop) -> None:
    w = level_workload
    split = w.splits[0]
    runs = {
        "bare": lambda m, r: bare_level(m, w.masks, split, r, adam(m, w.task), w.task.eval_every)["test_final"],
        "bare-unfused": lambda m, r: bare_level(m, w.masks, split, r, adam(m, w.task, fused=False),
                                                w.task.eval_every)["test_final"],
        "ticketbench": lambda m, r: _level_ticketbench(w),
        "torch-prune": lambda m, r: torch_prune_level(m, w.masks, split, r, w.task),
        "modelpruning": lambda m, r: modelpruning_level(m, w.masks, split, r, w.task),
        "lottery-ticket": lambda m, r: lottery_ticket_level(m, w.masks, split, r, w.task),
    }
    assert measure(f"level-{loop}", runs[loop], lambda: (w.model(), w.rows())) > TRAINED


@pytest.mark.parametrize("path", ["device", "dataloader"])
@rounds
def test_data_path(measure, step_workload, path) -> None:
    w, split = step_workload, step_workload.splits[0]

    def loader():
        dataset = torch.utils.data.TensorDataset(split.x_train, split.y_train)
        return torch.utils.data.DataLoader(dataset, batch_size=w.task.batch_size, shuffle=True, drop_last=True,
                                           generator=torch.Generator().manual_seed(0))

    def run(model, batches):
        masked_steps(model, w.masks, adam(model, w.task), batches, split if path == "device" else None)
        return loss_and_accuracy(model, split.x_val, split.y_val)[1]

    def setup():
        return w.model(), (w.rows() if path == "device" else _first(loader(), w.task.max_steps))
    assert measure(f"data-{path}", run, setup) > TRAINED


def _first(loader: torch.utils.data.DataLoader, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` batches, reshuffling at every epoch's end."""
    while True:
        for batch in loader:
            if steps == 0:
                return
            steps -= 1
            yield batch


@pytest.mark.parametrize("k", ["bare", 1, 2, 4, 8])
@rounds
def test_replicas(measure, step_workload, k) -> None:
    w = dataclasses.replace(step_workload, task=dataclasses.replace(step_workload.task, eval_every=100))
    if k == "bare":
        split = w.splits[0]
        accuracies = [measure("replicas-bare", lambda m, r: bare_level(m, w.masks, split, r, adam(m, w.task), 100)
                              ["test_final"], lambda: (w.model(), w.rows()))]
    else:
        accuracies = [r.test_acc_final for r in
                      measure(f"replicas-{k}", lambda *a: train_level(LevelPlan(w.task, *a)), lambda: w.replicas(k))]
    assert len(accuracies) == (1 if k == "bare" else k) and min(accuracies) > TRAINED
