"""Statistics, verdict paths, P_m matching, references schema, and the score/check/report commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import lenet_p_m, write_run
from test_cli import ticketbench

from ticketbench.errors import ConfigError
from ticketbench.references import Metric, load_references, parse_references, reference_tasks
from ticketbench.report import _p_m_ticks, arm_label, claim_row, level_table, mean_table
from ticketbench.scoring import Unmeasurable, nearest_level, score, stable_from
from ticketbench.stats import FAIL, INCONCLUSIVE, NOT_RUN, PASS, Interval, t_quantile_975, verdict
from ticketbench.storage.discovery import load_run_set
from ticketbench.testing import assert_reproduces


def test_t_interval_by_hand() -> None:
    iv = Interval.of([1.0, 2.0, 3.0])  # mean 2, sd 1, t(2) = 4.303 -> half-width 4.303 / sqrt(3)
    assert (iv.mean, iv.low, iv.high) == pytest.approx((2.0, 2 - 2.48434, 2 + 2.48434), abs=1e-4)
    iv = Interval.of([10.0, 12.0])  # sd sqrt(2), t(1) = 12.706 -> half-width 12.706
    assert (iv.low, iv.high) == pytest.approx((11 - 12.706, 11 + 12.706))
    assert Interval.of([5.0]).low == Interval.of([5.0]).high == 5.0
    for df, table in ((40, 2.021), (60, 2.000), (120, 1.980)):
        assert t_quantile_975(df) == pytest.approx(table, abs=1e-3)


@pytest.mark.parametrize(("values", "comparator", "paper", "tol", "expected"), [
    ([0.5, 0.6, 0.7], ">=", 0.3, 0.2, PASS),
    ([-0.5, -0.4, -0.45], ">=", 0.3, 0.2, FAIL),
    ([0.0, 0.3, 0.2], ">=", 0.3, 0.2, INCONCLUSIVE),
    ([-1.0, -1.1, -0.9], "<=", 0.0, 0.0, PASS),
    ([1.0, 1.1, 0.9], "<=", 0.0, 0.0, FAIL),
    ([0.1, 0.0, -0.1], "within", 0.0, 0.3, PASS),   # interval [-0.248, 0.248]
    ([1.0, 1.1, 1.2], "within", 0.0, 0.3, FAIL),
    ([0.2, 0.3, 0.4], "within", 0.0, 0.3, INCONCLUSIVE),  # interval [0.052, 0.548]
    ([0.35], ">=", 0.3, 0.2, PASS),
    ([0.05], ">=", 0.3, 0.2, FAIL),
])
def test_verdict_paths(values, comparator, paper, tol, expected) -> None:
    assert verdict(Interval.of(values), comparator, paper, tol) == expected


def _good_runs(root: Path, seeds=(0, 1, 2), reinit_acc: float = 0.975) -> Path:
    """Fabricated records that satisfy every measurable LeNet claim."""
    for seed in seeds:
        jitter = 0.0005 * seed
        imp = [(0, 0.980 + jitter, 4000)]
        imp += [(lv, 0.985 + jitter, 2000 + 100 * seed) for lv in range(1, 13)]
        imp += [(lv, 0.980 + jitter, 4000) for lv in range(13, 17)]
        write_run(root, seed, "imp", imp)
        write_run(root, seed, "reinit", [(lv, reinit_acc + jitter, 6000) for lv in range(1, 17)])
    return root / "lenet300-mnist"


def _results(root: Path) -> dict:
    results = score(load_references("lenet300-mnist"), load_run_set([root]))
    return {r.claim.id: r for r in results}


@pytest.mark.parametrize("asked", [17, 7])
def test_claims_beyond_the_levels_of_a_run_in_progress_are_not_run(tmp_path: Path, asked: int) -> None:
    # levels 0-6 finished: P_m(6) = 26.3% lies within the matching factor of the claims at 21.1%, which
    # read level 6 once the run is complete (7 levels asked) but wait for level 7 while it is in progress
    for seed in (0, 1):
        write_run(tmp_path, seed, "imp", [(0, 0.980, 4000)] + [(lv, 0.985, 2000) for lv in range(1, 7)], levels=asked)
    results = _results(tmp_path / "lenet300-mnist")
    assert results["pm51-learns-faster"].verdict == PASS
    if asked == 17:
        assert results["pm21-fastest"].verdict == NOT_RUN and results["pm21-fastest"].pending
        assert "in progress: its finished levels reach P_m 26.3% so far" in results["pm21-fastest"].note
        assert results["tickets-at-or-above-dense"].verdict == NOT_RUN and not results["pm21-fastest"].gate_unanswered
        assert not results["reinit-below-dense-pm21"].pending  # an arm not run is not in progress
    else:
        assert results["pm21-fastest"].verdict != NOT_RUN and "level 6" in results["pm21-fastest"].where


def test_a_run_with_no_finished_level_yet_leaves_every_claim_pending(tmp_path: Path) -> None:
    write_run(tmp_path, 0, "imp", [], levels=17)
    results = _results(tmp_path / "lenet300-mnist")
    assert results["dense-accuracy"].verdict == NOT_RUN and results["dense-accuracy"].pending
    assert "no level finished yet" in results["dense-accuracy"].note


def test_good_runs_pass_every_measurable_claim(tmp_path) -> None:
    results = _results(_good_runs(tmp_path))
    measured = {k: r.verdict for k, r in results.items() if r.verdict != NOT_RUN}
    assert set(measured.values()) == {PASS}
    instability = {"lmc-dense-stable-k0", "lmc-ticket-stable-k0-pm51", "lmc-ticket-stable-k0-pm21",
                   "lmc-ticket-stable-k0-pm7", "lmc-ticket-stable-k0-pm3.6", "lmc-random-prune-stable-k0-pm21"}
    assert {k for k, r in results.items() if r.verdict == NOT_RUN} == {
        "oneshot-faster", "oneshot-more-accurate", "snip-dense-accuracy", "snip-95-sparse", "snip-98-sparse",
        *instability}  # no instability analysis among these runs
    assert results["oneshot-faster"].note == "arm 'oneshot' was not run"
    assert results["lmc-dense-stable-k0"].note == "arm 'instability@k0' was not run"
    speed = results["pm21-ticket-vs-reinit-speed"]
    assert speed.interval.values == pytest.approx((3.0, 6000 / 2100, 6000 / 2200))
    assert speed.where == "level 7 (P_m 21.1%)"
    assert results["tickets-at-or-above-dense"].where == "min over levels 0-16 (P_m 100.0% to 2.9%)"


def test_one_seed_gives_a_point_verdict_marked(tmp_path) -> None:
    result = _results(_good_runs(tmp_path, seeds=(0,)))["pm13-most-accurate"]
    assert result.verdict == PASS and result.one_seed and result.interval.values == pytest.approx((0.5,))
    assert claim_row(result)["verdict"] == "PASS (1 seed)"


def test_a_diverged_level_fails_the_claims_that_read_it(tmp_path) -> None:
    root = _good_runs(tmp_path)
    level = root / "imp-seed1-f0" / "levels" / "level_07.json"
    record = json.loads(level.read_text())
    level.write_text(json.dumps(dict(record, test_acc_at_early_stop=None, diverged=True)))
    results = _results(root)
    assert results["pm21-ticket-vs-reinit-accuracy"].verdict == FAIL
    assert "seed 1: level 7 of imp diverged" in results["pm21-ticket-vs-reinit-accuracy"].note
    assert results["tickets-at-or-above-dense"].verdict == FAIL
    assert results["pm13-most-accurate"].verdict == PASS, "claims at other levels are unaffected"


def test_nearest_level_matching() -> None:
    records = {lv: {"level": lv, "weights_remaining_percent": lenet_p_m(lv)} for lv in range(6)}
    assert nearest_level(records, 51.3)["level"] == 3
    assert nearest_level(records, 30.0)["level"] == 5  # 32.9 is nearer than 41.0
    with pytest.raises(Unmeasurable, match=r"no level near P_m 13.5% \(nearest: 32.9%\)"):
        nearest_level(records, 13.5)


def test_an_inconclusive_claim_across_seeds(tmp_path) -> None:
    for seed, acc in enumerate((0.978, 0.985, 0.981)):
        write_run(tmp_path, seed, "imp", [(0, 0.980, 4000), (3, acc, 3000)])
    result = _results(tmp_path / "lenet300-mnist")["pm51-more-accurate"]
    assert result.verdict == INCONCLUSIVE and result.interval.n == 3


def test_every_packaged_references_file_loads() -> None:
    assert {"lenet300-mnist", "conv2-cifar10", "conv4-cifar10", "conv6-cifar10", "resnet20-cifar10",
            "resnet20-cifar10-rewind0"} <= set(reference_tasks())
    for task in reference_tasks():
        refs = load_references(task)
        assert refs.task == task and all(c.source and c.statement for c in refs.claims)
        assert not any(c.gating for c in refs.claims if c.mark in ("F", "U"))


CLAIM = """task: t
protocol: p
claims:
  - id: c1
    statement: s
    metric: {kind: value, p_m: 50}
    comparator: ">="
    paper: 1
    tolerance: 0.1
    source: paper
    mark: V
"""


@pytest.mark.parametrize(("old", "new", "message"), [
    ("    source: paper\n", "", "claim c1: field 'source' is missing"),
    ('comparator: ">="', "comparator: '>'", "claim c1: field 'comparator' is '>'; valid: >=, <=, within"),
    ("mark: V", "mark: X", "claim c1: field 'mark' is 'X'; valid: V, D, S, F, U"),
    ("paper: 1", "paper: high", "claim c1: field 'paper' has the wrong type ('high')"),
    ("p_m: 50", "pm: 50", "claim c1: field 'metric.pm' is unknown"),
    ("kind: value", "kind: mean", "claim c1: field 'metric.kind' is 'mean'"),
    ("kind: value", "kind: arm_delta", "claim c1: field 'metric.other' (the compared arm) is required"),
    ("p_m: 50", "p_m: 150", "claim c1: field 'metric.p_m' must be a percentage"),
    ("tolerance: 0.1", "tolerance: -1", "claim c1: field 'tolerance' must be >= 0"),
    ("paper: 1\n    tolerance: 0.1", "paper: 1.0e+308\n    tolerance: 1.0e+308",
     "claim c1: field 'paper' is 1e+308, outside what its metric (value of test_acc_at_early_stop) can take, [0, 100]"),
    ("tolerance: 0.1", "tolerance: 1", "claim c1: with tolerance 1 the claim accepts every value its metric can take "
                                       "([0, 100]), so it cannot fail"),
    ("kind: value, p_m: 50}\n    comparator: \">=\"\n    paper: 1", "kind: speedup_vs_dense, p_m: 50}\n    "
     "comparator: \">=\"\n    paper: -1", "field 'paper' is -1, outside what its metric (speedup_vs_dense of "
     "early_stop_step) can take, [0, inf]"),
    ("kind: value, p_m: 50}\n    comparator: \">=\"\n    paper: 1", "kind: delta_to_dense, p_m: 50}\n    "
     "comparator: \"<=\"\n    paper: 150", "field 'paper' is 150, outside what its metric (delta_to_dense of "
     "test_acc_at_early_stop) can take, [-100, 100]"),
])
def test_schema_errors_name_file_claim_and_field(old: str, new: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_references(CLAIM.replace(old, new), "refs/t.yaml")
    assert str(err.value).startswith("refs/t.yaml: ") and message in str(err.value)


def test_duplicate_claim_ids_are_refused() -> None:
    doubled = CLAIM + CLAIM.split("claims:\n", 1)[1]
    with pytest.raises(ConfigError, match="claim c1: field 'id' is used twice"):
        parse_references(doubled, "refs/t.yaml")


def test_check_exit_codes_through_the_cli(tmp_path) -> None:
    good = _good_runs(tmp_path / "good")
    passed = ticketbench("check", str(good))
    assert passed.returncode == 0 and "check: passed" in passed.stdout, passed.stderr
    bad = _good_runs(tmp_path / "bad", reinit_acc=0.99)
    failed = ticketbench("check", str(bad))
    assert failed.returncode == 1 and "claim reinit-below-dense-pm21 FAILs" in failed.stderr
    assert "claim pm21-ticket-vs-reinit-accuracy FAILs" in failed.stderr
    allowed = ticketbench("check", str(bad), "--allow-fail", "reinit-below-dense-pm21,pm21-ticket-vs-reinit-accuracy")
    assert allowed.returncode == 0 and "allowed as a documented finding" in allowed.stderr
    assert ticketbench("check", str(bad), "--allow-fail", "reinit-below-dense-pm21").returncode == 1
    typo = ticketbench("check", str(bad), "--allow-fail", "reinit-below-dense")
    assert typo.returncode == 2 and "unknown claim 'reinit-below-dense'" in typo.stderr
    regressed = _good_runs(tmp_path / "regressed", seeds=(0,))
    level = regressed / "imp-seed0-f0" / "levels" / "level_05.json"
    level.write_text(json.dumps(dict(json.loads(level.read_text()), test_acc_at_early_stop=0.981)))
    vs_baseline = ticketbench("check", str(regressed), "--baseline", str(good), "--tolerance", "0.3")
    assert vs_baseline.returncode == 1
    assert vs_baseline.stderr == "check: imp level 5: test accuracy 98.10% < baseline 98.55% - 0.3 pp\n"
    assert ticketbench("check", str(regressed), "--baseline", str(good)).returncode == 0  # within 0.5 pp
    missing = ticketbench("check", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stderr.strip() == (
        f"ticketbench: error: {tmp_path / 'nowhere'} does not exist")
    write_run(tmp_path / "mixed", 0, "imp", [(0, 0.98, 100)], task="conv2-cifar10")
    mixed = ticketbench("check", str(tmp_path / "mixed"), str(good))
    assert mixed.returncode == 2 and "cannot be combined" in mixed.stderr


def test_score_writes_verdicts_and_report_writes_figures(tmp_path) -> None:
    root = _good_runs(tmp_path)
    result = ticketbench("score", str(root))
    assert result.returncode == 0 and "pm21-ticket-vs-reinit-speed" in result.stdout
    verdicts = json.loads((root / "verdicts.json").read_text())
    by_id = {c["id"]: c for c in verdicts["claims"]}
    assert by_id["pm13-most-accurate"]["verdict"] == "PASS" and by_id["pm13-most-accurate"]["n"] == 3
    assert verdicts["seeds"] == [0, 1, 2] and len(verdicts["runs"]) == 6
    assert "| pm13-most-accurate |" in (root / "VERDICTS.md").read_text()
    drawn = ticketbench("report", str(root), "--out", str(tmp_path / "fig"))
    assert drawn.returncode == 0, drawn.stderr
    for stem in ("accuracy", "early_stop"):
        assert (tmp_path / "fig" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "fig" / f"{stem}.png").stat().st_size > 10_000
        assert "<svg" in (tmp_path / "fig" / f"{stem}.svg").read_text()


def test_report_draws_nothing_before_the_winning_tickets_finish_a_level(tmp_path: Path) -> None:
    write_run(tmp_path, 0, "imp", [], levels=17)  # level 0 still training
    drawn = ticketbench("report", str(tmp_path / "lenet300-mnist"), "--out", str(tmp_path / "fig"))
    assert drawn.returncode == 0, drawn.stderr
    assert "no figures: the winning tickets have no finished level" in drawn.stdout
    assert not list((tmp_path / "fig").iterdir())


def test_a_figure_of_the_first_levels_spans_the_claims_still_ahead(tmp_path: Path, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    write_run(tmp_path, 0, "imp", [(0, 0.98, 3000)], levels=17)  # only the dense level is done
    drawn: list = []
    monkeypatch.setattr(plt, "close", drawn.append)
    assert ticketbench("report", str(tmp_path / "lenet300-mnist"), "--out", str(tmp_path / "fig")).returncode == 0
    accuracy, early_stop = (figure.axes[0] for figure in drawn)
    # lenet300-mnist's claims on the tickets' accuracy and early stop read P_m down to 3.6%
    assert accuracy.get_xlim()[1] < 3.6 and early_stop.get_xlim()[1] < 3.6
    assert {"100", "13.5", "3.6"} <= {t.get_text() for t in accuracy.get_xticklabels()}


def test_the_p_m_axis_is_ticked_at_the_claims() -> None:
    assert _p_m_ticks([100, 26.4]) == [100, 51.3, 26.4, 13.5, 7.0, 3.6, 1.9, 1.0]  # 21.1 is too close to 26.4
    assert _p_m_ticks([15.1]) == [100, 51.3, 21.1, 15.1, 7.0, 3.6, 1.9, 1.0]


def test_a_figure_names_the_seeds_of_each_arm(tmp_path: Path) -> None:
    for seed in (0, 1, 2):
        write_run(tmp_path, seed, "imp", [(0, 0.98, 3000), (1, 0.98, 2500)])
    write_run(tmp_path, 2, "random-prune", [(1, 0.97, 4000)])
    run_set = load_run_set([tmp_path])
    assert arm_label(run_set, "imp") == "winning ticket (mean of 3 seeds)"
    assert arm_label(run_set, "random-prune") == "random pruning (seed 2)"


def test_assert_reproduces_for_a_users_test_suite(tmp_path) -> None:
    assert len(assert_reproduces([_good_runs(tmp_path / "good")])) == 22  # every claim of the task
    with pytest.raises(AssertionError, match="gating claim\\(s\\) of lenet300-mnist FAIL:\n  reinit-below-dense"):
        assert_reproduces([_good_runs(tmp_path / "bad", reinit_acc=0.99)], "lenet300-mnist")


def test_the_level_table_gives_every_seed_its_own_columns(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, 0, "imp", [(0, 0.9810, 3100), (1, 0.9820, 2500)]),
            write_run(tmp_path, 1, "imp", [(0, 0.9770, 3700), (1, 0.9760, 1900)]),
            write_run(tmp_path, 1, "reinit", [(1, 0.9700, 4000)])]
    lines = level_table(runs).splitlines()
    assert lines[0].startswith("| level | P_m % | imp seed 0 early-stop step | imp seed 0 test acc @ early stop %")
    assert "reinit seed 1 test acc final %" in lines[0]
    cells = lines[2].split(" | ")
    assert cells[2:5] == ["3100", "98.10", "98.10"] and cells[5:8] == ["3700", "97.70", "97.70"]
    assert lines[3].split(" | ")[-3:] == ["4000", "97.00", "97.00 |"]
    assert lines[2].endswith("| — | — | — |")  # reinit has no level 0


def test_the_mean_table_gives_every_arm_its_mean_over_seeds_with_an_interval(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, seed, "imp", [(0, acc, step)]) for seed, acc, step in
            ((0, 0.980, 3000), (1, 0.970, 3600), (2, 0.975, 3300))]
    runs.append(write_run(tmp_path, 0, "reinit", [(1, 0.960, 4000)]))
    lines = mean_table(runs).splitlines()
    assert lines[0] == ("| level | P_m % | imp seeds | imp early-stop step | imp test acc % | reinit seeds | "
                        "reinit early-stop step | reinit test acc % |")
    half = 4.303 * 0.5 / 3**0.5  # t_{0.975, 2} * sd / sqrt(n): values 98.0, 97.0, 97.5 have sd 0.5
    assert lines[2] == f"| 0 | 100.0 | 3 | 3,300 | 97.50 [{97.5 - half:.2f}, {97.5 + half:.2f}] | — | — | — |"
    assert lines[3] == f"| 1 | {lenet_p_m(1):.1f} | — | — | — | 1 | 4,000 | 96.00 |"


@pytest.mark.parametrize(("instability_pp", "expected"), [
    ({0: 5.0, 100: 1.0, 500: 0.5, 2000: 0.2}, 100),
    ({0: 1.0, 100: 5.0, 500: 0.5, 2000: 0.2}, 500),  # stable at k = 0 by chance does not count
    ({0: 0.1, 100: 0.2}, 0),
    ({0: 1.0, 100: 0.5, 500: 3.0}, "unstable at the largest analysed k = 500"),
])
def test_stable_from_is_the_first_k_of_the_stable_run_up_to_the_largest_k(instability_pp: dict[int, float],
                                                                         expected: int | str) -> None:
    arms = {f"instability@k{k}": {0: {"level": 0, "arm": "instability", "weights_remaining_percent": 100.0,
                                       "instability_test": pp / 100}} for k, pp in instability_pp.items()}
    metric = Metric(kind="value", arm="instability", quantity="stable_from_step", p_m=100.0)
    if isinstance(expected, str):
        with pytest.raises(Unmeasurable, match=expected):
            stable_from(metric, arms)
    else:
        assert stable_from(metric, arms)[0] == expected
