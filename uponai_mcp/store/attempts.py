"""The attempts ledger: one row per dial we intend, written and committed before the request leaves.

States: pending -> dialing (request may have left) -> placed (call_id) | failed | unknown;
unknown -> dialing (retry with the same key) | placed | failed (after reconciliation).
A failed attempt whose request may have left (dialed_at_ms set) can still turn placed if a
reconciliation finds its call. Re-marking the current state is allowed (a 429 retry marks dialing
again; a repeated reconcile marks placed again) but a placed attempt never changes its call id.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .base import StoreBase, now_or
from .errors import IdempotencyConflict, InvalidTransition, NotFound, ReservationRefused
from .rows import ATTEMPT_STATES, Attempt

_NEXT = {
    "pending": {"pending", "dialing", "failed"},
    "dialing": {"dialing", "placed", "failed", "unknown"},
    "unknown": {"unknown", "dialing", "placed", "failed"},
    "placed": {"placed"},
    "failed": {"failed", "placed"},
}
# What budgets count: everything that reached the platform or may have, plus pending rows (they are
# about to dial; counting them closes the check-then-dial race). Failed-before-sending is not counted;
# refusals never enter the ledger at all.
_COUNTED = "NOT (state = 'failed' AND dialed_at_ms IS NULL)"
_CALLS = "state IN ('dialing', 'placed', 'unknown')"


DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Usage:
    """Prior attempts that count against budgets, in the rolling windows ending now."""

    to_destination_24h: int
    last_hour: int
    last_day: int
    # Spend cap (today = the UTC day): costs the platform reported, and calls without a cost yet.
    spent_today_mc: int = 0
    in_flight_today: int = 0
    # The destination's do-not-call entry, (reason, source, call_id), read in the same transaction.
    do_not_call: tuple[str, str, str | None] | None = None


def _usage(conn: sqlite3.Connection, to_number: str, now: int) -> Usage:
    row = conn.execute(
        f"SELECT COALESCE(SUM(CASE WHEN to_number = ? THEN 1 ELSE 0 END), 0),"
        f" COALESCE(SUM(CASE WHEN created_at_ms >= ? THEN 1 ELSE 0 END), 0), COUNT(*)"
        f" FROM attempts WHERE created_at_ms >= ? AND {_COUNTED}",
        (to_number, now - HOUR_MS, now - DAY_MS)).fetchone()
    spend = spend_today(conn, now)
    listed = conn.execute("SELECT reason, source, call_id FROM do_not_call WHERE e164 = ?", (to_number,)).fetchone()
    return Usage(to_destination_24h=row[0], last_hour=row[1], last_day=row[2], spent_today_mc=spend[0],
                 in_flight_today=spend[1],
                 do_not_call=None if listed is None else (listed[0], listed[1], listed[2]))


def spend_today(conn: sqlite3.Connection, now: int) -> tuple[int, int]:
    """(reported cost of today's calls in thousandths of a cent, today's calls with no cost yet). A call counts
    from its attempt's creation; one that failed without reaching the platform costs nothing."""
    row = conn.execute(
        "SELECT COALESCE(SUM(cost_mc), 0),"
        " COALESCE(SUM(CASE WHEN cost_mc IS NULL AND state IN ('pending', 'dialing', 'unknown', 'placed')"
        " THEN 1 ELSE 0 END), 0)"
        f" FROM attempts WHERE created_at_ms >= ? AND {_COUNTED}", (now - now % DAY_MS,)).fetchone()
    return int(row[0]), int(row[1])


def _get(conn: sqlite3.Connection, attempt_id: str) -> Attempt | None:
    row = conn.execute("SELECT * FROM attempts WHERE attempt_id = ?", (attempt_id,)).fetchone()
    return None if row is None else Attempt.from_row(row)


def _by_key(conn: sqlite3.Connection, key: str) -> Attempt | None:
    row = conn.execute("SELECT * FROM attempts WHERE idempotency_key = ?", (key,)).fetchone()
    return None if row is None else Attempt.from_row(row)


def _check_transition(att: Attempt, state: str, call_id: str | None) -> None:
    allowed = _NEXT[att.state]
    if state == "placed" and att.state == "failed" and att.dialed_at_ms is None:
        allowed = set()  # never sent: no call can exist
    if state not in allowed:
        raise InvalidTransition(f"attempt {att.attempt_id}", att.state, state)
    if state == "placed" and att.call_id is not None and call_id not in (None, att.call_id):
        raise InvalidTransition(f"attempt {att.attempt_id} (call {att.call_id})", att.state, f"call {call_id}")


class AttemptsMixin(StoreBase):
    async def create_attempt(
        self, attempt_id: str, *, idempotency_key: str | None, params_hash: str, request_json: str,
        from_number: str, to_number: str, scope: str, source: str = "tool", now_ms: int | None = None,
        check: Callable[[Usage], Any] | None = None,
    ) -> Attempt:
        """Insert a pending attempt, or return the earlier one for the same key (`replay=True`).

        `check` makes it a reservation: it is given the usage before this attempt, inside the same write
        transaction (SQLite's single writer serializes them; on PostgreSQL every replica takes the attempts
        ledger's advisory lock first), and a non-None answer is raised as
        `ReservationRefused(answer)` with nothing written. So N concurrent callers against a cap of one
        get exactly one attempt. Raises IdempotencyConflict when the key (or attempt id) was used with
        other parameters.
        """
        now = now_or(now_ms)

        def op(conn: sqlite3.Connection) -> Attempt:
            earlier = _by_key(conn, idempotency_key) if idempotency_key else None
            earlier = earlier or _get(conn, attempt_id)
            if earlier is not None:
                if earlier.params_hash != params_hash or earlier.idempotency_key != idempotency_key:
                    raise IdempotencyConflict(idempotency_key or attempt_id, earlier.attempt_id)
                return replace(earlier, replay=True)
            if check is not None and (reason := check(_usage(conn, to_number, now))) is not None:
                raise ReservationRefused(reason)
            conn.execute(
                "INSERT INTO attempts (attempt_id, idempotency_key, params_hash, request_json, from_number,"
                " to_number, scope, source, state, created_at_ms, updated_at_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                (attempt_id, idempotency_key, params_hash, request_json, from_number, to_number, scope, source,
                 now, now),
            )
            return _get(conn, attempt_id)

        return await self._write(op, locks=("attempts",))

    async def mark_attempt(
        self, attempt_id: str, state: str, *, call_id: str | None = None, error_code: str | None = None,
        error_message: str | None = None, result_json: str | None = None, now_ms: int | None = None,
        send_at_ms: int | None = None, unsent: bool = False,
    ) -> Attempt:
        """Move an attempt along its state machine; raises NotFound / InvalidTransition.

        `send_at_ms` (with dialing): when the request will leave, if later than now (it waits for a pacer
        slot). `unsent` (with failed): the request never left, so the attempt stops counting against budgets."""
        if state not in ATTEMPT_STATES:
            raise ValueError(f"unknown attempt state {state!r}")
        now = now_or(now_ms)

        def op(conn: sqlite3.Connection) -> Attempt:
            att = _get(conn, attempt_id)
            if att is None:
                raise NotFound(f"no attempt {attempt_id}")
            _check_transition(att, state, call_id)
            if state == att.state and state in ("placed", "failed"):
                return att  # settled already: a repeated report changes nothing
            placed = state == "placed"
            conn.execute(
                "UPDATE attempts SET state = ?, call_id = COALESCE(?, call_id),"
                " error_code = CASE WHEN ? THEN ? ELSE COALESCE(?, error_code) END,"
                " error_message = CASE WHEN ? THEN ? ELSE COALESCE(?, error_message) END,"
                " result_json = COALESCE(?, result_json), updated_at_ms = ?,"
                " dialed_at_ms = CASE WHEN ? THEN NULL"
                " ELSE COALESCE(dialed_at_ms, CASE WHEN ? = 'dialing' THEN ? END) END"
                " WHERE attempt_id = ?",
                (state, call_id, placed, error_code, error_code, placed, error_message, error_message,
                 result_json, now, unsent and state == "failed", state, max(now, send_at_ms or now), attempt_id),
            )
            return _get(conn, attempt_id)

        return await self._write(op, locks=(("attempt", attempt_id),))

    async def get_attempt(self, attempt_id: str) -> Attempt | None:
        return await self._read(lambda c: _get(c, attempt_id))

    async def get_attempt_by_key(self, idempotency_key: str) -> Attempt | None:
        return await self._read(lambda c: _by_key(c, idempotency_key))

    async def get_attempt_by_call(self, call_id: str) -> Attempt | None:
        def fn(conn: sqlite3.Connection) -> Attempt | None:
            row = conn.execute("SELECT * FROM attempts WHERE call_id = ? ORDER BY created_at_ms LIMIT 1",
                               (call_id,)).fetchone()
            return None if row is None else Attempt.from_row(row)

        return await self._read(fn)

    async def attempts_in_state(self, *states: str) -> list[Attempt]:
        """Attempts in any of `states`, oldest first (restart reconciliation)."""
        marks = ",".join("?" * len(states))
        sql = f"SELECT * FROM attempts WHERE state IN ({marks}) ORDER BY created_at_ms, attempt_id"
        return await self._read(lambda c: [Attempt.from_row(r) for r in c.execute(sql, states)])

    async def usage(self, to_number: str, *, now_ms: int | None = None) -> Usage:
        """The counts budgets are checked against (for a verdict; the binding check is `create_attempt`'s)."""
        now = now_or(now_ms)
        return await self._read(lambda c: _usage(c, to_number, now))

    async def count_attempts(
        self, to_number: str | None = None, *, since_ms: int, from_number: str | None = None,
    ) -> int:
        """Attempts created at or after `since_ms` that count against budgets (pending, dialing, placed,
        unknown, and failed after the request may have left)."""
        return await self._count(_COUNTED, since_ms, to_number, from_number)

    async def count_calls(
        self, since_ms: int, *, to_number: str | None = None, from_number: str | None = None,
    ) -> int:
        """Attempts created at or after `since_ms` that made or may have made a call
        (dialing, placed, unknown)."""
        return await self._count(_CALLS, since_ms, to_number, from_number)

    async def _count(self, where: str, since_ms: int, to_number: str | None, from_number: str | None) -> int:
        sql = f"SELECT COUNT(*) FROM attempts WHERE created_at_ms >= ? AND {where}"
        args: list[object] = [since_ms]
        for column, value in (("to_number", to_number), ("from_number", from_number)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        return await self._read(lambda c: c.execute(sql, args).fetchone()[0])
