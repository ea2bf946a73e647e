"""Reference claims of the papers, one YAML file per task (package data).

A file names the ``task``, the ``protocol`` that task runs, and its ``claims``. Each claim reads
one metric from the per-level records (see :class:`Metric`), compares it with the paper's value
(``comparator`` ``>=``, ``<=`` or ``within``, with a ``tolerance`` in the metric's unit), and
carries its ``source`` and confidence ``mark`` (V stated, D derived, S second-hand, F read off a
figure, U unconfirmed). A claim gates CI only when its mark is V, D or S and its protocol is the
protocol the task runs; the others are shown for context.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ticketbench.errors import ConfigError
from ticketbench.stats import COMPARATORS, accepted_range
from ticketbench.yaml_files import packaged_names, parse_yaml, read_yaml_source

KINDS = ("value", "delta_to_dense", "speedup_vs_dense", "arm_delta", "speedup_vs_arm")
QUANTITIES = ("test_acc_at_early_stop", "test_acc_final", "val_acc_at_early_stop", "early_stop_step",
              "instability_test", "instability_train", "stable_from_step")
MARKS = ("V", "D", "S", "F", "U")


@dataclass(frozen=True)
class Metric:
    """What a claim measures, per seed, from the level records.

    - ``value``: ``quantity`` of ``arm`` at the level nearest ``p_m``;
    - ``delta_to_dense``: that minus the same quantity of the dense network (imp, level 0);
    - ``speedup_vs_dense``: dense early-stop step / the arm's early-stop step (× sooner);
    - ``arm_delta``: ``quantity`` of ``arm`` minus that of ``other`` at the same level;
    - ``speedup_vs_arm``: early-stop step of ``other`` / that of ``arm``.

    Instability analyses are read as arms too: ``instability@k<K>`` (the dense network at level 0
    and the winning tickets), ``instability-<control>@k<K>`` and ``instability-same-noise@k<K>``,
    with the quantities ``instability_test`` / ``instability_train`` (pp) and ``stable_from_step``
    (the first analysed k from which on the network is stable; ``arm`` names the analysis without
    ``@k``).

    With ``p_m_range: [low, high]`` instead of ``p_m``, the minimum over every level whose P_m lies
    in the range is taken ("stays above dense down to 2.9%"). Accuracies are in percent.
    """

    kind: str
    arm: str = "imp"
    quantity: str = "test_acc_at_early_stop"
    other: str | None = None
    p_m: float | None = None
    p_m_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    metric: Metric
    comparator: str
    paper: float
    tolerance: float
    source: str
    mark: str
    protocol: str
    gating: bool


@dataclass(frozen=True)
class References:
    task: str
    protocol: str
    claims: tuple[Claim, ...]


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _metric(raw: object, where: str) -> Metric:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: field 'metric' must be a mapping")
    fields = {f.name for f in dataclasses.fields(Metric)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise ConfigError(f"{where}: field 'metric.{unknown[0]}' is unknown; valid: {', '.join(sorted(fields))}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}: field 'metric.kind' is {kind!r}; valid: {', '.join(KINDS)}")
    if raw.get("quantity", "test_acc_at_early_stop") not in QUANTITIES:
        raise ConfigError(f"{where}: field 'metric.quantity' is {raw['quantity']!r}; valid: {', '.join(QUANTITIES)}")
    if kind.startswith("speedup") and raw.get("quantity", "early_stop_step") != "early_stop_step":
        raise ConfigError(f"{where}: field 'metric.quantity' must be early_stop_step for {kind}")
    for key in ("arm", "other"):
        if key in raw and not (isinstance(raw[key], str) and raw[key]):
            raise ConfigError(f"{where}: field 'metric.{key}' must be an arm name, got {raw[key]!r}")
    if kind.startswith("arm") or kind == "speedup_vs_arm":
        if not isinstance(raw.get("other"), str):
            raise ConfigError(f"{where}: field 'metric.other' (the compared arm) is required for {kind}")
    if ("p_m" in raw) == ("p_m_range" in raw):
        raise ConfigError(f"{where}: field 'metric' needs exactly one of p_m and p_m_range")
    if "p_m" in raw and not (_number(raw["p_m"]) and 0 < raw["p_m"] <= 100):
        raise ConfigError(f"{where}: field 'metric.p_m' must be a percentage in (0, 100], got {raw['p_m']!r}")
    span = raw.get("p_m_range")
    if span is not None and not (isinstance(span, list) and len(span) == 2 and all(map(_number, span))
                                 and 0 < span[0] < span[1] <= 100):
        raise ConfigError(f"{where}: field 'metric.p_m_range' must be [low, high] in (0, 100], got {span!r}")
    values = dict(raw)
    if kind.startswith("speedup"):
        values["quantity"] = "early_stop_step"
    if span is not None:
        values["p_m_range"] = (float(span[0]), float(span[1]))
    return Metric(**values)


# what one quantity of one arm can take: accuracies in %, instabilities in pp, steps
_QUANTITY_RANGE = {"test_acc_at_early_stop": (0.0, 100.0), "test_acc_final": (0.0, 100.0),
                   "val_acc_at_early_stop": (0.0, 100.0), "instability_test": (-100.0, 100.0),
                   "instability_train": (-100.0, 100.0), "early_stop_step": (0.0, math.inf),
                   "stable_from_step": (0.0, math.inf)}


def metric_range(metric: Metric) -> tuple[float, float]:
    """The values ``metric`` can take: a quantity's own range, a difference of two of them, or a
    ratio of steps (a speedup, above 0)."""
    if metric.kind.startswith("speedup"):
        return 0.0, math.inf
    low, high = _QUANTITY_RANGE[metric.quantity]
    return (low - high, high - low) if metric.kind in ("delta_to_dense", "arm_delta") else (low, high)


def _check_bounds(claim: Claim, where: str) -> None:
    """A claim's value lies where its metric can, and some value of the metric fails it."""
    low, high = metric_range(claim.metric)
    if not low <= claim.paper <= high:
        raise ConfigError(f"{where}: field 'paper' is {claim.paper:g}, outside what its metric ({claim.metric.kind} "
                          f"of {claim.metric.quantity}) can take, [{low:g}, {high:g}]")
    accepted = accepted_range(claim.comparator, claim.paper, claim.tolerance)
    if accepted[0] <= low and high <= accepted[1]:
        raise ConfigError(f"{where}: with tolerance {claim.tolerance:g} the claim accepts every value its metric can "
                          f"take ([{low:g}, {high:g}]), so it cannot fail; give a smaller 'tolerance'")


_REQUIRED = {"id": str, "statement": str, "metric": dict, "comparator": str, "paper": (int, float),
             "tolerance": (int, float), "source": str, "mark": str}


def _claim(raw: object, index: int, path: str, protocol: str) -> Claim:
    where = f"{path}: claim {raw.get('id', f'#{index + 1}') if isinstance(raw, dict) else f'#{index + 1}'}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping")
    unknown = sorted(set(raw) - set(_REQUIRED) - {"protocol"})
    if unknown:
        raise ConfigError(f"{where}: field {unknown[0]!r} is unknown; valid: {', '.join([*_REQUIRED, 'protocol'])}")
    for key, kind in _REQUIRED.items():
        if key not in raw:
            raise ConfigError(f"{where}: field {key!r} is missing")
        if not isinstance(raw[key], kind) or isinstance(raw[key], bool):
            raise ConfigError(f"{where}: field {key!r} has the wrong type ({raw[key]!r})")
    if raw["comparator"] not in COMPARATORS:
        raise ConfigError(f"{where}: field 'comparator' is {raw['comparator']!r}; valid: {', '.join(COMPARATORS)}")
    if raw["mark"] not in MARKS:
        raise ConfigError(f"{where}: field 'mark' is {raw['mark']!r}; valid: {', '.join(MARKS)}")
    for key in ("paper", "tolerance"):
        if not math.isfinite(raw[key]):
            raise ConfigError(f"{where}: field {key!r} must be a finite number, got {raw[key]!r}")
    if raw["tolerance"] < 0:
        raise ConfigError(f"{where}: field 'tolerance' must be >= 0, got {raw['tolerance']}")
    claim_protocol = raw.get("protocol", protocol)
    claim = Claim(
        id=raw["id"], statement=" ".join(raw["statement"].split()), metric=_metric(raw["metric"], where),
        comparator=raw["comparator"], paper=float(raw["paper"]), tolerance=float(raw["tolerance"]),
        source=raw["source"], mark=raw["mark"], protocol=claim_protocol,
        gating=raw["mark"] in ("V", "D", "S") and claim_protocol == protocol,
    )
    _check_bounds(claim, where)
    return claim


def parse_references(text: str, path: str) -> References:
    """Validate one references file; every error names the file, the claim and the field."""
    data = parse_yaml(text, path)
    if not isinstance(data, dict) or not {"task", "protocol", "claims"} <= set(data):
        raise ConfigError(f"{path}: needs the top-level keys task, protocol and claims")
    for key in ("task", "protocol"):
        if not isinstance(data[key], str) or not data[key]:
            raise ConfigError(f"{path}: '{key}' must be a name, got {data[key]!r}")
    if not isinstance(data["claims"], list) or not data["claims"]:
        raise ConfigError(f"{path}: 'claims' must be a non-empty list")
    claims = tuple(_claim(raw, i, path, data["protocol"]) for i, raw in enumerate(data["claims"]))
    ids = [c.id for c in claims]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise ConfigError(f"{path}: claim {duplicate}: field 'id' is used twice")
    return References(task=data["task"], protocol=data["protocol"], claims=claims)


def reference_tasks() -> list[str]:
    return packaged_names("ticketbench.references")


def load_references(task_or_path: str) -> References:
    """The references of a packaged task, or of a references YAML file given by path."""
    return parse_references(*read_yaml_source("ticketbench.references", task_or_path, "references file"))
