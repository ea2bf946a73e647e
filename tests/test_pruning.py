"""Mask selection: exact counts, shrinking masks, deterministic ties, the F&C closed form."""

from __future__ import annotations

import pytest
import torch

from ticketbench.config import PruningConfig
from ticketbench.models import build_model
from ticketbench.pruning.masks import full_masks, kept, load_masks, remaining_percent, save_masks
from ticketbench.pruning.schedule import next_masks
from ticketbench.pruning.select import prune_global, prune_layerwise, random_masks

FC = PruningConfig(scope="layerwise", rates={"hidden": 0.2, "output": 0.1})


def _imp_rounds(rounds: int, pruning: PruningConfig = FC):
    """Masks of LeNet-300-100 after each of ``rounds`` magnitude rounds (fresh random weights each round)."""
    model = build_model("lenet300", 0)
    roles = dict(model.roles)
    masks = full_masks(model, list(roles))
    history = [masks]
    for r in range(rounds):
        with torch.no_grad():
            for n in masks:
                model.get_parameter(n).normal_(generator=torch.Generator().manual_seed(r))
        masks = next_masks(model, masks, roles, pruning)
        history.append(masks)
    return history


@pytest.mark.parametrize(("rounds", "expected"), [(3, 51.3), (7, 21.1), (9, 13.5), (15, 3.6), (16, 2.9)])
def test_weights_remaining_matches_frankle_carbin(rounds: int, expected: float) -> None:
    masks = _imp_rounds(rounds)[-1]
    assert round(remaining_percent(masks), 1) == expected
    closed_form = 100 * (265_200 * 0.8**rounds + 1_000 * 0.9**rounds) / 266_200
    assert remaining_percent(masks) == pytest.approx(closed_form, abs=0.01)


def test_each_round_removes_exact_per_layer_counts_and_masks_only_shrink() -> None:
    history = _imp_rounds(5)
    rates = {"fc1.weight": 0.2, "fc2.weight": 0.2, "fc3.weight": 0.1}
    for before, after in zip(history, history[1:], strict=False):
        for name in before:
            assert int(before[name].sum()) - int(after[name].sum()) == round(rates[name] * int(before[name].sum()))
            assert not (after[name] & ~before[name]).any(), "a pruned weight came back"


def test_magnitude_removes_the_smallest_weights() -> None:
    scores = {"w": torch.tensor([[0.5, -3.0, 0.1], [2.0, 0.0, 1.0]]).abs()}
    masks = prune_layerwise(scores, {"w": torch.ones(2, 3, dtype=torch.bool)}, {"w": 2})
    assert masks["w"].tolist() == [[True, True, False], [True, False, True]]


def test_ties_break_by_position_and_repeat_exactly() -> None:
    scores = {"a": torch.ones(10), "b": torch.ones(10)}
    masks = {"a": torch.ones(10, dtype=torch.bool), "b": torch.ones(10, dtype=torch.bool)}
    first = prune_global(scores, masks, 13)
    assert first["a"].sum() == 0 and first["b"].tolist() == [False] * 3 + [True] * 7
    again = prune_global(scores, masks, 13)
    assert all(torch.equal(first[n], again[n]) for n in first)


def test_already_pruned_weights_are_not_counted_again() -> None:
    scores = {"w": torch.tensor([0.0, 0.0, 5.0, 1.0, 2.0])}
    mask = {"w": torch.tensor([False, False, True, True, True])}
    out = prune_layerwise(scores, mask, {"w": 1})
    assert out["w"].tolist() == [False, False, True, False, True]


def test_global_selection_ranks_across_layers() -> None:
    scores = {"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([0.5, 10.0])}
    masks = {n: torch.ones_like(s, dtype=torch.bool) for n, s in scores.items()}
    out = prune_global(scores, masks, 2)
    assert out["a"].tolist() == [False, True, True] and out["b"].tolist() == [False, True]
    assert kept(out) == 3


def test_global_scope_prunes_twenty_percent_of_the_total() -> None:
    history = _imp_rounds(2, PruningConfig(scope="global", rates={"all": 0.2}))
    assert kept(history[1]) == 266_200 - round(0.2 * 266_200)
    assert kept(history[2]) == kept(history[1]) - round(0.2 * kept(history[1]))


def test_random_masks_keep_exact_counts() -> None:
    like = {"a": torch.ones(30, 40, dtype=torch.bool), "b": torch.ones(7, dtype=torch.bool)}
    out = random_masks(like, {"a": 123, "b": 2}, torch.Generator().manual_seed(1))
    assert int(out["a"].sum()) == 123 and int(out["b"].sum()) == 2


def test_cannot_remove_more_than_kept() -> None:
    with pytest.raises(ValueError, match="cannot remove 4 of 3"):
        prune_layerwise({"w": torch.ones(3)}, {"w": torch.ones(3, dtype=torch.bool)}, {"w": 4})


def test_masks_round_trip_bit_packed(tmp_path) -> None:
    masks = _imp_rounds(2)[-1]
    save_masks(tmp_path / "m.npz", masks)
    loaded = load_masks(tmp_path / "m.npz")
    assert list(loaded) == list(masks) and all(torch.equal(loaded[n], masks[n]) for n in masks)
    assert (tmp_path / "m.npz").stat().st_size < 266_200 / 8 + 4096
