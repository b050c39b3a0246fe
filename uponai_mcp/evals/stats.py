"""Statistics an evaluator can trust with small samples: Wilson intervals and Fisher's exact test.

No normal approximations of a difference: with 15 runs per side they mislead. Pure functions, no I/O.
"""

from __future__ import annotations

import math

from pydantic import BaseModel

Z95 = 1.959963984540054
ALPHA = 0.05


class Rate(BaseModel):
    passed: int
    runs: int
    rate: float | None
    low: float | None  # 95 % Wilson interval
    high: float | None


def wilson(passed: int, runs: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval for passed/runs (well behaved at 0/n and n/n, unlike the Wald one)."""
    if runs <= 0:
        return 0.0, 1.0
    p = passed / runs
    denom = 1 + z * z / runs
    centre = (p + z * z / (2 * runs)) / denom
    half = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(passed: int, runs: int) -> Rate:
    if runs == 0:
        return Rate(passed=0, runs=0, rate=None, low=None, high=None)
    low, high = wilson(passed, runs)
    return Rate(passed=passed, runs=runs, rate=passed / runs, low=round(low, 4), high=round(high, 4))


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """Two-sided p-value of Fisher's exact test for the 2x2 table [[a, b], [c, d]]
    (rows: variants; columns: passed, failed): the sum of every table with the same margins that is at most
    as likely as the observed one (the same rule as R's fisher.test and scipy)."""
    row1, col1, n = a + b, a + c, a + b + c + d
    if n == 0:
        return 1.0
    lo, hi = max(0, col1 - (n - row1)), min(row1, col1)

    def logp(x: int) -> float:
        return _log_comb(row1, x) + _log_comb(n - row1, col1 - x) - _log_comb(n, col1)

    observed = logp(a)
    total = 0.0
    for x in range(lo, hi + 1):
        lp = logp(x)
        if lp <= observed + 1e-7:  # relative tolerance for ties, as scipy does
            total += math.exp(lp)
    return min(1.0, total)


class Comparison(BaseModel):
    a: str
    b: str
    a_rate: Rate
    b_rate: Rate
    difference: float | None  # b's pass rate minus a's
    p_value: float | None
    verdict: str
    enough_runs: bool


def min_runs_to_tell(runs_a: int, runs_b: int) -> bool:
    """Could ANY outcome of these sample sizes reach p < ALPHA? (All-pass vs all-fail is the most extreme.)"""
    return runs_a > 0 and runs_b > 0 and fisher_exact(runs_a, 0, 0, runs_b) < ALPHA


def compare(a: str, pa: int, na: int, b: str, pb: int, nb: int) -> Comparison:
    ra, rb = rate(pa, na), rate(pb, nb)
    if na == 0 or nb == 0:
        return Comparison(a=a, b=b, a_rate=ra, b_rate=rb, difference=None, p_value=None, enough_runs=False,
                          verdict=f"not enough runs to tell: {a} has {na}, {b} has {nb} scored runs")
    p = fisher_exact(pa, na - pa, pb, nb - pb)
    diff = pb / nb - pa / na
    counts = f"{b} passes {pb}/{nb}, {a} {pa}/{na}, p = {_fmt_p(p)}"
    enough = min_runs_to_tell(na, nb)
    if p < ALPHA:
        better = b if diff > 0 else a
        verdict = f"{better} is better: {counts}"
    elif not enough:
        verdict = f"not enough runs to tell: {counts}; even all-pass against all-fail could not reach p < {ALPHA} " \
                  f"with these many runs"
    elif diff == 0:
        verdict = f"no difference: {counts}"
    else:
        verdict = f"not enough runs to tell: {counts}; the difference may be chance (p >= {ALPHA})"
    return Comparison(a=a, b=b, a_rate=ra, b_rate=rb, difference=round(diff, 4), p_value=round(p, 6),
                      enough_runs=enough, verdict=verdict)


def _fmt_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}".rstrip("0").rstrip(".") if p < 1 else "1"
