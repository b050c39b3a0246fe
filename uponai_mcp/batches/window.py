"""A batch's weekly calling window (Retell's `call_time_window`) in one IANA time zone.

Shape: `windows` [{start, end}] in minutes since local midnight, half-open [start, end), no window across
midnight (end <= 1440, end > start; split a night window in two); `day` the weekdays it applies to
(Monday..Sunday; omitted = every day); `timezone` an IANA zone (Retell's default America/Los_Angeles).

"Open" is decided on the local wall clock: at `now`, the local weekday is listed and the local time of day
falls inside one of the windows. So on a DST change a window keeps its wall-clock hours (an hour that does
not exist is skipped, a repeated hour is open twice). Pure: the clock is always an argument.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The DST-jump finder of the callee calling window; the same question (when does a zone's offset change).
from uponai_mcp.guardrails.window import _offset_changes

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
Day = Literal["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
DEFAULT_TIMEZONE = "America/Los_Angeles"  # Retell's default for call_time_window
SEARCH_DAYS = 8  # every weekly window opens within 7 days; one more covers DST and the current day


class TimeRange(BaseModel):
    """[start, end) in minutes after local midnight."""

    model_config = ConfigDict(extra="forbid")
    start: Annotated[int, Field(ge=0, le=1439)]
    end: Annotated[int, Field(ge=1, le=1440)]

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.end <= self.start:
            raise ValueError(f"a window must end after it starts ({self.start}-{self.end}); windows across "
                             "midnight are not supported: split them into two")
        return self

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


class CallTimeWindow(BaseModel):
    """When a batch may dial: weekly windows in one IANA time zone (Retell's call_time_window)."""

    model_config = ConfigDict(extra="forbid")
    windows: Annotated[list[TimeRange], Field(min_length=1, max_length=48, description=(
        "Daily windows, e.g. [{start: 540, end: 1020}] = 09:00-17:00."))]
    day: Annotated[list[Day] | None, Field(None, min_length=1, max_length=7, description=(
        "Every day when omitted."))]
    timezone: Annotated[str, Field(DEFAULT_TIMEZONE, min_length=1, max_length=64, description=(
        "IANA time zone, e.g. America/New_York."))]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{v!r} is not an IANA time zone such as America/New_York") from exc
        return v

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def days(self) -> frozenset[int]:
        return frozenset(range(7)) if self.day is None else frozenset(DAYS.index(d) for d in self.day)

    def is_open(self, now: datetime) -> bool:
        local = _aware(now).astimezone(self.zone)
        if local.weekday() not in self.days:
            return False
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        return any(w.start <= minute < w.end for w in self.windows)

    def next_open(self, now: datetime) -> datetime | None:
        """`now` if open, else the earliest later instant (UTC) when the window opens; None if none within
        8 days (cannot happen for a valid window, kept for safety)."""
        now = _aware(now).astimezone(UTC)
        if self.is_open(now):
            return now
        tz, days = self.zone, self.days
        end = now + timedelta(days=SEARCH_DAYS)
        first: date = now.astimezone(tz).date() - timedelta(days=1)
        candidates: set[datetime] = set()
        for i in range(SEARCH_DAYS + 2):
            d = first + timedelta(days=i)
            if d.weekday() not in days:
                continue
            for w in self.windows:
                wall = datetime.combine(d, time(w.start // 60, w.start % 60), tzinfo=tz)
                candidates.update(wall.replace(fold=f).astimezone(UTC) for f in (0, 1))
        candidates.update(_offset_changes(tz, now, end))  # a DST jump may land inside a window
        for c in sorted(c for c in candidates if now < c <= end):
            if self.is_open(c):
                return c
        return None

    def describe(self) -> str:
        days = "every day" if self.day is None else ", ".join(d[:3] for d in DAYS if d in self.day)
        return f"{days} {', '.join(str(w) for w in self.windows)} ({self.timezone})"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now
