"""The daily spend cap, in cents. The store supplies today's facts (inside the reservation's transaction);
this only decides.

Today's spend = the platform's `call_cost.combined_cost` of today's calls that reported one, plus an estimate
for each of today's calls still without a cost (in flight, or never reported). A new call is refused when that
sum plus one more estimate could pass the cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .refusal import BUDGET_EXCEEDED, Refusal

MILLICENTS = 1000  # costs are stored as integer thousandths of a cent


@dataclass(frozen=True)
class SpendCap:
    max_cents_per_day: int | None  # None: no cap
    estimate_cents: int  # what a call without a reported cost is counted as


def day_start(now: datetime) -> datetime:
    """The start of today (UTC): the spend cap's day."""
    now = now.astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def spend_cents(spent_mc: int, in_flight: int, estimate_cents: int) -> float:
    return spent_mc / MILLICENTS + in_flight * estimate_cents


def check_spend(cap: SpendCap, *, spent_mc: int, in_flight: int, now: datetime) -> Refusal | None:
    """budget_exceeded (details.reason = "spend") when one more call could take today's spend past the cap."""
    if cap.max_cents_per_day is None:
        return None
    today = spend_cents(spent_mc, in_flight, cap.estimate_cents)
    if today + cap.estimate_cents <= cap.max_cents_per_day:
        return None
    tomorrow = day_start(now) + timedelta(days=1)
    when = tomorrow.isoformat(timespec="seconds").replace("+00:00", "Z")
    return Refusal(
        BUDGET_EXCEEDED,
        f"Today's spend is {today:.2f} cents ({spent_mc / MILLICENTS:.2f} reported by the platform, {in_flight} "
        f"call(s) without a cost yet at {cap.estimate_cents} each); one more call could pass the cap of "
        f"{cap.max_cents_per_day} cents (UPONAI_MAX_SPEND_PER_DAY): try again after {when}, or ask the operator "
        "to raise the cap.",
        {"reason": "spend", "limit": "max_spend_per_day_cents", "max": cap.max_cents_per_day,
         "spent_cents": round(today, 4), "reported_cents": round(spent_mc / MILLICENTS, 4), "in_flight": in_flight,
         "estimate_cents": cap.estimate_cents, "retry_at": when},
    )
