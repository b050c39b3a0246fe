"""Item results and the aggregates every report (summary table, JSON, JUnit, HTML) is drawn from.

Results are ordered by (case, variant, repeat) and carry no timestamps, so the same suite and seed on the
sandbox give the same aggregates; only the run's own times and the platform's call ids differ.
"""

from __future__ import annotations

import itertools
import statistics
from typing import Any

from pydantic import BaseModel, Field

from . import scoring, stats
from .plan import Item
from .scoring import Check
from .suite import Suite

REASON_FAILED = "failed"  # an assertion failed
REASON_TIMEOUT = "timeout"  # no analysis before the suite's timeout_s
REASON_REFUSED = "refused"  # the dialer refused or the platform rejected the call


class ItemResult(BaseModel):
    key: str
    case: str
    case_idx: int
    repeat: int
    variant: str
    variant_idx: int
    passed: bool
    reason: str | None = Field(None, description="failed | timeout | refused; None when passed.")
    refusal_code: str | None = None
    checks: list[Check] = Field(default_factory=list)
    call_id: str | None = None
    status: str | None = None
    disconnection_reason: str | None = None
    duration_s: float | None = None
    latency_p50_ms: float | None = None
    cost_cents: float | None = None
    call_successful: bool | None = None

    @property
    def failures(self) -> list[str]:
        return [c.message for c in self.checks if not c.passed]


def item_result(item: Item, call: dict[str, Any] | None, *, reason: str | None = None,
                refusal_code: str | None = None, message: str | None = None) -> ItemResult:
    """Score `call` (None: never placed) against the item's case."""
    base = dict(key=item.key, case=item.case.name, case_idx=item.case_idx, repeat=item.repeat,
                variant=item.variant_label, variant_idx=item.variant_idx)
    if call is None:
        check = Check(name="placed", passed=False, expected="the call is placed", actual=message or refusal_code)
        return ItemResult(**base, passed=False, reason=reason or REASON_REFUSED, refusal_code=refusal_code,
                          checks=[check])
    checks = scoring.score(item.case.expect, call)
    if reason == REASON_TIMEOUT:
        checks.insert(0, Check(name="analyzed", passed=False, expected="post-call analysis",
                               actual=f"still {call.get('call_status') or 'unknown'} at the timeout"))
    passed = reason is None and all(c.passed for c in checks)
    return ItemResult(
        **base, passed=passed, reason=None if passed else (reason or REASON_FAILED), checks=checks,
        call_id=call.get("call_id"), status=call.get("call_status"),
        disconnection_reason=call.get("disconnection_reason"), duration_s=scoring.duration_s(call),
        latency_p50_ms=scoring.latency_p50(call), cost_cents=scoring.cost_cents(call),
        call_successful=(call.get("call_analysis") or {}).get("call_successful"),
    )


class Distribution(BaseModel):
    count: int
    min: float | None = None
    p50: float | None = None
    p90: float | None = None
    max: float | None = None
    mean: float | None = None
    values: list[float] = Field(default_factory=list)


def distribution(values: list[float | None]) -> Distribution:
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return Distribution(count=0)

    def pct(p: float) -> float:
        return xs[min(len(xs) - 1, max(0, int(round(p * (len(xs) - 1)))))]

    return Distribution(count=len(xs), min=xs[0], p50=pct(0.5), p90=pct(0.9), max=xs[-1],
                        mean=round(statistics.fmean(xs), 3), values=xs)


class CaseVariantStat(BaseModel):
    variant: str
    rate: stats.Rate
    flaky: bool = Field(description="Passed in some repeats and failed in others.")


class CaseStat(BaseModel):
    case: str
    rate: stats.Rate
    flaky: bool
    by_variant: list[CaseVariantStat]
    failures: list[str] = Field(default_factory=list, description="Distinct failed assertions.")


class VariantStat(BaseModel):
    variant: str
    rate: stats.Rate
    latency_p50_ms: Distribution
    duration_s: Distribution
    cost_cents_total: float
    cost_cents_mean: float | None


class Summary(BaseModel):
    suite: str
    items: int
    scored: int
    passed: int
    failed: int
    timeouts: int
    refused: int
    rate: stats.Rate
    flaky_cases: list[str]
    cases: list[CaseStat]
    variants: list[VariantStat]
    comparisons: list[stats.Comparison]
    cost_cents_total: float

    @property
    def ok(self) -> bool:
        return self.scored == self.items and self.failed == 0


def _ordered(results: list[ItemResult]) -> list[ItemResult]:
    return sorted(results, key=lambda r: (r.case_idx, r.variant_idx, r.repeat))


def summarize(suite: Suite, results: list[ItemResult], *, total: int) -> Summary:
    results = _ordered(results)
    labels = [v.label if v is not None else "default agent" for v in suite.variant_list()]
    cases = []
    for ci, case in enumerate(suite.cases):
        mine = [r for r in results if r.case_idx == ci]
        per_variant = []
        for vi, label in enumerate(labels):
            rs = [r for r in mine if r.variant_idx == vi]
            passed = sum(r.passed for r in rs)
            # Flaky = the agent passed in some repeats and failed in others; a call never placed says nothing.
            dialled = [r for r in rs if r.reason != REASON_REFUSED]
            per_variant.append(CaseVariantStat(variant=label, rate=stats.rate(passed, len(rs)),
                                               flaky=0 < passed < len(dialled)))
        failures = list(dict.fromkeys(itertools.chain.from_iterable(r.failures for r in mine)))
        cases.append(CaseStat(case=case.name, rate=stats.rate(sum(r.passed for r in mine), len(mine)),
                              flaky=any(v.flaky for v in per_variant), by_variant=per_variant,
                              failures=failures[:20]))
    variants = []
    for vi, label in enumerate(labels):
        rs = [r for r in results if r.variant_idx == vi]
        costs = [r.cost_cents for r in rs if r.cost_cents is not None]
        variants.append(VariantStat(
            variant=label, rate=stats.rate(sum(r.passed for r in rs), len(rs)),
            latency_p50_ms=distribution([r.latency_p50_ms for r in rs]),
            duration_s=distribution([r.duration_s for r in rs]),
            cost_cents_total=round(sum(costs), 4), cost_cents_mean=round(statistics.fmean(costs), 4) if costs else None,
        ))
    comparisons = [stats.compare(variants[0].variant, variants[0].rate.passed, variants[0].rate.runs,
                                 v.variant, v.rate.passed, v.rate.runs) for v in variants[1:]]
    passed = sum(r.passed for r in results)
    return Summary(
        suite=suite.name, items=total, scored=len(results), passed=passed, failed=len(results) - passed,
        timeouts=sum(r.reason == REASON_TIMEOUT for r in results),
        refused=sum(r.reason == REASON_REFUSED for r in results),
        rate=stats.rate(passed, len(results)), flaky_cases=[c.case for c in cases if c.flaky], cases=cases,
        variants=variants, comparisons=comparisons,
        cost_cents_total=round(sum(v.cost_cents_total for v in variants), 4),
    )


class EvalReport(BaseModel):
    """Everything about one run: what the JSON report writes and the HTML and JUnit reports are drawn from."""

    run_id: str
    suite: str
    status: str
    seed: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    summary: Summary
    results: list[ItemResult]


def table(summary: Summary) -> str:
    """The plain-text summary printed at the end of `uponai-mcp eval`."""
    rows = [("case", "variant", "passed", "rate", "95% CI", "")]
    for c in summary.cases:
        for v in c.by_variant:
            r = v.rate
            ci = "-" if r.low is None else f"{r.low:.2f}-{r.high:.2f}"
            rows.append((c.case, v.variant, f"{r.passed}/{r.runs}", "-" if r.rate is None else f"{r.rate:.0%}", ci,
                         "FLAKY" if v.flaky else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    r = summary.rate
    lines.append("")
    lines.append(f"{summary.passed}/{summary.scored} passed ({'-' if r.rate is None else f'{r.rate:.0%}'})"
                 f", {summary.timeouts} timed out, {summary.refused} refused"
                 + (f", {summary.items - summary.scored} not run" if summary.scored < summary.items else "")
                 + f"; cost {summary.cost_cents_total / 100:.2f} USD")
    for comp in summary.comparisons:
        lines.append(comp.verdict)
    return "\n".join(lines)
