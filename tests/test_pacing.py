"""CPS pacer tests. Deterministic on ManualClock, except one short real-time run."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Awaitable, Callable

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uponai_mcp.models import ProviderKind
from uponai_mcp.pacing import (
    SPACING_MARGIN,
    TWILIO_RAISE_DELAY_S,
    CpsAboveProviderMax,
    CpsError,
    InvalidCps,
    ManualClock,
    MonotonicClock,
    Pacer,
    PacingError,
    RateLimitedLater,
    UnknownScope,
    max_cps_for,
)

TW, TX, CU = ProviderKind.TWILIO, ProviderKind.TELNYX, ProviderKind.CUSTOM
EPS = 1e-9


def spacing(cps: int) -> float:
    return (1.0 / cps) * (1.0 + SPACING_MARGIN)


def max_in_window(stamps: list[float], window: float = 1.0) -> int:
    """Max dispatches in any closed window [t, t + window]. Checking windows that start at a dispatch
    is enough: any window's count is <= that of the window starting at its first dispatch."""
    s = sorted(stamps)
    best, j = 0, 0
    for i, t in enumerate(s):
        j = max(j, i)
        while j + 1 < len(s) and s[j + 1] <= t + window + EPS:
            j += 1
        best = max(best, j - i + 1)
    return best


def run(fn: Callable[[], Awaitable[None]]) -> None:
    async def guarded() -> None:
        with anyio.fail_after(10):  # real seconds: a hung test fails instead of hanging
            await fn()

    anyio.run(guarded)


def make(start: float = 0.0) -> tuple[ManualClock, Pacer]:
    clock = ManualClock(start)
    return clock, Pacer(clock, wall=lambda: 1_700_000_000.0 + clock.now())


def test_max_in_window_helper() -> None:
    assert max_in_window([]) == 0
    assert max_in_window([0.0, 0.5, 1.0]) == 3  # closed window: the strictest reading
    assert max_in_window([0.0, 0.5, 1.01]) == 2
    assert max_in_window([0.0, 2.0, 2.1, 2.2, 5.0]) == 3


# --- ManualClock --------------------------------------------------------------------------------


def test_manual_clock_wakes_in_deadline_order_and_forgets_cancelled_sleepers() -> None:
    async def main() -> None:
        clock = ManualClock()
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, d: float) -> None:
            await clock.sleep(d)
            woke.append((name, clock.now()))

        never = anyio.CancelScope()

        async def cancelled_sleeper() -> None:
            with never:
                await sleeper("never", 1.5)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper, "b", 2.0)
            tg.start_soon(sleeper, "a", 1.0)
            tg.start_soon(sleeper, "a2", 1.0)
            tg.start_soon(cancelled_sleeper)
            await clock.settle()
            assert clock.sleepers == 4 and clock.next_deadline() == 1.0
            never.cancel()
            await clock.settle()
            assert clock.sleepers == 3
            await clock.advance(1.0)
            assert woke == [("a", 1.0), ("a2", 1.0)]
            await clock.run_until_idle()
            assert woke[-1] == ("b", 2.0) and clock.now() == 2.0
        assert clock.sleepers == 0
        assert clock.next_deadline() is None

    run(main)


# --- spacing under contention -------------------------------------------------------------------


@pytest.mark.parametrize("scope,cps", [(TX, 1), (TW, 5), (TX, 16)])
def test_concurrent_acquirers_are_strictly_spaced(scope: ProviderKind, cps: int) -> None:
    n = 3 * cps + 5

    async def main() -> None:
        clock, pacer = make()
        pacer.set_cps(scope, cps)
        if scope is TW and cps > 1:
            await clock.advance(TWILIO_RAISE_DELAY_S)
        t0 = clock.now()
        order: list[int] = []
        stamps: list[float] = []

        async def worker(i: int) -> None:
            slot = await pacer.acquire(scope, horizon_s=60)
            order.append(i)
            stamps.append(clock.now())
            assert slot.lateness_s == 0

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(worker, i)
            await clock.run_until_idle()

        assert order == list(range(n))  # FIFO
        assert stamps[0] == t0
        gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        assert min(gaps) >= spacing(cps) - EPS
        assert max_in_window(stamps) <= cps
        rate = (n - 1) / (stamps[-1] - stamps[0])
        assert 0.95 * cps <= rate <= cps
        assert pacer.get_state(scope).dispatched == n

    run(main)


def test_idle_scope_dispatches_immediately_and_spacing_is_from_last_booking() -> None:
    async def main() -> None:
        clock, pacer = make(100.0)
        assert (await pacer.acquire(TX)).dispatched_at == 100.0
        await clock.advance(5)
        assert (await pacer.acquire(TX)).dispatched_at == 105.0  # no burst credit, no penalty

    run(main)


# --- horizon --------------------------------------------------------------------------------------


def test_horizon_exceeded_raises_without_consuming_the_slot() -> None:
    async def main() -> None:
        clock, pacer = make()
        t = spacing(1)
        a = await pacer.reserve(TX, horizon_s=2.0)
        b = await pacer.reserve(TX, horizon_s=2.0)
        assert (a.start, b.start) == (0.0, t)
        before = pacer.get_state(TX)
        with pytest.raises(RateLimitedLater) as ei:
            await pacer.reserve(TX, horizon_s=2.0)
        e = ei.value
        assert e.code == "rate_limited" and e.scope is TX
        assert e.retry_at == pytest.approx(2 * t) and e.retry_after_s == pytest.approx(2 * t)
        assert "Try again in" in str(e)
        assert e.retry_at_wall.timestamp() == pytest.approx(1_700_000_000.0 + 2 * t)
        after = pacer.get_state(TX)
        assert after.next_slot_at == before.next_slot_at == pytest.approx(2 * t)  # nothing consumed
        c = await pacer.reserve(TX, horizon_s=5.0)  # a longer horizon gets exactly that slot
        assert c.start == pytest.approx(2 * t)
        with pytest.raises(ValueError):
            await pacer.reserve(TX, horizon_s=-1)
        with pytest.raises(ValueError):
            await pacer.reserve(TX, horizon_s=math.nan)

    run(main)


# --- penalize (platform 429) ------------------------------------------------------------------------


def test_penalize_pushes_back_waiters_already_holding_slots() -> None:
    async def main() -> None:
        clock, pacer = make()
        pacer.set_cps(TX, 5)
        t = spacing(5)
        stamps: dict[int, float] = {}

        async def worker(i: int) -> None:
            await pacer.acquire(TX, horizon_s=60)
            stamps[i] = clock.now()

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(worker, i)
            await clock.advance(0.5)
            early = sorted(stamps)
            assert early == [0, 1, 2]
            state = pacer.penalize(TX, 10.0)
            assert state.paused_until == 10.5 and state.paused_for_s == 10.0
            assert state.waiting == 7 and state.next_slot_at == pytest.approx(10.5 + 7 * t)
            # the dialer's retry of the 429'd call goes through the pacer again, after the waiters
            tg.start_soon(worker, 99)
            await clock.run_until_idle()

        late = [stamps[i] for i in [*range(3, 10), 99]]
        assert min(late) == pytest.approx(10.5)
        assert late == sorted(late)  # order kept
        gaps = [b - a for a, b in zip(late, late[1:], strict=False)]
        assert min(gaps) >= t - EPS
        assert max_in_window(list(stamps.values())) <= 5
        s = pacer.get_state(TX)
        assert s.paused_until is None and s.paused_for_s == 0.0

    run(main)


def test_penalize_blocks_new_reservations_and_a_reserved_but_unwaited_slot() -> None:
    async def main() -> None:
        clock, pacer = make()
        slot = await pacer.reserve(TX)  # booked before the 429, waited on only afterwards
        pacer.penalize(TX, 3.0)
        assert pacer.get_state(TX).next_slot_at == 3.0
        done: list[float] = []

        async def late_waiter() -> None:
            await pacer.wait(slot)
            done.append(clock.now())

        async def newcomer() -> None:
            await pacer.acquire(TX)
            done.append(clock.now())

        async with anyio.create_task_group() as tg:
            tg.start_soon(late_waiter)
            tg.start_soon(newcomer)
            await clock.run_until_idle()
        assert min(done) >= 3.0
        assert max_in_window(done) <= 1

    run(main)


def test_penalize_past_a_waiters_horizon_raises_rate_limited() -> None:
    async def main() -> None:
        clock, pacer = make()
        errors: list[RateLimitedLater] = []

        async def worker() -> None:
            try:
                await pacer.acquire(TX, horizon_s=5)
            except RateLimitedLater as e:
                errors.append(e)

        await pacer.acquire(TX)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker)  # holds the slot at 1.03 s
            await clock.advance(0.5)
            pacer.penalize(TX, 30)
            await clock.run_until_idle()
        assert len(errors) == 1
        assert errors[0].retry_at == pytest.approx(30.5) and "429" in str(errors[0])
        assert pacer.get_state(TX).dispatched == 1
        # its slot was the tail, so it went back: the next caller starts right when the pause ends
        assert pacer.get_state(TX).next_slot_at == pytest.approx(30.5)

    run(main)


def test_penalize_rejects_bad_retry_after() -> None:
    _, pacer = make()
    for bad in (-1, math.inf, math.nan, "5", None, True):
        with pytest.raises(ValueError):
            pacer.penalize(TX, bad)  # type: ignore[arg-type]


# --- provider table ---------------------------------------------------------------------------------


def test_twilio_raise_is_pending_for_ten_minutes() -> None:
    async def main() -> None:
        clock, pacer = make()
        s = pacer.set_cps(TW, 5)
        assert (s.configured_cps, s.effective_cps, s.pending_cps) == (5, 1, 5)
        assert s.pending_effective_at == TWILIO_RAISE_DELAY_S and s.pending_effective_in_s == 600
        a = await pacer.acquire(TW)
        b = await pacer.reserve(TW)
        assert b.start - a.start == pytest.approx(spacing(1))  # the old value still paces
        pacer.release(b)
        await clock.advance(300)
        assert pacer.set_cps(TW, 5).pending_effective_at == 600  # same raise again: clock not restarted
        await clock.advance(299.9)
        assert pacer.get_state(TW).effective_cps == 1
        await clock.advance(0.1)
        s = pacer.get_state(TW)
        assert (s.effective_cps, s.pending_cps, s.pending_effective_at) == (5, None, None)
        c = await pacer.acquire(TW)
        d = await pacer.reserve(TW)
        assert d.start - c.start == pytest.approx(spacing(5))

    run(main)


def test_twilio_cut_is_immediate_and_cancels_a_pending_raise() -> None:
    async def main() -> None:
        clock, pacer = make()
        pacer.set_cps(TW, 4)
        await clock.advance(600)
        assert pacer.get_state(TW).effective_cps == 4
        s = pacer.set_cps(TW, 2)  # cut: now
        assert (s.effective_cps, s.pending_cps) == (2, None)
        s = pacer.set_cps(TW, 5)  # raise: pending
        assert (s.effective_cps, s.pending_cps) == (2, 5)
        await clock.advance(100)
        s = pacer.set_cps(TW, 3)  # still a raise over 2: the newest value pends, its own 10 minutes
        assert (s.effective_cps, s.pending_cps, s.pending_effective_at) == (2, 3, 1300)
        s = pacer.set_cps(TW, 1)  # a cut while a raise is pending: immediate, raise dropped
        assert (s.configured_cps, s.effective_cps, s.pending_cps, s.pending_effective_at) == (
            1,
            1,
            None,
            None,
        )
        await clock.advance(1000)
        assert pacer.get_state(TW).effective_cps == 1

    run(main)


def test_twilio_equal_to_effective_clears_pending() -> None:
    _, pacer = make()
    pacer.set_cps(TW, 3)
    s = pacer.set_cps(TW, 1)
    assert (s.effective_cps, s.pending_cps) == (1, None)


def test_telnyx_is_instant_and_capped_at_16() -> None:
    _, pacer = make()
    s = pacer.set_cps("telnyx", 16)
    assert (s.effective_cps, s.pending_cps, s.max_cps) == (16, None, 16)
    with pytest.raises(CpsAboveProviderMax) as ei:
        pacer.set_cps(TX, 17)
    assert ei.value.code == "cps_above_provider_max"
    assert (ei.value.requested, ei.value.max_cps) == (17, 16)
    assert "at most 16" in str(ei.value) and "1 to 16" in str(ei.value)
    assert pacer.get_state(TX).effective_cps == 16  # refusal changed nothing
    with pytest.raises(CpsError, match="at most 5"):
        pacer.set_cps(TW, 6)


def test_cut_respaces_waiters_and_counts_calls_already_made() -> None:
    async def main() -> None:
        clock, pacer = make()
        pacer.set_cps(TX, 16)
        stamps: list[float] = []

        async def worker() -> None:
            await pacer.acquire(TX, horizon_s=60)
            stamps.append(clock.now())

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(worker)
            await clock.advance(0.1)
            assert len(stamps) == 2
            cut_at = clock.now()
            pacer.set_cps(TX, 2)
            await clock.run_until_idle()

        post = [s for s in stamps if s > cut_at]
        assert len(post) == 8
        assert min(b - a for a, b in zip(post, post[1:], strict=False)) >= spacing(2) - EPS
        # every window holding a post-cut call (= the window ending at it) respects the new CPS
        for s in post:
            assert sum(1 for x in stamps if s - 1.0 - EPS <= x <= s) <= 2

    run(main)


@pytest.mark.parametrize(
    "limit,ok,refused",
    [(100, 5, 6), (19, 1, 2), (0, 1, 2), (20, 1, 2), (40, 2, 3), (339, 16, 17), (1000, 50, 51)],
)
def test_custom_max_is_concurrency_over_20_at_least_1(limit: int, ok: int, refused: int) -> None:
    _, pacer = make()
    s = pacer.set_cps(CU, ok, concurrency_limit=limit)
    assert (s.effective_cps, s.max_cps, s.concurrency_limit) == (ok, ok, limit)
    with pytest.raises(CpsAboveProviderMax) as ei:
        pacer.set_cps(CU, refused, concurrency_limit=limit)
    msg = str(ei.value)
    assert ei.value.code == "cps_above_provider_max"
    assert f"concurrency limit of {limit}" in msg and "// 20" in msg and f"1 to {ok}" in msg


def test_custom_remembers_concurrency_and_refuses_above_1_when_unknown() -> None:
    _, pacer = make()
    with pytest.raises(CpsAboveProviderMax, match="not known") as ei:
        pacer.set_cps(CU, 2)
    assert ei.value.max_cps == 1
    assert pacer.set_cps(CU, 1).max_cps == 1
    pacer.set_cps(CU, 3, concurrency_limit=60)
    s = pacer.set_cps(CU, 2)  # limit remembered
    assert (s.effective_cps, s.max_cps, s.concurrency_limit) == (2, 3, 60)
    assert pacer.set_cps(TX, 2, concurrency_limit=1).concurrency_limit is None  # other scopes ignore it
    assert max_cps_for("custom", 100)[0] == 5


@pytest.mark.parametrize("bad", [0, -1, 0.0, 1.5, math.nan, math.inf, -math.inf, "5", None, True, [1]])
def test_invalid_cps_values_are_refused(bad: object) -> None:
    _, pacer = make()
    with pytest.raises(InvalidCps) as ei:
        pacer.set_cps(TX, bad)  # type: ignore[arg-type]
    assert (
        isinstance(ei.value, ValueError)
        and isinstance(ei.value, CpsError)
        and isinstance(ei.value, PacingError)
    )
    assert ei.value.code == "cps_invalid"
    assert "CPS must be" in str(ei.value)
    assert pacer.get_state(TX).configured_cps == 1


def test_whole_float_is_accepted_and_bad_scope_or_concurrency_refused() -> None:
    _, pacer = make()
    assert pacer.set_cps(TX, 4.0).effective_cps == 4  # type: ignore[arg-type]
    with pytest.raises(UnknownScope) as ei:
        pacer.set_cps("vonage", 1)
    assert ei.value.code == "cps_scope_unknown" and "twilio" in str(ei.value)
    with pytest.raises(InvalidCps, match="concurrency_limit"):
        pacer.set_cps(CU, 1, concurrency_limit=-5)


# --- cancellation -----------------------------------------------------------------------------------


def test_cancelled_waiter_leaves_a_hole_never_an_extra_call() -> None:
    async def main() -> None:
        clock, pacer = make()
        t = spacing(1)
        stamps: dict[str, float] = {}

        async def worker(name: str) -> None:
            await pacer.acquire(TX, horizon_s=60)
            stamps[name] = clock.now()

        async with anyio.create_task_group() as tg:
            scopes: dict[str, anyio.CancelScope] = {}
            for name in "ABC":
                scopes[name] = cs = anyio.CancelScope()

                async def guarded(name: str = name, cs: anyio.CancelScope = cs) -> None:
                    with cs:
                        await worker(name)

                tg.start_soon(guarded)
            await clock.advance(0.5)
            scopes["B"].cancel()  # middle slot: lost, C keeps its time
            await clock.advance(2.0)  # now 2.5: C went at 2t, the next free slot is 3t
            assert stamps == {"A": 0.0, "C": pytest.approx(2 * t)}

            scopes["D"] = cs_d = anyio.CancelScope()

            async def d() -> None:
                with cs_d:
                    await worker("D")

            tg.start_soon(d)  # books 3t
            await clock.settle()
            cs_d.cancel()  # the tail slot goes back to the pool
            await clock.settle()
            tg.start_soon(worker, "E")
            await clock.run_until_idle()
        assert "B" not in stamps and "D" not in stamps
        assert stamps["E"] == pytest.approx(3 * t)
        assert max_in_window(list(stamps.values())) <= 1
        st_ = pacer.get_state(TX)
        assert st_.waiting == 0 and st_.dispatched == 3
        assert clock.sleepers == 0

    run(main)


def test_release_of_reserved_slot() -> None:
    async def main() -> None:
        _, pacer = make()
        a = await pacer.reserve(TX)
        b = await pacer.reserve(TX)
        pacer.release(a)  # not the tail: stays booked (lost)
        assert pacer.get_state(TX).next_slot_at == pytest.approx(2 * spacing(1))
        pacer.release(b)  # the tail: returned
        assert pacer.get_state(TX).next_slot_at == pytest.approx(spacing(1))
        pacer.release(b)  # idempotent
        assert pacer.get_state(TX).next_slot_at == pytest.approx(spacing(1))

    run(main)


# --- the guard against late wake-ups ----------------------------------------------------------------


class LateClock(ManualClock):
    """Oversleeps by up to 150 ms, far beyond the 30 ms the margin absorbs (GC pause, busy loop)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self._rng = random.Random(seed)

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds + self._rng.choice([0.0, 0.0, 0.001, 0.02, 0.15]))


@pytest.mark.parametrize("cps", [1, 5, 16])
def test_late_wakeups_never_put_more_than_cps_in_a_second(cps: int) -> None:
    async def main() -> None:
        clock = LateClock(seed=cps)
        pacer = Pacer(clock)
        pacer.set_cps(TX, cps)
        stamps: list[float] = []

        async def worker() -> None:
            await pacer.acquire(TX, horizon_s=600)
            stamps.append(clock.now())

        async with anyio.create_task_group() as tg:
            for _ in range(4 * cps + 3):
                tg.start_soon(worker)
            await clock.run_until_idle()
        assert len(stamps) == 4 * cps + 3
        assert max_in_window(stamps) <= cps

    run(main)


# --- state, persistence -----------------------------------------------------------------------------


def test_states_and_to_dict_are_json_ready() -> None:
    async def main() -> None:
        clock, pacer = make()
        pacer.set_cps(TW, 5)
        await pacer.acquire(TW)
        pacer.penalize(TW, 2)
        states = {s.scope: s for s in pacer.states()}
        assert set(states) == set(ProviderKind)
        s = states[TW]
        assert s.to_wall(s.as_of) == 1_700_000_000.0
        d = s.to_dict()
        json.dumps(d)
        assert d["scope"] == "twilio" and d["pending_cps"] == 5 and d["dispatched"] == 1
        assert d["paused_until"].startswith("2023-11-14T22:13:22") and d["paused_for_s"] == 2
        assert d["next_slot_in_s"] == 2 and d["pending_effective_in_s"] == 600
        assert states[TX].to_dict()["paused_for_s"] == 0.0

    run(main)


def test_snapshot_restore_round_trip() -> None:
    async def main() -> None:
        clock, pacer = make()
        pacer.set_cps(TX, 10)
        pacer.set_cps(CU, 4, concurrency_limit=90)
        pacer.set_cps(TW, 2)
        await clock.advance(600)
        pacer.set_cps(TW, 5)  # pending until 1200
        await clock.advance(200)
        snap = json.loads(json.dumps(pacer.snapshot()))
        assert snap["scopes"]["twilio"]["cps"] == 2 and snap["scopes"]["twilio"]["pending_cps"] == 5

        # a restart: new monotonic origin, wall clock moved on by 100 s
        clock2 = ManualClock(5.0)
        wall2 = 1_700_000_000.0 + 800 + 100
        p2 = Pacer(clock2, wall=lambda: wall2 + clock2.now() - 5.0)
        assert p2.restore(snap) == []
        tw = p2.get_state(TW)
        assert (tw.effective_cps, tw.pending_cps) == (2, 5)  # in force stays in force: no new wait
        assert tw.pending_effective_in_s == pytest.approx(300)  # 1200 - 800 - 100
        assert p2.get_state(TX).effective_cps == 10
        cu = p2.get_state(CU)
        assert (cu.effective_cps, cu.concurrency_limit) == (4, 90)
        await clock2.advance(300)
        assert p2.get_state(TW).effective_cps == 5

    run(main)


def test_restore_skips_entries_no_longer_valid() -> None:
    _, pacer = make()
    problems = pacer.restore(
        {
            "version": 1,
            "scopes": {"custom": {"cps": 4, "concurrency_limit": 40}, "telnyx": {"cps": 7}, "sip": {}},
        }
    )
    assert len(problems) == 2 and "custom" in problems[0] and "sip" in problems[1]
    assert pacer.get_state(CU).effective_cps == 1
    assert pacer.get_state(TX).effective_cps == 7
    assert pacer.restore({"nope": 1}) == ["CPS snapshot has an unknown format; defaults kept."]
    assert pacer.snapshot() == {"version": 1, "scopes": {"telnyx": {"cps": 7}}}


# --- property-based -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cps=st.integers(1, 16),
    arrivals=st.lists(st.floats(0, 4, allow_nan=False).map(lambda x: round(x, 3)), min_size=1, max_size=40),
    penalty=st.none() | st.tuples(st.floats(0, 4), st.floats(0, 3)),
)
def test_property_no_rolling_second_exceeds_cps(
    cps: int, arrivals: list[float], penalty: tuple[float, float] | None
) -> None:
    async def main() -> None:
        clock, pacer = make()
        pacer.set_cps(TX, cps)
        stamps: list[float] = []
        t = spacing(cps)

        async def caller(at: float) -> None:
            await clock.sleep(at)
            slot = await pacer.acquire(TX, horizon_s=1_000)
            assert clock.now() >= at
            assert slot.waited_s == clock.now() - at
            assert slot.dispatched_at == clock.now()
            stamps.append(clock.now())

        async with anyio.create_task_group() as tg:
            for at in arrivals:
                tg.start_soon(caller, at)
            if penalty is not None:
                at, retry_after = penalty
                await clock.advance_to(at)
                pause_from = clock.now()
                pacer.penalize(TX, retry_after)
                before = len(stamps)
            await clock.run_until_idle()

        assert len(stamps) == len(arrivals)
        assert max_in_window(stamps) <= cps
        s = sorted(stamps)
        assert all(b - a >= t - EPS for a, b in zip(s, s[1:], strict=False))
        if penalty is not None:
            assert all(x >= pause_from + retry_after - EPS for x in stamps[before:])

    run(main)


# --- the real clock ---------------------------------------------------------------------------------


def test_real_clock_12_calls_at_cps_8() -> None:
    stamps: list[float] = []

    async def main() -> None:
        pacer = Pacer(MonotonicClock())
        pacer.set_cps(TX, 8)

        async def worker() -> None:
            await pacer.acquire(TX)
            stamps.append(time.monotonic())

        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(worker)

    t0 = time.monotonic()
    run(main)
    elapsed = time.monotonic() - t0
    assert len(stamps) == 12
    assert max_in_window(stamps) <= 8
    assert elapsed < 3.0  # 11 intervals of 128.75 ms = 1.42 s, plus scheduling slack
    assert 11 / (stamps[-1] - stamps[0]) >= 0.9 * 8
