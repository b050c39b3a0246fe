"""Attempt and volume caps. Counts come from the durable attempts store (never from memory, which a
restart would reset); this module only decides. Counts are of PRIOR attempts in the rolling window, so
with a cap of 3 the 3rd call is allowed (2 prior) and the 4th is refused (3 prior)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .refusal import BUDGET_EXCEEDED, Refusal

if TYPE_CHECKING:
    from uponai_mcp.config import Settings

# Limit names are the Settings/Budgets field names, so details["limit"] points at the knob to turn.
DESTINATION_24H = "max_attempts_per_destination_24h"
PER_HOUR = "max_calls_per_hour"
PER_DAY = "max_calls_per_day"
WINDOWS: dict[str, timedelta] = {
    DESTINATION_24H: timedelta(hours=24), PER_HOUR: timedelta(hours=1), PER_DAY: timedelta(hours=24),
}
_ENV = {
    DESTINATION_24H: "UPONAI_MAX_ATTEMPTS_PER_DESTINATION",
    PER_HOUR: "UPONAI_MAX_CALLS_PER_HOUR",
    PER_DAY: "UPONAI_MAX_CALLS_PER_DAY",
}
_WHAT = {
    DESTINATION_24H: "calls to this number in the last 24 hours",
    PER_HOUR: "calls in the last hour",
    PER_DAY: "calls in the last 24 hours",
}


@dataclass(frozen=True)
class Budgets:
    max_attempts_per_destination_24h: int = 3
    max_calls_per_hour: int = 60
    max_calls_per_day: int = 500

    @classmethod
    def from_settings(cls, settings: Settings) -> Budgets:
        return cls(
            max_attempts_per_destination_24h=settings.max_attempts_per_destination_24h,
            max_calls_per_hour=settings.max_calls_per_hour,
            max_calls_per_day=settings.max_calls_per_day,
        )


def retry_time(times: Sequence[datetime], limit: int, window: timedelta) -> datetime | None:
    """When the count of `times` (the attempts inside the rolling window) drops below `limit` again:
    the moment the (len - limit + 1)-th oldest ages out. None if already below, or if limit <= 0 (never)."""
    if limit <= 0 or len(times) < limit:
        return None
    ordered = sorted(t.astimezone(UTC) for t in times)
    return ordered[len(ordered) - limit] + window


def check_budgets(
    budgets: Budgets,
    *,
    attempts_to_destination_24h: int,
    calls_last_hour: int,
    calls_last_day: int,
    retry_at: Mapping[str, datetime | None] | None = None,
) -> Refusal | None:
    """budget_exceeded when any prior count has reached its cap; the destination cap is reported first,
    then the day, then the hour, and details list every limit that is exceeded.

    retry_at: optional {limit name: when it frees up} (see `retry_time`); the reported retry_at is the
    latest over the exceeded limits, since all of them must clear.
    """
    counts = {
        DESTINATION_24H: (attempts_to_destination_24h, budgets.max_attempts_per_destination_24h),
        PER_DAY: (calls_last_day, budgets.max_calls_per_day),
        PER_HOUR: (calls_last_hour, budgets.max_calls_per_hour),
    }
    for name, (count, _) in counts.items():
        if count < 0:
            raise ValueError(f"{name}: a count of prior calls cannot be negative ({count})")
    exceeded = [name for name, (count, cap) in counts.items() if count >= cap]
    if not exceeded:
        return None
    known = retry_at or {}
    times = [known.get(name) for name in exceeded]
    when = max(times) if times and all(t is not None for t in times) else None  # type: ignore[type-var]
    first = exceeded[0]
    count, cap = counts[first]
    if when is not None:
        action = f"try again after {_iso(when)}"
    elif first == DESTINATION_24H:
        action = "wait until the oldest of those calls is 24 hours old, or ask the operator to raise the cap"
    else:
        action = f"wait, or ask the operator to raise {_ENV[first]}"
    return Refusal(
        BUDGET_EXCEEDED,
        f"The cap of {cap} {_WHAT[first]} is reached ({count} already placed): {action}.",
        {
            "limit": first,
            "max": cap,
            "count": count,
            "window_hours": int(WINDOWS[first].total_seconds() // 3600),
            "exceeded": exceeded,
            "retry_at": _iso(when) if when is not None else None,
        },
    )


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
