"""What the outreach tools and resources return."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from uponai_mcp.store.outreach import DncEntry

DNC_URI = "uponai://do-not-call"
SPEND_URI = "uponai://spend"
SCHEDULED_URI = "uponai://scheduled-calls"


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class DncView(BaseModel):
    phone_number: str = Field(description="E.164.")
    reason: str
    source: str = Field(description="manual, csv or opt_out (the callee asked during call_id).")
    added_by: str
    call_id: str | None = None
    added_at: str | None = None

    @classmethod
    def of(cls, e: DncEntry) -> DncView:
        return cls(phone_number=e.e164, reason=e.reason, source=e.source, added_by=e.added_by, call_id=e.call_id,
                   added_at=iso(e.created_at_ms))


class DncChange(BaseModel):
    entry: DncView | None = None
    changed: bool = Field(description="False when it was already listed (add) or not listed (remove).")
    cancelled_tasks: int = Field(0, description="Pending batch tasks and scheduled calls to it, cancelled.")
    added: int | None = Field(None, description="CSV: numbers newly listed.")
    already_listed: int | None = None
    invalid: list[str] | None = Field(None, description="CSV rows with no valid number (first 20).")


class DncList(BaseModel):
    entries: list[DncView]
    total: int
    csv: str | None = Field(None, description="The whole list as CSV (format=csv).")


class SpendLine(BaseModel):
    from_number: str | None = None
    agent_id: str | None = None
    calls: int
    reported_cents: float
    in_flight: int = Field(description="Calls without a reported cost yet, counted at the estimate.")
    spend_cents: float


class SpendView(BaseModel):
    """Today's spend (UTC day): the platform's call_cost of ended calls plus an estimate per call in flight."""

    day: str
    cap_cents: int | None = Field(description="UPONAI_MAX_SPEND_PER_DAY; None = no cap.")
    estimate_cents: int = Field(description="What a call without a reported cost counts as.")
    spend_cents: float
    reported_cents: float
    in_flight: int
    remaining_cents: float | None = None
    by_number: list[SpendLine]
    by_agent: list[SpendLine]


class ScheduledView(BaseModel):
    schedule_id: str
    to_number: str
    from_number: str
    scheduled_at: str | None
    state: str = Field(description="scheduled, dialing, placed, refused, cancelled or failed.")
    code: str | None = None
    message: str | None = None
    call_id: str | None = None
    attempt: int = Field(1, description="1 for the first call, 2+ for retries.")
    batch_id: str | None = None
    task_index: int | None = None
    retry_of: str | None = Field(None, description="The call this retries.")


class ScheduledList(BaseModel):
    scheduled: list[ScheduledView]
