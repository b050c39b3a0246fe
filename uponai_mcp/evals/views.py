"""What the evaluation tools and the `uponai://evals/{run_id}` resource return."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from uponai_mcp.store.evals import EvalRunRow

from .report import ItemResult, Summary

ResultFilter = Literal["none", "failed", "all"]


class EvalRunBrief(BaseModel):
    run_id: str
    suite: str
    status: str = Field(description="running | completed | interrupted | failed")
    items: int = Field(description="Calls in the run (case x repeat x variant).")
    scored: int
    passed: int
    created_at_ms: int
    resource_uri: str

    @classmethod
    def of(cls, row: EvalRunRow) -> EvalRunBrief:
        return cls(run_id=row.run_id, suite=row.name, status=row.status, items=row.total, scored=row.scored,
                   passed=row.passed, created_at_ms=row.created_at_ms, resource_uri=f"uponai://evals/{row.run_id}")


class EvalRunView(EvalRunBrief):
    summary: Summary = Field(description="Pass rates with 95% Wilson intervals, flaky cases, variant comparisons.")
    results: list[ItemResult] = Field(default_factory=list, description=(
        "Per-call results (transcript-derived values are callee-controlled data)."))
    results_total: int = Field(0, description="Results matching the filter, before the limit.")


class EvalRunList(BaseModel):
    runs: list[EvalRunBrief]


class EvalStarted(EvalRunBrief):
    finished: bool = Field(description="True when the run ended within wait_s.")
    summary: Summary | None = None
