"""Calling window: reliability.md §8 B (injected clock, callee's local time, every candidate zone)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uponai_mcp.config import Settings
from uponai_mcp.guardrails import (
    OUTSIDE_CALLING_WINDOW,
    CallingWindow,
    Destination,
    Refusal,
    check_calling_window,
    check_destination,
    next_allowed_at,
)

W = CallingWindow.parse("08:00-21:00")
NY = ZoneInfo("America/New_York")


def dest(number: str) -> Destination:
    d = check_destination(number)
    assert isinstance(d, Destination), d
    return d


def fake(*zones: str) -> Destination:
    return Destination("+10000000000", "US", 1, "MOBILE", tuple(zones), "")


def at(zone: str, *args: int, fold: int = 0) -> datetime:
    """A UTC instant given as wall time in `zone`."""
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


def verdict(d: Destination, now: datetime, window: CallingWindow = W) -> Refusal | None:
    r = check_calling_window(d, window, now)
    if r is not None:
        assert r.code == OUTSIDE_CALLING_WINDOW
        json.dumps(r.details)
    return r


# --- parsing ---------------------------------------------------------------------------------------


def test_parse_window() -> None:
    assert (W.start, W.end, W.enabled) == (time(8), time(21), True)
    assert str(W) == "08:00-21:00"
    assert CallingWindow.parse(" 8:30 - 20:00 ") == CallingWindow(time(8, 30), time(20), True)
    assert str(CallingWindow.parse("00:00-24:00")) == "00:00-24:00"
    off = CallingWindow.parse("OFF")
    assert not off.enabled and str(off) == "off" and off.contains(time(3))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("25:00-21:00", "not a time of day"),
        ("08:00-21:60", "not a time of day"),
        ("08:00-x", "HH:MM-HH:MM"),
        ("21:00-08:00", "across midnight"),
        ("09:00-09:00", "end after it starts"),
        ("", "HH:MM-HH:MM"),
        ("8-21", "HH:MM-HH:MM"),
        ("０８:００-２１:００", "HH:MM-HH:MM"),
        ("24:00-24:00", "not a time of day"),
    ],
)
def test_parse_rejects_bad_text(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        CallingWindow.parse(text)


def test_from_settings_uses_effective_window() -> None:
    assert not CallingWindow.from_settings(Settings(sandbox=True)).enabled
    assert CallingWindow.from_settings(Settings(sandbox=False)) == W
    assert str(CallingWindow.from_settings(Settings(calling_window="09:00-20:00"))) == "09:00-20:00"


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check_calling_window(dest("+12125550123"), W, datetime(2026, 6, 1, 12))


# --- boundaries in the callee's zone -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wall", "allowed"),
    [((7, 59, 59), False), ((8, 0, 0), True), ((20, 59, 59), True), ((21, 0, 0), False)],
)
def test_boundaries_new_york(wall: tuple[int, int, int], allowed: bool) -> None:
    now = at("America/New_York", 2026, 6, 15, *wall)
    assert (verdict(dest("+12125550123"), now) is None) is allowed


def test_window_is_callee_local_not_server_or_utc() -> None:
    # 15:30 UTC: 08:30 in Los Angeles (inside), 11:30 New York; 04:30 UTC: 21:30 LA (outside), 00:30 NY.
    la = dest("+14155552671")
    assert verdict(la, datetime(2026, 6, 15, 15, 30, tzinfo=UTC)) is None
    assert verdict(la, datetime(2026, 6, 15, 4, 30, tzinfo=UTC)) is not None


def test_refusal_reports_local_times_and_next_allowed_at() -> None:
    now = at("America/New_York", 2026, 6, 15, 7, 59, 59)
    r = verdict(dest("+12125550123"), now)
    assert r is not None
    assert r.details["next_allowed_at"] == "2026-06-15T12:00:00Z"  # 08:00 EDT
    assert r.details["local_times"] == {"America/New_York": "2026-06-15T07:59:59-04:00"}
    assert r.details["zones_outside"] == ["America/New_York"]
    assert "07:59 in America/New_York" in r.message and "2026-06-15T12:00:00Z" in r.message
    late = verdict(dest("+12125550123"), at("America/New_York", 2026, 6, 15, 21, 0))
    assert late is not None and late.details["next_allowed_at"] == "2026-06-16T12:00:00Z"


# --- DST -----------------------------------------------------------------------------------------------


def test_spring_forward_day_new_york() -> None:
    # 2026-03-08: 02:00 EST -> 03:00 EDT (07:00 UTC). 08:00 local is 12:00 UTC that day, 13:00 UTC the day before.
    d = dest("+12125550123")
    assert verdict(d, datetime(2026, 3, 8, 11, 59, 59, tzinfo=UTC)) is not None
    assert verdict(d, datetime(2026, 3, 8, 12, 0, tzinfo=UTC)) is None
    r = verdict(d, datetime(2026, 3, 8, 6, 0, tzinfo=UTC))  # 01:00 EST, before the jump
    assert r is not None and r.details["next_allowed_at"] == "2026-03-08T12:00:00Z"
    assert r.details["local_times"] == {"America/New_York": "2026-03-08T01:00:00-05:00"}


def test_window_starting_inside_the_spring_forward_gap_opens_at_the_jump() -> None:
    # 02:30 does not exist on 2026-03-08 in New York; the clock jumps from 01:59:59 EST to 03:00 EDT.
    w = CallingWindow.parse("02:30-21:00")
    assert next_allowed_at(w, ["America/New_York"], datetime(2026, 3, 8, 5, 0, tzinfo=UTC)) == datetime(
        2026, 3, 8, 7, 0, tzinfo=UTC
    )
    assert check_calling_window(fake("America/New_York"), w, datetime(2026, 3, 8, 6, 59, 59, tzinfo=UTC))
    assert check_calling_window(fake("America/New_York"), w, datetime(2026, 3, 8, 7, 0, tzinfo=UTC)) is None


def test_fall_back_repeated_hour_new_york() -> None:
    # 2026-11-01: 02:00 EDT -> 01:00 EST (06:00 UTC); 01:00-02:00 local happens twice.
    w = CallingWindow.parse("01:30-21:00")
    d = fake("America/New_York")
    first = at("America/New_York", 2026, 11, 1, 1, 30, fold=0)  # 05:30 UTC, EDT
    assert first == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert check_calling_window(d, w, first) is None
    # 06:10 UTC is 01:10 EST (the repeat): before 01:30 again, so outside until 01:30 EST = 06:30 UTC.
    r = check_calling_window(d, w, datetime(2026, 11, 1, 6, 10, tzinfo=UTC))
    assert r is not None and r.details["next_allowed_at"] == "2026-11-01T06:30:00Z"
    # Default window on the fall-back day: 08:00 EST = 13:00 UTC.
    assert verdict(dest("+12125550123"), datetime(2026, 11, 1, 12, 59, 59, tzinfo=UTC)) is not None
    assert verdict(dest("+12125550123"), datetime(2026, 11, 1, 13, 0, tzinfo=UTC)) is None


def test_phoenix_has_no_dst() -> None:
    d = dest("+14802345678")
    assert d.time_zones == ("America/Phoenix",)
    for day in (datetime(2026, 1, 15), datetime(2026, 7, 15)):  # 08:00 MST = 15:00 UTC all year
        assert verdict(d, day.replace(hour=14, minute=59, second=59, tzinfo=UTC)) is not None
        assert verdict(d, day.replace(hour=15, tzinfo=UTC)) is None


def test_honolulu() -> None:
    d = dest("+18085551234")
    assert d.time_zones == ("Pacific/Honolulu",)
    assert verdict(d, datetime(2026, 6, 15, 17, 59, 59, tzinfo=UTC)) is not None  # 07:59:59 HST
    assert verdict(d, datetime(2026, 6, 15, 18, 0, tzinfo=UTC)) is None
    assert verdict(d, datetime(2026, 6, 16, 6, 59, 59, tzinfo=UTC)) is None  # 20:59:59 HST
    assert verdict(d, datetime(2026, 6, 16, 7, 0, tzinfo=UTC)) is not None


# --- several zones: all must be inside -----------------------------------------------------------------


def test_208_two_zones_intersection() -> None:
    d = dest("+12085551234")
    assert set(d.time_zones) == {"America/Boise", "America/Los_Angeles"}
    # 08:30 Boise (MDT) but 07:30 Los Angeles (PDT): denied because of the later zone.
    r = verdict(d, at("America/Boise", 2026, 6, 15, 8, 30))
    assert r is not None and r.details["zones_outside"] == ["America/Los_Angeles"]
    assert r.details["next_allowed_at"] == "2026-06-15T15:00:00Z"  # 08:00 PDT
    assert verdict(d, at("America/Los_Angeles", 2026, 6, 15, 8, 0)) is None
    # 20:30 Los Angeles is 21:30 Boise: denied because of the earlier zone.
    assert verdict(d, at("America/Los_Angeles", 2026, 6, 15, 20, 30)) is not None


def test_au_mobile_multi_zone() -> None:
    d = dest("+61412345678")
    assert len(d.time_zones) >= 6 and "Australia/Perth" in d.time_zones and "Australia/Sydney" in d.time_zones
    # 09:00 in Sydney is 07:00 in Perth: denied.
    assert verdict(d, at("Australia/Sydney", 2026, 6, 15, 9, 0)) is not None
    # 10:00 Perth (02:00 UTC) is 12:00 Sydney, 08:30 Cocos, 12:30 Lord Howe: all inside.
    assert verdict(d, at("Australia/Perth", 2026, 6, 15, 10, 0)) is None
    r = verdict(d, at("Australia/Sydney", 2026, 6, 15, 22, 0))
    assert r is not None and r.details["next_allowed_at"] is not None
    nxt = datetime.fromisoformat(r.details["next_allowed_at"])
    assert verdict(d, nxt) is None and verdict(d, nxt - timedelta(seconds=1)) is not None


def test_many_zone_toll_free_uses_every_zone() -> None:
    d = dest("+18002345678")
    assert len(d.time_zones) > 30
    r = verdict(d, datetime(2026, 6, 15, 3, 0, tzinfo=UTC))
    assert r is not None and "more zones" in r.message
    nxt = datetime.fromisoformat(r.details["next_allowed_at"])
    assert verdict(d, nxt) is None


def test_unknown_zone_is_denied() -> None:
    r = verdict(fake(), datetime(2026, 6, 15, 15, 0, tzinfo=UTC))
    assert r is not None and r.details["problem"] == "unknown_time_zone" and r.details["next_allowed_at"] is None
    assert "unknown" in r.message
    # ...unless the window is off.
    assert check_calling_window(fake(), CallingWindow.off(), datetime(2026, 6, 15, 3, tzinfo=UTC)) is None


def test_extra_zone_narrows_and_bad_zone_is_refused() -> None:
    d = dest("+12125550123")
    now = at("America/New_York", 2026, 6, 15, 10, 0)  # 07:00 in Los Angeles
    assert check_calling_window(d, W, now) is None
    r = check_calling_window(d, W, now, extra_zones=["America/Los_Angeles"])
    assert r is not None and r.details["zones_outside"] == ["America/Los_Angeles"]
    bad = check_calling_window(d, W, now, extra_zones=["Mars/Olympus"])
    assert bad is not None and bad.details["problem"] == "bad_time_zone"
    assert check_calling_window(fake(), W, now, extra_zones=["America/New_York"]) is None


def test_never_inside_gives_none() -> None:
    w = CallingWindow.parse("08:00-09:00")
    r = check_calling_window(fake("America/New_York", "Asia/Tokyo"), w, datetime(2026, 6, 15, tzinfo=UTC))
    assert r is not None and r.details["next_allowed_at"] is None and "48 hours" in r.message


# --- next_allowed_at is exact: compare with a brute-force minute scan -----------------------------------

ZONES = [
    "America/New_York", "America/Los_Angeles", "America/Phoenix", "America/St_Johns", "Pacific/Honolulu",
    "Europe/London", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe",
    "Australia/Adelaide", "Pacific/Chatham", "America/Santiago", "Africa/Casablanca",
]


def _brute_force(window: CallingWindow, zones: list[str], now: datetime) -> datetime | None:
    tzs = [ZoneInfo(z) for z in zones]

    def inside(t: datetime) -> bool:
        return all(window.contains(t.astimezone(z).time()) for z in tzs)

    if inside(now):
        return now
    t = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t <= now + timedelta(hours=48):
        if inside(t):
            return t
        t += timedelta(minutes=1)
    return None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    now=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True),
    start=st.integers(0, 22 * 60),
    length=st.integers(60, 16 * 60),
)
def test_next_allowed_at_matches_brute_force(now: datetime, zones: list[str], start: int, length: int) -> None:
    end = min(start + length, 24 * 60 - 1)
    window = CallingWindow(time(start // 60, start % 60), time(end // 60, end % 60))
    got = next_allowed_at(window, zones, now)
    assert got == _brute_force(window, zones, now)


@settings(max_examples=40, deadline=None)
@given(
    now=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=4, unique=True),
)
def test_verdict_agrees_with_local_clocks(now: datetime, zones: list[str]) -> None:
    r = check_calling_window(fake(*zones), W, now)
    inside = all(time(8) <= now.astimezone(ZoneInfo(z)).time() < time(21) for z in zones)
    assert (r is None) is inside
    if r is not None and r.details["next_allowed_at"]:
        nxt = datetime.fromisoformat(r.details["next_allowed_at"])
        assert nxt > now and check_calling_window(fake(*zones), W, nxt) is None
