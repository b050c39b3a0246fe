"""Calling window: only call when it is inside [start, end) local time in EVERY candidate zone of the callee.

Every zone, not any: a number's zones come from its prefix (original allocation), so we cannot know
which one the person is in; the most restrictive reading is the only safe one (TCPA counts the called
party's local time). No zone known -> deny. The clock is injected (`now`), never read here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .refusal import OUTSIDE_CALLING_WINDOW, Refusal

if TYPE_CHECKING:
    from uponai_mcp.config import Settings

    from .destination import Destination

SEARCH_HORIZON = timedelta(hours=48)
END_OF_DAY = time.max  # "24:00"
_WINDOW = re.compile(r"\s*([0-9]{1,2}):([0-9]{2})\s*-\s*([0-9]{1,2}):([0-9]{2})\s*")
_LISTED_ZONES = 3


@dataclass(frozen=True)
class CallingWindow:
    """Local-time window [start, end) on any day; `enabled=False` allows every time ("off")."""

    start: time = time(8, 0)
    end: time = time(21, 0)
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.enabled and not self.start < self.end:
            raise ValueError(f"calling window start {self.start} must be before its end {self.end}")

    @classmethod
    def off(cls) -> CallingWindow:
        return cls(time(0, 0), END_OF_DAY, enabled=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> CallingWindow:
        """The effective window: UPONAI_CALLING_WINDOW, else 08:00-21:00 live / off in sandbox mode."""
        return cls.parse(settings.effective_calling_window)

    @classmethod
    def parse(cls, text: str) -> CallingWindow:
        """'08:00-21:00' (end may be 24:00) or 'off'. Raises ValueError saying what is wrong."""
        if not isinstance(text, str):
            raise ValueError("calling window must be text like '08:00-21:00' or 'off'")
        if text.strip().lower() == "off":
            return cls.off()
        m = _WINDOW.fullmatch(text)
        if m is None:
            raise ValueError(f"calling window {text!r} must look like '08:00-21:00' (HH:MM-HH:MM) or be 'off'")
        sh, sm, eh, em = (int(g) for g in m.groups())
        start, end = _clock(sh, sm, text, "start"), _clock(eh, em, text, "end", allow_24=True)
        if start == end or (end is not END_OF_DAY and end < start):
            raise ValueError(
                f"calling window {text!r} must end after it starts on the same day; windows across midnight "
                "are not supported (TCPA allows 08:00-21:00 at most)"
            )
        return cls(start, end, enabled=True)

    def contains(self, local: time) -> bool:
        if not self.enabled:
            return True
        local = local.replace(tzinfo=None)
        return self.start <= local and (local < self.end or self.end == END_OF_DAY)

    def __str__(self) -> str:
        if not self.enabled:
            return "off"
        end = "24:00" if self.end == END_OF_DAY else f"{self.end:%H:%M}"
        return f"{self.start:%H:%M}-{end}"


def _clock(h: int, m: int, text: str, which: str, *, allow_24: bool = False) -> time:
    if allow_24 and (h, m) == (24, 0):
        return END_OF_DAY
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise ValueError(f"calling window {text!r}: {which} {h:02d}:{m:02d} is not a time of day (00:00-23:59)")
    return time(h, m)


# --- evaluation -------------------------------------------------------------------------------------


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime (the injected clock, in UTC)")
    return now.astimezone(UTC)


def _inside(window: CallingWindow, zones: Iterable[ZoneInfo], t: datetime) -> bool:
    return all(window.contains(t.astimezone(z).time()) for z in zones)


def _offset_changes(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """UTC instants in [start, end] where the zone's offset changes (DST): the first whole second of the new offset."""

    def offset(ts: int):
        return datetime.fromtimestamp(ts, UTC).astimezone(zone).utcoffset()

    out: list[datetime] = []
    a, stop = math.floor(start.timestamp()), math.ceil(end.timestamp())
    while a < stop:
        b = min(a + 3600, stop)  # no zone changes offset twice within an hour
        if offset(a) != offset(b):
            lo, hi = a, b
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(mid) == offset(lo) else (lo, mid)
            out.append(datetime.fromtimestamp(hi, UTC))
        a = b
    return out


def next_allowed_at(
    window: CallingWindow, zones: Iterable[str], now: datetime, horizon: timedelta = SEARCH_HORIZON
) -> datetime | None:
    """Earliest UTC instant >= now inside the window in every zone, within `horizon`; None if there is none.

    Exact, not sampled: the allowed set is a union of intervals, and each interval opens when some zone's
    local clock reaches `start` (continuously, possibly twice on a fall-back day) or jumps into the
    window at a DST change. So the answer is `now` or one of those candidate instants; each candidate is
    verified against all zones and the earliest passing one wins.
    """
    now = _utc(now)
    tzs = [ZoneInfo(z) for z in zones]
    if not tzs:
        return None
    if _inside(window, tzs, now):
        return now
    end = now + horizon
    candidates: set[datetime] = set()
    days = horizon.days + 2
    for tz in tzs:
        first: date = now.astimezone(tz).date() - timedelta(days=1)
        for i in range(days + 1):
            wall = datetime.combine(first + timedelta(days=i), window.start, tzinfo=tz)
            for fold in (0, 1):
                candidates.add(wall.replace(fold=fold).astimezone(UTC))
        candidates.update(_offset_changes(tz, now, end))
    for c in sorted(c for c in candidates if now < c <= end):
        if _inside(window, tzs, c):
            return c
    return None


def check_calling_window(
    dest: Destination, window: CallingWindow, now: datetime, *, extra_zones: Iterable[str] = ()
) -> Refusal | None:
    """None if it is inside the window in every candidate zone of dest (∪ extra_zones, e.g. the callee's
    address zone); otherwise outside_calling_window with local times and next_allowed_at."""
    now = _utc(now)
    if not window.enabled:
        return None
    zones = list(dict.fromkeys([*dest.time_zones, *extra_zones]))
    base = {"window": str(window), "now": _iso(now), "time_zones": zones}
    try:
        tzs = {z: ZoneInfo(z) for z in zones}
    except (ZoneInfoNotFoundError, ValueError) as exc:
        return Refusal(
            OUTSIDE_CALLING_WINDOW,
            f"The callee's local time at {dest.e164} cannot be determined ({exc}), so the calling window "
            f"{window} cannot be checked: give a valid IANA time zone such as America/New_York.",
            {**base, "problem": "bad_time_zone", "local_times": {}, "zones_outside": [], "next_allowed_at": None},
        )
    if not tzs:
        return Refusal(
            OUTSIDE_CALLING_WINDOW,
            f"The local time at {dest.e164} is unknown (no time zone is known for this number), so the calling "
            f"window {window} cannot be checked: give the callee's time zone, or ask the operator to switch the "
            "window off (UPONAI_CALLING_WINDOW=off) if that is acceptable.",
            {**base, "problem": "unknown_time_zone", "local_times": {}, "zones_outside": [],
             "next_allowed_at": None},
        )
    local = {z: now.astimezone(tz) for z, tz in tzs.items()}
    outside = [z for z, t in local.items() if not window.contains(t.time())]
    if not outside:
        return None
    nxt = next_allowed_at(window, zones, now)
    shown = ", ".join(f"{local[z]:%H:%M} in {z}" for z in outside[:_LISTED_ZONES])
    if len(outside) > _LISTED_ZONES:
        shown += f" and {len(outside) - _LISTED_ZONES} more zones"
    when = (f"try again at {_iso(nxt)}" if nxt is not None
            else f"no time in the next {int(SEARCH_HORIZON.total_seconds() // 3600)} hours is inside it in all "
                 "of the number's time zones, so give the callee's time zone or call another number")
    return Refusal(
        OUTSIDE_CALLING_WINDOW,
        f"It is {shown}, outside the calling window {window} (callee's local time) for {dest.e164}: {when}.",
        {
            **base,
            "problem": "outside_window",
            "local_times": {z: t.isoformat(timespec="seconds") for z, t in local.items()},
            "zones_outside": outside,
            "next_allowed_at": _iso(nxt) if nxt is not None else None,
        },
    )


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
