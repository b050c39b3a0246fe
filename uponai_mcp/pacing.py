"""Client-side calls-per-second (CPS) pacing, one GCRA schedule per provider scope.

The platform rejects create-call requests above a CPS limit that is set per provider (the carrier
behind the from-number), and carriers count "at most N in any rolling second" (reliability.md §3.1).
So we pace with strict spacing (GCRA with burst 0) in reservation style: a caller books the next free
slot, ``start = max(tat, now)``, moves ``tat`` one emission interval on, then sleeps until ``start``.
One number of state per scope, FIFO-ish order, no polling; the same math ports to a Redis Lua script
(reliability.md §3.3), which is why ``reserve`` is async.

Margin: emission interval ``T = (1 / cps) * (1 + SPACING_MARGIN)`` with a 3 % margin. N+1 dispatches
need N intervals, so any N+1 of them span >= 1.03 s: 30 ms of slack per window whatever the CPS,
which is ~5x the p99 dispatch lateness measured in reliability.md §3.3 (2-5.5 ms; exact 1/CPS spacing
measured 6 in a window at CPS 5 and 17 at CPS 16). Throughput stays at 97 % of the CPS, above the
95 % target of §3.4. A relative margin (rather than "+5 ms" per gap) keeps the slack per window
constant; +5 ms per gap would cost 8 % of throughput at CPS 16 (14.8/s measured).

Belt and braces: a late wake-up beyond the 30 ms slack (GC pause, busy loop) must not squeeze N+1
dispatches into one second either, because GCRA schedules from ``tat``, not from actual dispatch
times. So each dispatch also checks the scope's last N actual dispatch times and waits until
N+1 consecutive dispatches span >= ``1 s + GUARD_SLACK_S``. That makes "no rolling 1-second window
holds more than CPS dispatches" hold for the timestamps this module records, not just on paper.

CPS values are whole numbers: the platform's ``CpsConfig`` is integer (retell-openapi.yaml), and with
a fractional CPS (2.5) strict spacing still puts 3 calls in some rolling second.

Times are monotonic seconds from the injected ``Clock``; ``ScopeState`` carries a wall-clock anchor
to convert them for display. Single event loop; many anyio tasks may pace the same scope at once.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import anyio
import anyio.lowlevel

from uponai_mcp.models import ProviderKind

__all__ = [
    "CUSTOM_CALLS_PER_CPS",
    "DEFAULT_CPS",
    "GUARD_SLACK_S",
    "PROVIDER_MAX_CPS",
    "SPACING_MARGIN",
    "TWILIO_RAISE_DELAY_S",
    "Clock",
    "CpsAboveProviderMax",
    "CpsError",
    "InvalidCps",
    "ManualClock",
    "MonotonicClock",
    "Pacer",
    "PacingError",
    "RateLimitedLater",
    "ScopeState",
    "SharedPacer",
    "SharedSchedule",
    "Slot",
    "UnknownScope",
    "max_cps_for",
]

DEFAULT_CPS = 1
PROVIDER_MAX_CPS: Mapping[ProviderKind, int] = {ProviderKind.TWILIO: 5, ProviderKind.TELNYX: 16}
CUSTOM_CALLS_PER_CPS = 20  # custom telephony: max CPS = concurrency_limit // 20 (at least 1)
TWILIO_RAISE_DELAY_S = 600.0  # Twilio applies a raise within 10 min; until then the old value paces
SPACING_MARGIN = 0.03  # see module docstring
GUARD_SLACK_S = 0.010  # < the 30 ms schedule slack (capped at margin/3), so on-time dispatches never trip it
WINDOW_S = 1.0


# --- errors ------------------------------------------------------------------------------------


class PacingError(Exception):
    """Base class; ``code`` is the machine-readable reason a tool returns, ``str(e)`` the sentence."""

    code = "pacing_error"


class CpsError(PacingError, ValueError):
    """A ``set_cps`` refusal (any of the subclasses below)."""

    code = "cps_error"


class InvalidCps(CpsError):
    """The value is not a whole number >= 1 (zero, negative, fractional, non-finite, not a number)."""

    code = "cps_invalid"


class CpsAboveProviderMax(CpsError):
    """The value is above what the scope's provider allows."""

    code = "cps_above_provider_max"

    def __init__(self, message: str, *, scope: ProviderKind, requested: int, max_cps: int) -> None:
        super().__init__(message)
        self.scope = scope
        self.requested = requested
        self.max_cps = max_cps


class UnknownScope(CpsError):
    code = "cps_scope_unknown"


class RateLimitedLater(PacingError):
    """No slot within the caller's horizon; nothing was consumed. Try again at ``retry_at``."""

    code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        scope: ProviderKind,
        retry_at: float,
        retry_after_s: float,
        retry_at_wall: datetime,
    ) -> None:
        super().__init__(message)
        self.scope = scope
        self.retry_at = retry_at  # monotonic, on the pacer's clock
        self.retry_after_s = retry_after_s
        self.retry_at_wall = retry_at_wall  # aware UTC datetime, for messages


# --- clocks ------------------------------------------------------------------------------------


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``anyio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))


class ManualClock:
    """Test clock: time moves only when told; sleepers wake in (deadline, arrival) order.

    ``advance``/``advance_to``/``run_until_idle`` step from one deadline to the next, letting the
    woken tasks run (a fixed number of event-loop checkpoints) before the next step, so a run is
    deterministic. Works on any anyio backend.
    """

    def __init__(self, start: float = 0.0, *, settle_rounds: int = 25) -> None:
        self._now = float(start)
        self._heap: list[list[Any]] = []  # [deadline, seq, event, alive]
        self._seq = itertools.count()
        self._settle_rounds = settle_rounds

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        entry = [self._now + seconds, next(self._seq), anyio.Event(), True]
        heapq.heappush(self._heap, entry)
        try:
            await entry[2].wait()
        finally:
            entry[3] = False  # cancelled sleepers are dropped lazily

    @property
    def sleepers(self) -> int:
        return sum(1 for e in self._heap if e[3])

    def next_deadline(self) -> float | None:
        while self._heap and not self._heap[0][3]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    async def settle(self) -> None:
        """Let runnable tasks run until they block again."""
        for _ in range(self._settle_rounds):
            await anyio.lowlevel.checkpoint()

    def _fire_due(self) -> None:
        while self._heap and self._heap[0][0] <= self._now:
            entry = heapq.heappop(self._heap)
            if entry[3]:
                entry[3] = False
                entry[2].set()

    async def advance_to(self, t: float) -> None:
        while True:
            await self.settle()
            nxt = self.next_deadline()
            if nxt is None or nxt > t:
                break
            self._now = max(self._now, nxt)
            self._fire_due()
        self._now = max(self._now, t)
        await self.settle()

    async def advance(self, seconds: float) -> None:
        await self.advance_to(self._now + seconds)

    async def run_until_idle(self, *, max_time: float = math.inf) -> None:
        """Jump from deadline to deadline until nobody sleeps (or the next deadline > max_time)."""
        while True:
            await self.settle()
            nxt = self.next_deadline()
            if nxt is None or nxt > max_time:
                return
            self._now = max(self._now, nxt)
            self._fire_due()


# --- provider table ----------------------------------------------------------------------------


def _coerce_scope(scope: ProviderKind | str) -> ProviderKind:
    try:
        return ProviderKind(scope)
    except ValueError:
        known = ", ".join(k.value for k in ProviderKind)
        raise UnknownScope(f"Unknown CPS scope {scope!r}; use one of: {known}.") from None


def _coerce_cps(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidCps(f"CPS must be a whole number of calls per second (1 or more); got {value!r}.")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidCps(f"CPS must be a finite whole number of calls per second; got {value!r}.")
        if not value.is_integer():
            raise InvalidCps(
                f"CPS must be a whole number of calls per second (the platform only accepts whole numbers); "
                f"got {value!r}."
            )
        value = int(value)
    if value < 1:
        raise InvalidCps(
            f"CPS must be at least 1 call per second; got {value!r}. To stop calling, don't call."
        )
    return value


def _coerce_concurrency(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidCps(f"concurrency_limit must be a whole number >= 0; got {value!r}.")
    return value


def max_cps_for(scope: ProviderKind | str, concurrency_limit: int | None = None) -> tuple[int, str]:
    """The provider's CPS ceiling and a sentence saying where it comes from."""
    kind = _coerce_scope(scope)
    if kind is ProviderKind.CUSTOM:
        if concurrency_limit is None:
            return 1, (
                "imported (custom telephony) numbers allow up to concurrency limit // 20 calls per second, "
                "and the concurrency limit is not known here, so only 1 is allowed; pass concurrency_limit "
                "(read from the platform's concurrency endpoint) to allow more"
            )
        m = max(1, concurrency_limit // CUSTOM_CALLS_PER_CPS)
        return m, (
            f"imported (custom telephony) numbers allow up to concurrency limit // {CUSTOM_CALLS_PER_CPS} "
            f"calls per second (at least 1); with a concurrency limit of {concurrency_limit} that is {m}"
        )
    m = PROVIDER_MAX_CPS[kind]
    return m, f"{kind.value.capitalize()} numbers allow at most {m} calls per second"


# --- state -------------------------------------------------------------------------------------


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ScopeState:
    """A read-only view of one scope. Times are monotonic seconds on the pacer's clock.

    ``as_of`` (monotonic) and ``as_of_wall`` (epoch seconds) were read together, so
    ``to_wall(t) = as_of_wall + (t - as_of)``; ``to_dict()`` gives JSON with wall times.
    """

    scope: ProviderKind
    configured_cps: int  # the latest accepted value (a pending Twilio raise included)
    effective_cps: int  # the value pacing right now
    max_cps: int
    max_cps_basis: str
    concurrency_limit: int | None  # custom scope only
    pending_cps: int | None  # Twilio raise waiting out its 10 minutes
    pending_effective_at: float | None
    pending_effective_in_s: float | None
    spacing_s: float  # emission interval in force
    next_slot_at: float  # when a reservation made now would start
    next_slot_in_s: float
    paused_until: float | None  # after penalize(); None when not paused
    paused_for_s: float  # 0.0 when not paused
    dispatched: int  # calls released by the pacer since start
    waiting: int  # callers sleeping on a slot right now
    as_of: float
    as_of_wall: float

    def to_wall(self, t: float | None) -> float | None:
        return None if t is None else self.as_of_wall + (t - self.as_of)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scope"] = self.scope.value
        for k in ("pending_effective_at", "next_slot_at", "paused_until"):
            d[k] = _iso(self.to_wall(d[k]))
        d["as_of"] = _iso(self.as_of_wall)
        del d["as_of_wall"]
        return d


@dataclass(eq=False)
class Slot:
    """A booked dispatch time. ``start`` can move later (penalize, a CPS cut) while it is waited on."""

    scope: ProviderKind
    start: float
    reserved_at: float
    deadline: float  # reserved_at + horizon: rescheduling past this raises RateLimitedLater
    spacing_s: float
    scheduled_start: float = field(init=False)
    dispatched_at: float | None = None
    _end: float = field(default=0.0, repr=False)  # the tat this slot set; == tat while it is the tail

    def __post_init__(self) -> None:
        self.scheduled_start = self.start

    @property
    def lateness_s(self) -> float | None:
        """How late the dispatch was against the (possibly moved) start; ~0 unless the loop was busy."""
        return None if self.dispatched_at is None else self.dispatched_at - self.start

    @property
    def waited_s(self) -> float | None:
        """How long the caller was held, reservation to dispatch."""
        return None if self.dispatched_at is None else self.dispatched_at - self.reserved_at


@dataclass(eq=False)
class _Scope:
    kind: ProviderKind
    effective: int = DEFAULT_CPS
    pending: int | None = None
    pending_at: float | None = None
    concurrency_limit: int | None = None
    explicit: bool = False  # set via set_cps/restore; only those are snapshotted
    tat: float = -math.inf
    paused_until: float = -math.inf
    dispatched: int = 0
    recent: deque[float] = field(default_factory=deque)  # actual dispatch times within the guard window
    waiting: list[Slot] = field(default_factory=list)


# --- the pacer ---------------------------------------------------------------------------------


class Pacer:
    """Per-scope CPS pacing. Typical use: ``await pacer.acquire(kind)`` right before create-call;
    on a platform 429, ``pacer.penalize(kind, retry_after_s)`` then ``acquire`` again to retry."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        wall: Callable[[], float] | None = None,
        margin: float = SPACING_MARGIN,
    ) -> None:
        if not (math.isfinite(margin) and 0 <= margin < 1):
            raise ValueError("margin must be in [0, 1)")
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._wall = wall if wall is not None else time.time
        self.margin = margin
        # The guard must stay inside the schedule's slack (margin * 1 s) or it would fire on time.
        self._guard_s = WINDOW_S + min(GUARD_SLACK_S, margin * WINDOW_S / 3)
        self._retention_s = WINDOW_S * (1.0 + margin) + GUARD_SLACK_S  # covers guard and _respace
        self._scopes = {k: _Scope(k) for k in ProviderKind}

    # -- configuration --

    def _refresh(self, st: _Scope, now: float) -> None:
        if st.pending is not None and st.pending_at is not None and now >= st.pending_at:
            st.effective, st.pending, st.pending_at = st.pending, None, None

    def _spacing(self, cps: int) -> float:
        return (1.0 / cps) * (1.0 + self.margin)

    def _validate(self, st: _Scope, cps: object, concurrency_limit: int | None) -> int:
        value = _coerce_cps(cps)
        max_cps, basis = max_cps_for(st.kind, concurrency_limit)
        if value > max_cps:
            raise CpsAboveProviderMax(
                f"Cannot set {st.kind.value} CPS to {value}: {basis}. Choose a value from 1 to {max_cps}.",
                scope=st.kind,
                requested=value,
                max_cps=max_cps,
            )
        return value

    def set_cps(
        self, scope: ProviderKind | str, cps: int, *, concurrency_limit: int | None = None
    ) -> ScopeState:
        """Set a scope's CPS. Twilio raises pend for 10 minutes; cuts (and Telnyx/custom) apply now.

        ``concurrency_limit`` (custom scope only; ignored for the others) is remembered, so later calls
        may omit it. Refusals raise ``InvalidCps`` / ``CpsAboveProviderMax`` and change nothing.
        """
        st = self._scopes[_coerce_scope(scope)]
        if st.kind is ProviderKind.CUSTOM:
            limit = (
                _coerce_concurrency(concurrency_limit)
                if concurrency_limit is not None
                else st.concurrency_limit
            )
        else:
            limit = None
        value = self._validate(st, cps, limit)
        now = self.clock.now()
        self._refresh(st, now)
        st.concurrency_limit = limit
        st.explicit = True
        if st.kind is ProviderKind.TWILIO and value > st.effective:
            if st.pending != value:  # re-sending the same raise must not restart its 10 minutes
                st.pending, st.pending_at = value, now + TWILIO_RAISE_DELAY_S
        else:
            st.pending = st.pending_at = None
            self._apply(st, value)
        return self._state(st, now)

    def _apply(self, st: _Scope, value: int) -> None:
        old = st.effective
        st.effective = value
        if value < old:
            self._respace(st, self._spacing(old), self._spacing(value))

    def _respace(self, st: _Scope, old_t: float, new_t: float) -> None:
        # A cut must slow slots booked at the old, faster rate, and the calls already made count
        # against the new limit too: re-space the waiters in order so each is >= new_t after the one
        # before and >= n*new_t after the n-th before (n = new CPS); then place the next booking.
        n = st.effective
        times = list(st.recent)  # actual dispatches, oldest first

        def floor() -> float:
            return max(
                times[-1] + new_t if times else -math.inf,
                times[-n] + n * new_t if len(times) >= n else -math.inf,
            )

        for slot in sorted(st.waiting, key=lambda s: s.start):
            slot.start = max(slot.start, floor())
            slot.spacing_s = new_t
            slot._end = slot.start + new_t
            times.append(slot.start)
        st.tat = max(st.tat + (new_t - old_t), floor())

    def get_state(self, scope: ProviderKind | str) -> ScopeState:
        st = self._scopes[_coerce_scope(scope)]
        now = self.clock.now()
        self._refresh(st, now)
        return self._state(st, now)

    def states(self) -> list[ScopeState]:
        return [self.get_state(k) for k in ProviderKind]

    def _guard_free_at(self, st: _Scope, now: float) -> float:
        """Earliest time a dispatch keeps any N+1 consecutive dispatches >= 1 s + slack apart."""
        while st.recent and st.recent[0] <= now - self._retention_s:
            st.recent.popleft()
        n = st.effective
        return st.recent[-n] + self._guard_s if len(st.recent) >= n else -math.inf

    def _state(self, st: _Scope, now: float) -> ScopeState:
        max_cps, basis = max_cps_for(st.kind, st.concurrency_limit)
        nxt = max(st.tat, now, st.paused_until, self._guard_free_at(st, now))
        paused = st.paused_until if st.paused_until > now else None
        return ScopeState(
            scope=st.kind,
            configured_cps=st.pending if st.pending is not None else st.effective,
            effective_cps=st.effective,
            max_cps=max_cps,
            max_cps_basis=basis,
            concurrency_limit=st.concurrency_limit,
            pending_cps=st.pending,
            pending_effective_at=st.pending_at,
            pending_effective_in_s=None if st.pending_at is None else st.pending_at - now,
            spacing_s=self._spacing(st.effective),
            next_slot_at=nxt,
            next_slot_in_s=nxt - now,
            paused_until=paused,
            paused_for_s=0.0 if paused is None else paused - now,
            dispatched=st.dispatched,
            waiting=len(st.waiting),
            as_of=now,
            as_of_wall=self._wall(),
        )

    # -- pacing --

    async def reserve(self, scope: ProviderKind | str, *, horizon_s: float = 30.0) -> Slot:
        """Book the next slot, or raise ``RateLimitedLater`` (booking nothing) if it starts more than
        ``horizon_s`` from now. Follow with ``wait(slot)``, or ``release(slot)`` if you give up."""
        if not (math.isfinite(horizon_s) and horizon_s >= 0):
            raise ValueError(f"horizon_s must be a finite number >= 0; got {horizon_s!r}")
        st = self._scopes[_coerce_scope(scope)]
        now = self.clock.now()
        self._refresh(st, now)
        start = max(st.tat, now, st.paused_until, self._guard_free_at(st, now))
        if start - now > horizon_s:
            raise self._later(st, start, now, f"within the next {horizon_s:g} s")
        t = self._spacing(st.effective)
        slot = Slot(scope=st.kind, start=start, reserved_at=now, deadline=now + horizon_s, spacing_s=t)
        st.tat = slot._end = start + t
        return slot

    def _later(self, st: _Scope, retry_at: float, now: float, what: str) -> RateLimitedLater:
        wait_s = retry_at - now
        why = (
            "the platform asked us to back off (HTTP 429)"
            if st.paused_until > now
            else f"{st.effective} call(s) per second is fully booked"
        )
        return RateLimitedLater(
            f"No {st.kind.value} call slot {what}: {why}. Try again in {math.ceil(wait_s * 10) / 10:g} s.",
            scope=st.kind,
            retry_at=retry_at,
            retry_after_s=wait_s,
            retry_at_wall=datetime.fromtimestamp(self._wall() + wait_s, UTC),
        )

    async def wait(self, slot: Slot) -> Slot:
        """Sleep until the slot may dispatch; returns it with ``dispatched_at`` set.

        Re-checks after every wake-up, so a penalize() or a cut that moved the slot (or a pause it
        missed) is honoured. If the slot was moved past its horizon, raises ``RateLimitedLater``.
        On cancellation the slot is released (if it is the newest booking the time goes back to
        the pool; otherwise it stays unused: lost throughput, never extra calls).
        """
        if slot.dispatched_at is not None:
            raise RuntimeError("slot already dispatched")
        st = self._scopes[slot.scope]
        st.waiting.append(slot)
        try:
            while True:
                now = self.clock.now()
                self._refresh(st, now)
                due = max(slot.start, st.paused_until)
                ready = max(due, self._guard_free_at(st, now))
                if ready <= now:
                    break
                if due > slot.deadline:  # rescheduled beyond what the caller agreed to wait
                    raise self._later(st, due, now, "within the caller's horizon any more")
                await self.clock.sleep(ready - now)
        except BaseException:
            st.waiting.remove(slot)
            self._release(st, slot)
            raise
        st.waiting.remove(slot)
        # No await between the final check and here: the check and the record are atomic.
        slot.dispatched_at = now
        st.recent.append(now)
        st.dispatched += 1
        return slot

    def release(self, slot: Slot) -> None:
        """Give back a reserved slot that will not be used (not needed after ``wait``)."""
        if slot.dispatched_at is None and slot not in self._scopes[slot.scope].waiting:
            self._release(self._scopes[slot.scope], slot)

    def _release(self, st: _Scope, slot: Slot) -> None:
        # Only the newest booking can be handed back without leaving two slots closer than T.
        if st.tat == slot._end:
            st.tat = slot.start
        slot._end = math.nan  # never matches again

    async def acquire(self, scope: ProviderKind | str, *, horizon_s: float = 30.0) -> Slot:
        """Reserve and wait: returns when this caller may send one create-call request."""
        return await self.wait(await self.reserve(scope, horizon_s=horizon_s))

    def penalize(self, scope: ProviderKind | str, retry_after_s: float) -> ScopeState:
        """A 429 from the platform: nobody in the scope dispatches before now + retry_after_s.

        Waiting slots are shifted together (order and spacing kept) so the first starts when the
        pause ends; new bookings go after them. A missing Retry-After is the caller's choice
        (e.g. 1 s); the value is not capped here.
        """
        if isinstance(retry_after_s, bool) or not isinstance(retry_after_s, int | float):
            raise ValueError(f"retry_after_s must be a number of seconds; got {retry_after_s!r}")
        if not (math.isfinite(retry_after_s) and retry_after_s >= 0):
            raise ValueError(f"retry_after_s must be a finite number >= 0; got {retry_after_s!r}")
        st = self._scopes[_coerce_scope(scope)]
        now = self.clock.now()
        self._refresh(st, now)
        st.paused_until = max(st.paused_until, now + retry_after_s)
        delta = 0.0
        if st.waiting:
            delta = max(0.0, st.paused_until - min(s.start for s in st.waiting))
            for s in st.waiting:
                s.start += delta
                s._end += delta
        st.tat = max(st.tat + delta, st.paused_until)
        return self._state(st, now)

    async def sync(self) -> None:
        """Publish configuration changes to a shared schedule (`SharedPacer`); nothing to do in one process."""

    # -- persistence of the configured values (pacing state itself stays in memory) --

    def snapshot(self) -> dict[str, Any]:
        now, wall_now = self.clock.now(), self._wall()
        scopes: dict[str, Any] = {}
        for st in self._scopes.values():
            self._refresh(st, now)
            if not st.explicit:
                continue
            entry: dict[str, Any] = {"cps": st.effective}
            if st.pending is not None and st.pending_at is not None:
                entry["pending_cps"] = st.pending
                entry["pending_effective_at_wall"] = wall_now + (st.pending_at - now)
            if st.concurrency_limit is not None:
                entry["concurrency_limit"] = st.concurrency_limit
            scopes[st.kind.value] = entry
        return {"version": 1, "scopes": scopes}

    def restore(self, data: Mapping[str, Any]) -> list[str]:
        """Re-apply a ``snapshot()``. Values already in force are restored as in force (no new
        10-minute wait); a pending Twilio raise keeps its remaining wait by wall clock. Entries that
        are no longer valid are skipped (the scope keeps its default) and reported as sentences."""
        if (
            not isinstance(data, Mapping)
            or data.get("version") != 1
            or not isinstance(data.get("scopes"), Mapping)
        ):
            return ["CPS snapshot has an unknown format; defaults kept."]
        problems: list[str] = []
        now, wall_now = self.clock.now(), self._wall()
        for name, entry in data["scopes"].items():
            try:
                st = self._scopes[_coerce_scope(name)]
                if not isinstance(entry, Mapping):
                    raise InvalidCps(f"entry for {name!r} is not an object")
                limit = entry.get("concurrency_limit")
                limit = _coerce_concurrency(limit) if limit is not None else None
                cps = self._validate(st, entry.get("cps"), limit)
                pending = entry.get("pending_cps")
                pending = self._validate(st, pending, limit) if pending is not None else None
                eff_wall = entry.get("pending_effective_at_wall")
            except PacingError as e:
                problems.append(f"CPS setting for {name!r} not restored: {e}")
                continue
            self._refresh(st, now)
            st.concurrency_limit = limit if st.kind is ProviderKind.CUSTOM else None
            st.explicit = True
            st.pending = st.pending_at = None
            self._apply(st, cps)
            if pending is not None and pending > cps and st.kind is ProviderKind.TWILIO:
                remaining = TWILIO_RAISE_DELAY_S  # unreadable time: assume the full wait (the safe side)
                if (
                    isinstance(eff_wall, int | float)
                    and not isinstance(eff_wall, bool)
                    and math.isfinite(eff_wall)
                ):
                    remaining = eff_wall - wall_now
                if remaining > 0:
                    st.pending, st.pending_at = pending, now + min(remaining, TWILIO_RAISE_DELAY_S)
                else:
                    self._apply(st, pending)
            elif pending is not None:
                self._apply(st, pending)  # a non-Twilio scope never pends; the newest value wins
        return problems


# --- one schedule for the deployment (several replicas on PostgreSQL) ---------------------------------


@runtime_checkable
class SharedSchedule(Protocol):
    """Where the shared schedule lives (`store.pacer_state.PacerState` on PostgreSQL)."""

    async def book(self, scope: str, *, default_cps: int, margin: float, horizon_s: float,
                   pause_s: float = 0.0) -> Any: ...

    async def configure(self, scope: str, *, cps: int, pending_cps: int | None, pending_in_s: float | None,
                        concurrency_limit: int | None, cut: bool, margin: float) -> None: ...

    async def scopes(self) -> Mapping[str, Any]: ...


class SharedPacer(Pacer):
    """The same pacer, booking its slots on a schedule shared by every replica.

    `reserve` books the scope's next slot in one short transaction on the shared schedule (database clock:
    start = max(tat, now, pause end), tat += spacing) and sleeps locally until it starts, so the replicas
    together never exceed the CPS. The local checks stay (a slot moved by a local 429 pause, the guard over
    this process's own dispatches), so a slot can only start later than booked, never earlier.
    `set_cps` validates and applies here at once and is published by `sync()` (the services call it when they
    save the setting; a booking publishes a pending change first), and every booking brings back the scope's
    configuration, so a change made on any replica paces all of them from their next booking. A platform 429
    (`penalize`) pauses this process at once and the whole deployment from its next booking.
    """

    def __init__(self, schedule: SharedSchedule, clock: Clock | None = None, *,
                 wall: Callable[[], float] | None = None, margin: float = SPACING_MARGIN) -> None:
        super().__init__(clock, wall=wall, margin=margin)
        self.schedule = schedule
        self._pause_pending: dict[ProviderKind, float] = {}
        self._dirty: set[ProviderKind] = set()
        self._cut: set[ProviderKind] = set()

    def set_cps(
        self, scope: ProviderKind | str, cps: int, *, concurrency_limit: int | None = None
    ) -> ScopeState:
        st = self._scopes[_coerce_scope(scope)]
        before = st.effective
        state = super().set_cps(scope, cps, concurrency_limit=concurrency_limit)
        self._dirty.add(st.kind)
        if st.effective < before:
            self._cut.add(st.kind)
        return state

    def penalize(self, scope: ProviderKind | str, retry_after_s: float) -> ScopeState:
        state = super().penalize(scope, retry_after_s)
        kind = _coerce_scope(scope)
        self._pause_pending[kind] = max(self._pause_pending.get(kind, 0.0), float(retry_after_s))
        return state

    async def sync(self) -> None:
        """Publish the scopes configured here since the last sync."""
        for kind in list(self._dirty):
            st = self._scopes[kind]
            now = self.clock.now()
            self._refresh(st, now)
            await self.schedule.configure(
                kind.value, cps=st.effective, pending_cps=st.pending,
                pending_in_s=None if st.pending_at is None else st.pending_at - now,
                concurrency_limit=st.concurrency_limit, cut=kind in self._cut, margin=self.margin)
            self._dirty.discard(kind)
            self._cut.discard(kind)

    async def reserve(self, scope: ProviderKind | str, *, horizon_s: float = 30.0) -> Slot:
        if not (math.isfinite(horizon_s) and horizon_s >= 0):
            raise ValueError(f"horizon_s must be a finite number >= 0; got {horizon_s!r}")
        st = self._scopes[_coerce_scope(scope)]
        if st.kind in self._dirty:
            await self.sync()
        pause = self._pause_pending.pop(st.kind, 0.0)
        try:
            booking = await self.schedule.book(st.kind.value, default_cps=st.effective, margin=self.margin,
                                               horizon_s=horizon_s, pause_s=pause)
        except BaseException:
            if pause:
                self._pause_pending[st.kind] = max(self._pause_pending.get(st.kind, 0.0), pause)
            raise
        now = self.clock.now()
        self._adopt(st, booking, now)
        start = self._local_start(booking, now)
        if not booking.booked:
            raise self._later(st, start, now, f"within the next {horizon_s:g} s")
        t = self._spacing(st.effective)
        slot = Slot(scope=st.kind, start=start, reserved_at=now, deadline=now + horizon_s, spacing_s=t)
        slot._end = start + t
        st.tat = max(st.tat, slot._end)  # this process's view (batches look at it to stay near their slot)
        return slot

    def _local_start(self, booking: Any, now: float) -> float:
        """The booked start on this process's clock. The database said "start_in_s after my now". Anchoring
        that at the reply would shift every slot by the reply's delay (the rest of the transaction, its
        commit, the hop back to the event loop: milliseconds that vary), and two replicas' shifts differ,
        squeezing the gap between their dispatches. The booking says when, on time.monotonic(), the database's
        now was read (within half a loopback round trip): the slot is placed on that."""
        read_at = getattr(booking, "read_at", None)
        if read_at is None or not isinstance(self.clock, MonotonicClock):
            return now + booking.start_in_s
        return read_at + booking.start_in_s

    async def refresh(self) -> None:
        """Adopt every scope's configuration as the shared schedule has it (what `get_cps` shows here follows a
        `set_cps` made on another replica, not only this replica's next booking)."""
        scopes = await self.schedule.scopes()
        now = self.clock.now()
        for name, booking in scopes.items():
            try:
                st = self._scopes[_coerce_scope(name)]
            except UnknownScope:
                continue
            self._adopt(st, booking, now)

    async def follow(self, every_s: float = 1.0) -> None:
        """Refresh forever (the services run it while they live); a failed read is tried again."""
        while True:
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - the store says why elsewhere; pacing itself books per call
                pass
            await self.clock.sleep(every_s)

    def _adopt(self, st: _Scope, booking: Any, now: float) -> None:
        if booking.paused_for_s > 0:
            st.paused_until = max(st.paused_until, now + booking.paused_for_s)
        if st.kind in self._dirty:
            return  # a change made here and not yet published wins over what the schedule said
        st.effective = int(booking.cps)
        st.pending = booking.pending_cps
        st.pending_at = None if booking.pending_in_s is None else now + booking.pending_in_s
        if st.kind is ProviderKind.CUSTOM:
            st.concurrency_limit = booking.concurrency_limit
        st.explicit = st.explicit or bool(booking.explicit)
