"""Statistics over seeds: mean, 95% Student-t interval, and the three-way verdict."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# Two-sided 95% quantiles t_{0.975, df} of Student's t for df = 1..30 (standard tables).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
_Z975 = 1.959964


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: tabulated up to 30 degrees of freedom, Cornish-Fisher expansion beyond."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Interval:
    """Mean of the per-seed values and its 95% t-interval (a point when n = 1)."""

    values: tuple[float, ...]
    mean: float
    low: float
    high: float

    @property
    def n(self) -> int:
        return len(self.values)

    @classmethod
    def of(cls, values: list[float]) -> Interval:
        if not values:
            raise ValueError("no values")
        mean = statistics.fmean(values)
        if len(values) == 1:
            return cls(tuple(values), mean, mean, mean)
        half = t_quantile_975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
        return cls(tuple(values), mean, mean - half, mean + half)


PASS, FAIL, INCONCLUSIVE, NOT_RUN = "PASS", "FAIL", "INCONCLUSIVE", "NOT RUN"
COMPARATORS = (">=", "<=", "within")


def accepted_range(comparator: str, paper: float, tolerance: float) -> tuple[float, float]:
    """Values that reproduce the claim: [paper - tol, inf), (-inf, paper + tol] or paper ± tol."""
    if comparator == ">=":
        return paper - tolerance, math.inf
    if comparator == "<=":
        return -math.inf, paper + tolerance
    if comparator == "within":
        return paper - tolerance, paper + tolerance
    raise ValueError(f"unknown comparator {comparator!r}; valid: {', '.join(COMPARATORS)}")


def verdict(interval: Interval, comparator: str, paper: float, tolerance: float) -> str:
    """PASS when the interval lies inside the accepted range, FAIL when it lies entirely outside,
    INCONCLUSIVE when it straddles a boundary (with one seed the interval is the point itself)."""
    lo, hi = accepted_range(comparator, paper, tolerance)
    if lo <= interval.low and interval.high <= hi:
        return PASS
    if interval.high < lo or interval.low > hi:
        return FAIL
    return INCONCLUSIVE
