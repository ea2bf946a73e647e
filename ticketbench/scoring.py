"""Verdicts: evaluate each reference claim on the per-level records of several seeds and arms."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ticketbench.controls import TICKET
from ticketbench.errors import RunError
from ticketbench.references import Claim, Metric, References
from ticketbench.stats import FAIL, NOT_RUN, Interval, verdict
from ticketbench.storage.discovery import Records, RunSet
from ticketbench.storage.schema import STABLE_BELOW

# The largest factor between a claimed P_m and the P_m of the level used for it.
MAX_P_M_FACTOR = 1.25


class Unmeasurable(Exception):
    """The records cannot answer this claim (arm not run, no level near the claimed P_m)."""


class NotReached(Unmeasurable):
    """The claim reads levels that an arm still in progress has not finished yet."""


class Diverged(Exception):
    """A record the claim reads comes from a diverged level."""


def _quantity(record: dict, name: str) -> float:
    value = record.get(name)
    # an instability record whose copies diverged: both sit at chance all along the path, so its
    # instability is near 0 and would read as "stable"
    diverged = record.get("diverged") or any(record.get("copy_diverged", ()))
    if diverged or (value is not None and not math.isfinite(value)):
        raise Diverged(f"level {record['level']} of {record['arm']} diverged")
    if value is None:
        raise Unmeasurable(f"{name} is not recorded (e.g. no validation split)")
    percent = name.endswith("acc") or "_acc_" in name or name.startswith("instability")
    return 100.0 * value if percent else float(value)


def nearest_level(records: Records, p_m: float) -> dict:
    """The record whose P_m is nearest ``p_m`` (within a factor of MAX_P_M_FACTOR)."""
    if not records:
        raise Unmeasurable("no levels")
    best = min(records.values(), key=lambda r: (abs(r["weights_remaining_percent"] - p_m), r["level"]))
    if abs(math.log(best["weights_remaining_percent"] / p_m)) > math.log(MAX_P_M_FACTOR):
        raise Unmeasurable(f"no level near P_m {p_m}% (nearest: {best['weights_remaining_percent']:.1f}%)")
    return best


def _levels(records: Records, metric: Metric) -> list[dict]:
    if metric.p_m is not None:
        return [nearest_level(records, metric.p_m)]
    low, high = metric.p_m_range
    chosen = [r for r in records.values() if low <= round(r["weights_remaining_percent"], 1) <= high]
    if not chosen or min(round(r["weights_remaining_percent"], 1) for r in chosen) > low * MAX_P_M_FACTOR:
        raise Unmeasurable(f"the levels do not reach down to P_m {low}%")
    return sorted(chosen, key=lambda r: r["level"])


def _per_level(metric: Metric, arms: dict[str, Records]) -> Callable[[dict], float]:
    """The claim's value at one level record of ``metric.arm``."""
    q = metric.quantity
    if metric.kind == "value":
        return lambda rec: _quantity(rec, q)
    if metric.kind in ("delta_to_dense", "speedup_vs_dense"):
        if 0 not in arms.get(TICKET.arm, {}):
            raise Unmeasurable("no dense level (imp arm, level 0)")
        dense = _quantity(arms[TICKET.arm][0], q)
        if metric.kind == "delta_to_dense":
            return lambda rec: _quantity(rec, q) - dense
        return lambda rec: dense / _quantity(rec, q)
    other = arms.get(metric.other)
    if not other:
        raise Unmeasurable(f"arm {metric.other!r} was not run")

    def partner(rec: dict) -> float:
        if rec["level"] not in other:
            raise Unmeasurable(f"arm {metric.other!r} has no level {rec['level']}")
        return _quantity(other[rec["level"]], q)

    if metric.kind == "arm_delta":
        return lambda rec: _quantity(rec, q) - partner(rec)
    return lambda rec: partner(rec) / _quantity(rec, q)


def stable_from(metric: Metric, arms: dict[str, Records]) -> tuple[float, str]:
    """The rewind step k from which on the subnetwork nearest ``metric.p_m`` of the analysis
    ``metric.arm`` is stable: the smallest analysed k whose instability (test) is below 2 pp, as
    it is at every larger analysed k."""
    prefix = f"{metric.arm}@k"
    steps = sorted(int(name[len(prefix):]) for name in arms if name.startswith(prefix))
    if not steps:
        raise Unmeasurable(f"no instability analysis {metric.arm!r} was run")
    stable = {k: _quantity(nearest_level(arms[f"{prefix}{k}"], metric.p_m or 100.0), "instability_test")
              < 100 * STABLE_BELOW for k in steps}
    if not stable[steps[-1]]:
        raise Unmeasurable(f"unstable at the largest analysed k = {steps[-1]}; analyse later rewind steps")
    first = steps[-1]
    for k in reversed(steps):  # back from the largest k while it stays stable
        if not stable[k]:
            break
        first = k
    return float(first), f"analysed k: {', '.join(map(str, steps))}"


def measure(metric: Metric, arms: dict[str, Records], reached: dict[str, float] | None = None) -> tuple[float, str]:
    """The claim's value for one seed and where it was read ("level 7, P_m 21.0%"); ``reached``:
    see :class:`RunSet`."""
    if metric.quantity == "stable_from_step":
        return stable_from(metric, arms)
    if metric.arm not in arms:
        raise Unmeasurable(f"arm {metric.arm!r} was not run")
    for arm in (metric.arm, metric.other):
        needed = metric.p_m if metric.p_m is not None else metric.p_m_range[0]
        if arm in (reached or {}) and (reached[arm] == math.inf or round(needed, 1) < round(reached[arm], 1)):
            so_far = "no level finished yet" if reached[arm] == math.inf else \
                f"its finished levels reach P_m {reached[arm]:.1f}% so far"
            raise NotReached(f"arm {arm!r} is in progress: {so_far}")
    levels = _levels(arms[metric.arm], metric)
    at = _per_level(metric, arms)
    values = [at(rec) for rec in levels]
    where = ", ".join(f"level {r['level']} (P_m {r['weights_remaining_percent']:.1f}%)" for r in levels)
    if len(levels) > 1:
        lo, hi = levels[-1]["weights_remaining_percent"], levels[0]["weights_remaining_percent"]
        where = f"min over levels {levels[0]['level']}-{levels[-1]['level']} (P_m {hi:.1f}% to {lo:.1f}%)"
    return min(values), where


@dataclass
class ClaimResult:
    claim: Claim
    verdict: str
    per_seed: dict[int, float | None]
    interval: Interval | None
    where: str
    note: str = ""
    pending: bool = False  # NOT RUN only because the levels it reads are still in progress

    @property
    def gate_failed(self) -> bool:
        return self.claim.gating and self.verdict == FAIL

    @property
    def gate_unanswered(self) -> bool:
        """A gating claim these runs cannot answer (arm not run, levels not reached by a finished
        run); a claim whose levels are still in progress is pending, not unanswered."""
        return self.claim.gating and self.verdict == NOT_RUN and not self.pending

    @property
    def one_seed(self) -> bool:
        return self.interval is not None and self.interval.n == 1


def score_claim(claim: Claim, run_set: RunSet) -> ClaimResult:
    per_seed: dict[int, float | None] = {}
    wheres, reasons, diverged, waiting = set(), set(), [], []
    for seed in run_set.all_seeds:
        try:
            per_seed[seed], where = measure(claim.metric, run_set.arms(seed), run_set.reached.get(seed))
            wheres.add(where)
        except Diverged as err:
            per_seed[seed] = None
            diverged.append(f"seed {seed}: {err}")
        except Unmeasurable as err:
            reasons.add(str(err))
            waiting.append(isinstance(err, NotReached))
    where = "; ".join(sorted(wheres))
    if diverged:
        return ClaimResult(claim, FAIL, per_seed, None, where, "diverged: " + "; ".join(diverged))
    values = [v for v in per_seed.values() if v is not None]
    if not values:
        return ClaimResult(claim, NOT_RUN, per_seed, None, where, "; ".join(sorted(reasons)),
                           pending=bool(waiting) and all(waiting))
    interval = Interval.of(values)
    missing = [str(seed) for seed in run_set.all_seeds if seed not in per_seed]
    note = "; ".join(filter(None, ["1 seed" if len(values) == 1 else "",
                                   f"seed(s) {', '.join(missing)} cannot answer it: {'; '.join(sorted(reasons))}"
                                   if missing else ""]))
    return ClaimResult(claim, verdict(interval, claim.comparator, claim.paper, claim.tolerance),
                       per_seed, interval, where, note)


def score(references: References, run_set: RunSet) -> list[ClaimResult]:
    if references.task != run_set.task:
        raise RunError(f"the references are for {references.task}, the runs are {run_set.task}")
    return [score_claim(c, run_set) for c in references.claims]


def accuracy_pct(record: dict) -> float | None:
    """A level's test accuracy in %: at the early-stop step, or at the end of training on a task
    without a validation split (no early stop); None for a diverged level."""
    value = record.get("test_acc_at_early_stop")
    if value is None or record.get("early_stop_step") is None:
        value = record.get("test_acc_final")
    return None if value is None or record.get("diverged") else 100.0 * value


def regressions(run_set: RunSet, baseline: RunSet, tolerance_pp: float) -> list[str]:
    """Levels whose mean test accuracy (:func:`accuracy_pct`, a diverged level counting as -inf) fell
    more than ``tolerance_pp`` below the baseline's; a baseline of another task or configuration,
    or one sharing no level with the runs, is refused."""
    if (baseline.task, baseline.fingerprint) != (run_set.task, run_set.fingerprint):
        raise RunError(f"--baseline holds {baseline.task} ({baseline.fingerprint}), the runs are {run_set.task} "
                       f"({run_set.fingerprint}); a baseline must be stored runs of the same task and configuration")

    def means(rs: RunSet) -> dict[tuple[str, int], float]:
        pooled: dict[tuple[str, int], list[float]] = {}
        for arms in rs.seeds.values():
            for arm, records in arms.items():
                for level, rec in records.items():
                    acc = accuracy_pct(rec)
                    pooled.setdefault((arm, level), []).append(-math.inf if acc is None else acc)
        return {k: sum(v) / len(v) for k, v in pooled.items()}

    now, then = means(run_set), means(baseline)
    if not now.keys() & then.keys():
        return ["no level of any arm is in both the runs and the baseline: nothing to compare"]
    found = []
    for key in sorted(now.keys() & then.keys()):
        if now[key] < then[key] - tolerance_pp:
            arm, level = key
            shown = "diverged" if now[key] == -math.inf else f"{now[key]:.2f}%"
            found.append(f"{arm} level {level}: test accuracy {shown} < baseline {then[key]:.2f}% "
                         f"- {tolerance_pp} pp")
    return found


def verdicts_json(results: list[ClaimResult], run_set: RunSet) -> dict:
    """The machine-readable verdicts (written as verdicts.json beside the runs)."""
    return {
        "task": run_set.task, "fingerprint": run_set.fingerprint, "seeds": run_set.all_seeds,
        "runs": [str(r.path.resolve().relative_to(run_set.root)) for r in run_set.runs],
        "claims": [{
            "id": r.claim.id, "statement": r.claim.statement, "source": r.claim.source, "mark": r.claim.mark,
            "protocol": r.claim.protocol, "gating": r.claim.gating, "comparator": r.claim.comparator,
            "paper": r.claim.paper, "tolerance": r.claim.tolerance, "verdict": r.verdict,
            "per_seed": {str(k): v for k, v in r.per_seed.items()},
            "mean": r.interval.mean if r.interval else None,
            "ci95": [r.interval.low, r.interval.high] if r.interval else None,
            "n": r.interval.n if r.interval else 0, "read_at": r.where, "note": r.note,
        } for r in results],
    }
