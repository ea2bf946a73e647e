"""Property-based tests (Hypothesis): the parsers of overrides, task files and references files
answer any input with a valid object or a one-line ConfigError, never another exception; the mask
selection removes exactly the count asked for and never revives a weight, whatever the scores
(NaN, infinities, ties)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ticketbench.config import TaskConfig, load_task, plain
from ticketbench.errors import ConfigError
from ticketbench.overrides import apply_overrides, parse_assignment
from ticketbench.pruning.methods import Method, MethodError, PruneRequest, select_masks
from ticketbench.pruning.select import prune_global, prune_layerwise
from ticketbench.references import parse_references
from ticketbench.task_check import check_task

BASE = load_task("mnist1d-mlp")
KEYS = ["max_steps", "batch_size", "levels", "val_size", "eval_every", "rewind_step", "model", "dataset",
        "optimizer.lr", "optimizer.name", "optimizer.momentum", "optimizer.milestones", "optimizer.gamma",
        "pruning.rates", "pruning.rates.all", "pruning.scope", "pruning.exclude", "split", "augment"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=8), inner, max_size=3), max_leaves=8)
fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _task_or_config_error(make) -> TaskConfig | None:  # noqa: ANN001
    try:
        task = make()
    except ConfigError as err:
        assert str(err) and "\n" not in str(err)
        return None
    return task


@fast
@given(key=st.one_of(st.sampled_from(KEYS), st.text(max_size=20)), raw=st.text(max_size=30))
def test_any_set_is_applied_and_valid_or_refused_in_one_line(key: str, raw: str) -> None:
    def make() -> TaskConfig:
        task = apply_overrides(BASE, [parse_assignment(f"{key}={raw}")], "--set")
        check_task(task, "--set")
        return task

    task = _task_or_config_error(make)
    if task is not None:  # what was accepted is a task that can run: finite numbers in range
        assert task.batch_size >= 1 and task.max_steps > task.rewind_step >= 0
        assert all(0 <= r < 1 for r in task.pruning.rates.values())
        assert math.isfinite(task.optimizer.lr) and task.optimizer.lr > 0


@fast
@given(number=st.integers(1, 10**6))
def test_a_whole_number_is_set_exactly(number: int) -> None:
    assert apply_overrides(BASE, [parse_assignment(f"max_steps={number}")], "--set").max_steps == number


@fast
@given(changes=st.dictionaries(st.sampled_from([k for k in KEYS if "." not in k] + ["optimizer", "pruning", "x"]),
                               values, max_size=4))
def test_any_task_file_loads_or_is_refused_in_one_line(changes: dict, tmp_path_factory: pytest.TempPathFactory
                                                       ) -> None:
    path = tmp_path_factory.mktemp("task") / "task.yaml"
    path.write_text(yaml.safe_dump(plain(BASE) | changes))
    _task_or_config_error(lambda: load_task(str(path)))


@fast
@given(data=st.binary(max_size=200))
def test_any_bytes_as_a_task_file_are_a_task_or_a_one_line_error(data: bytes,
                                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("task") / "task.yaml"
    path.write_bytes(data)
    _task_or_config_error(lambda: load_task(str(path)))


CLAIM = {"id": "c1", "statement": "s", "metric": {"kind": "value", "p_m": 51.3}, "comparator": ">=",
         "paper": 97.0, "tolerance": 0.5, "source": "F&C 2019", "mark": "V"}


@fast
@given(field=st.sampled_from([*CLAIM, "metric.kind", "metric.p_m", "metric.arm", "metric.other", "metric.p_m_range",
                              "metric.quantity", "protocol", "extra"]), value=values)
def test_any_claim_field_parses_or_is_refused_in_one_line(field: str, value: object) -> None:
    claim = {**CLAIM, "metric": dict(CLAIM["metric"])}
    if field.startswith("metric."):
        claim["metric"][field.split(".", 1)[1]] = value
    else:
        claim[field] = value
    text = yaml.safe_dump({"task": "lenet300-mnist", "protocol": "p", "claims": [claim]})
    try:
        refs = parse_references(text, "refs.yaml")
    except ConfigError as err:
        assert str(err).startswith("refs.yaml") and "\n" not in str(err)
        return
    (parsed,) = refs.claims
    assert math.isfinite(parsed.paper) and math.isfinite(parsed.tolerance) and parsed.tolerance >= 0


def _masks_and_scores(draw: st.DrawFn) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    shapes = draw(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=3))
    masks, scores = {}, {}
    for i, shape in enumerate(shapes):
        n = shape[0] * shape[1]
        masks[f"l{i}"] = torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n))).view(shape)
        floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([0.0, 1.0]))
        scores[f"l{i}"] = torch.tensor(draw(st.lists(floats, min_size=n, max_size=n)), dtype=torch.float32).view(shape)
    return masks, scores


@st.composite
def selections(draw: st.DrawFn) -> tuple[dict, dict, dict[str, int], int]:
    masks, scores = _masks_and_scores(draw)
    counts = {n: draw(st.integers(0, int(m.sum()))) for n, m in masks.items()}
    return masks, scores, counts, draw(st.integers(0, sum(int(m.sum()) for m in masks.values())))


def _no_revival(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> None:
    assert all(not bool((new[n] & ~old[n]).any()) for n in old)


@settings(max_examples=300, deadline=None)
@given(case=selections())
def test_selection_removes_exactly_the_count_and_revives_nothing(case: tuple) -> None:
    masks, scores, counts, total = case
    layer = prune_layerwise(scores, masks, counts)
    _no_revival(masks, layer)
    assert {n: int(masks[n].sum()) - int(layer[n].sum()) for n in masks} == counts
    assert prune_layerwise(scores, masks, counts).keys() == layer.keys()
    together = prune_global(scores, masks, total)
    _no_revival(masks, together)
    assert sum(int(m.sum()) for m in masks.values()) - sum(int(m.sum()) for m in together.values()) == total
    for name in masks:  # the same scores always give the same mask (ties by position)
        assert torch.equal(prune_global(scores, masks, total)[name], together[name])


@settings(max_examples=200, deadline=None)
@given(case=selections(), density=st.floats(0.01, 1.0))
def test_a_method_answer_is_turned_into_an_exact_mask_or_refused(case: tuple, density: float) -> None:
    masks, scores, _, _ = case
    request = PruneRequest(torch.nn.Module(), masks, {n: "all" for n in masks}, density, None, None,  # type: ignore[arg-type]
                           torch.Generator())
    kept = sum(int(m.sum()) for m in masks.values())
    assume(request.keep <= kept)
    try:
        new = select_masks(Method("m", lambda _: scores), request)
    except MethodError as err:
        kept_scores = torch.cat([scores[n][masks[n]] for n in masks])
        assert "NaN" in str(err) and bool(torch.isnan(torch.cat([s.flatten() for s in scores.values()])).any()) \
            or "same score" in str(err) and bool((kept_scores == kept_scores[0]).all())
        return
    _no_revival(masks, new)
    assert sum(int(m.sum()) for m in new.values()) == request.keep


def test_the_strategies_reach_the_interesting_cases(tmp_path: Path) -> None:
    """NaN and ties are among the drawn scores (the properties above would be vacuous otherwise)."""
    seen = {"nan": False, "tie": False}

    @settings(max_examples=200, deadline=None)
    @given(case=selections())
    def look(case: tuple) -> None:
        scores = torch.cat([s.flatten() for s in case[1].values()])
        seen["nan"] |= bool(torch.isnan(scores).any())
        seen["tie"] |= len(scores) > len(torch.unique(scores))

    look()
    assert all(seen.values()), seen
