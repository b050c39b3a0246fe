"""Budgets at the boundary (reliability.md §8 B: 3rd allowed, 4th denied in a rolling 24 h)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uponai_mcp.config import Settings
from uponai_mcp.guardrails import (
    BUDGET_EXCEEDED,
    DESTINATION_24H,
    PER_DAY,
    PER_HOUR,
    Budgets,
    check_budgets,
    retry_time,
)

B = Budgets(max_attempts_per_destination_24h=3, max_calls_per_hour=60, max_calls_per_day=500)
T0 = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def check(dest: int = 0, hour: int = 0, day: int = 0, **kw):
    return check_budgets(B, attempts_to_destination_24h=dest, calls_last_hour=hour, calls_last_day=day, **kw)


def test_from_settings() -> None:
    s = Settings(max_attempts_per_destination_24h=2, max_calls_per_hour=10, max_calls_per_day=20)
    assert Budgets.from_settings(s) == Budgets(2, 10, 20)
    assert Budgets.from_settings(Settings()) == B


def test_destination_cap_boundary() -> None:
    assert check(dest=2) is None  # this is the 3rd attempt: allowed
    r = check(dest=3)  # the 4th: refused
    assert r is not None and r.code == BUDGET_EXCEEDED
    assert (r.details["limit"], r.details["max"], r.details["count"]) == (DESTINATION_24H, 3, 3)
    assert r.details["window_hours"] == 24 and r.details["retry_at"] is None
    json.dumps(r.details)
    assert "3 calls to this number in the last 24 hours" in r.message


@pytest.mark.parametrize(("kw", "limit"), [({"hour": 60}, PER_HOUR), ({"day": 500}, PER_DAY)])
def test_global_caps_boundary(kw: dict, limit: str) -> None:
    below = {k: v - 1 for k, v in kw.items()}
    assert check(**below) is None
    r = check(**kw)
    assert r is not None and r.details["limit"] == limit and r.details["exceeded"] == [limit]


def test_several_exceeded_reports_the_most_specific_and_the_latest_retry() -> None:
    r = check(dest=5, hour=60, day=10, retry_at={DESTINATION_24H: T0, PER_HOUR: T0 + timedelta(minutes=5)})
    assert r is not None
    assert r.details["limit"] == DESTINATION_24H and r.details["exceeded"] == [DESTINATION_24H, PER_HOUR]
    assert r.details["retry_at"] == "2026-06-15T12:05:00Z" and "2026-06-15T12:05:00Z" in r.message
    partial = check(dest=5, hour=60, retry_at={DESTINATION_24H: T0})
    assert partial is not None and partial.details["retry_at"] is None  # hour limit's time unknown


def test_negative_counts_are_a_bug() -> None:
    with pytest.raises(ValueError):
        check(dest=-1)


def test_retry_time() -> None:
    times = [T0 - timedelta(hours=h) for h in (1, 5, 20)]
    window = timedelta(hours=24)
    assert retry_time(times, 3, window) == T0 - timedelta(hours=20) + window  # oldest ages out
    assert retry_time(times, 2, window) == T0 - timedelta(hours=5) + window  # two must age out
    assert retry_time(times, 4, window) is None
    assert retry_time(times, 0, window) is None


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10), st.integers(0, 100), st.integers(0, 1000),
       st.integers(1, 10), st.integers(1, 100), st.integers(1, 1000))
def test_refused_exactly_when_a_count_reaches_its_cap(d: int, h: int, day: int, cd: int, ch: int, cday: int) -> None:
    r = check_budgets(Budgets(cd, ch, cday), attempts_to_destination_24h=d, calls_last_hour=h, calls_last_day=day)
    assert (r is not None) is (d >= cd or h >= ch or day >= cday)
