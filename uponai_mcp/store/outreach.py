"""Outreach (issue 12): the do-not-call list, reported call costs (spend cap), scheduled calls.

Portable SQL only (SQLite and PostgreSQL share it): `?` placeholders, ON CONFLICT ... DO, no dialect functions.
Costs are integer thousandths of a cent (`cost_mc`); times are ms since the epoch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .attempts import DAY_MS, spend_today
from .base import StoreBase, now_or
from .errors import NotFound

SCHEDULED_STATES = ("scheduled", "dialing", "placed", "refused", "cancelled", "failed")
_SCHEDULED_NEXT = {
    "scheduled": {"dialing", "cancelled", "refused"},
    "dialing": {"dialing", "scheduled", "placed", "failed", "refused"},
    "placed": set(), "refused": set(), "cancelled": set(), "failed": set(),
}


@dataclass(frozen=True)
class DncEntry:
    e164: str
    reason: str
    source: str  # manual | csv | opt_out
    added_by: str
    call_id: str | None
    created_at_ms: int

    @classmethod
    def from_row(cls, row: Any) -> DncEntry:
        return cls(row["e164"], row["reason"], row["source"], row["added_by"], row["call_id"], row["created_at_ms"])


@dataclass(frozen=True)
class ScheduledCall:
    schedule_id: str
    to_number: str
    from_number: str
    request_json: str
    idempotency_key: str
    due_at_ms: int
    state: str
    code: str | None
    message: str | None
    attempt_id: str | None
    call_id: str | None
    retry_json: str | None
    tries: int
    batch_id: str | None
    task_idx: int | None
    retry_of: str | None  # the call id this retries
    created_at_ms: int
    updated_at_ms: int

    @classmethod
    def from_row(cls, row: Any) -> ScheduledCall:
        return cls(**{k: row[k] for k in row.keys()})


@dataclass(frozen=True)
class SpendRow:
    from_number: str
    agent_id: str | None
    calls: int
    reported_mc: int
    in_flight: int


@dataclass(frozen=True)
class Cancelled:
    """What an opt-out cancelled: batch tasks (batch_id, idx) and scheduled calls (ids)."""

    batch_tasks: list[tuple[str, int]]
    scheduled: list[str]


def _dnc(conn: sqlite3.Connection, e164: str) -> DncEntry | None:
    row = conn.execute("SELECT * FROM do_not_call WHERE e164 = ?", (e164,)).fetchone()
    return None if row is None else DncEntry.from_row(row)


def _scheduled(conn: sqlite3.Connection, schedule_id: str) -> ScheduledCall | None:
    row = conn.execute("SELECT * FROM scheduled_calls WHERE schedule_id = ?", (schedule_id,)).fetchone()
    return None if row is None else ScheduledCall.from_row(row)


def _cancel_pending(conn: sqlite3.Connection, e164: str, now: int) -> Cancelled:
    tasks = [(r[0], r[1]) for r in conn.execute(
        "SELECT batch_id, idx FROM batch_tasks WHERE to_number = ? AND state = 'pending'", (e164,)).fetchall()]
    conn.execute("UPDATE batch_tasks SET state = 'cancelled', refusal_code = 'do_not_call', updated_at_ms = ?"
                 " WHERE to_number = ? AND state = 'pending'", (now, e164))
    scheduled = [r[0] for r in conn.execute(
        "SELECT schedule_id FROM scheduled_calls WHERE to_number = ? AND state = 'scheduled'", (e164,)).fetchall()]
    conn.execute("UPDATE scheduled_calls SET state = 'cancelled', code = 'do_not_call', updated_at_ms = ?"
                 " WHERE to_number = ? AND state = 'scheduled'", (now, e164))
    return Cancelled(tasks, scheduled)


class OutreachMixin(StoreBase):
    # --- do-not-call ----------------------------------------------------------------------------

    async def add_do_not_call(
        self, e164: str, *, reason: str, source: str, added_by: str, call_id: str | None = None,
        cancel_pending: bool = True, now_ms: int | None = None,
    ) -> tuple[DncEntry, bool, Cancelled]:
        """List a number (E.164) and, in the same transaction, cancel its pending batch tasks and scheduled calls.
        Returns (the entry, whether it was added now, what was cancelled); an existing entry is kept as it is."""
        now = now_or(now_ms)

        def op(conn: sqlite3.Connection) -> tuple[DncEntry, bool, Cancelled]:
            cur = conn.execute(
                "INSERT INTO do_not_call (e164, reason, source, added_by, call_id, created_at_ms)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (e164) DO NOTHING",
                (e164, reason, source, added_by, call_id, now))
            cancelled = _cancel_pending(conn, e164, now) if cancel_pending else Cancelled([], [])
            entry = _dnc(conn, e164)
            assert entry is not None
            return entry, cur.rowcount == 1, cancelled

        return await self._write(op)

    async def add_do_not_call_many(
        self, entries: Iterable[tuple[str, str]], *, source: str, added_by: str, now_ms: int | None = None,
    ) -> tuple[int, Cancelled]:
        """List many (e164, reason) pairs in one transaction; returns (how many were new, what was cancelled)."""
        now = now_or(now_ms)
        rows = list(entries)

        def op(conn: sqlite3.Connection) -> tuple[int, Cancelled]:
            added = 0
            tasks: list[tuple[str, int]] = []
            scheduled: list[str] = []
            for e164, reason in rows:
                cur = conn.execute(
                    "INSERT INTO do_not_call (e164, reason, source, added_by, call_id, created_at_ms)"
                    " VALUES (?, ?, ?, ?, NULL, ?) ON CONFLICT (e164) DO NOTHING",
                    (e164, reason, source, added_by, now))
                added += cur.rowcount == 1
                c = _cancel_pending(conn, e164, now)
                tasks += c.batch_tasks
                scheduled += c.scheduled
            return added, Cancelled(tasks, scheduled)

        return await self._write(op)

    async def remove_do_not_call(self, e164: str) -> DncEntry | None:
        """Delete an entry; returns what was deleted (None: it was not listed)."""
        def op(conn: sqlite3.Connection) -> DncEntry | None:
            entry = _dnc(conn, e164)
            if entry is not None:
                conn.execute("DELETE FROM do_not_call WHERE e164 = ?", (e164,))
            return entry

        return await self._write(op)

    async def get_do_not_call(self, e164: str) -> DncEntry | None:
        return await self._read(lambda c: _dnc(c, e164))

    async def list_do_not_call(self, *, limit: int = 100, offset: int = 0,
                               source: str | None = None) -> tuple[list[DncEntry], int]:
        """A page of entries, newest first, and the total count."""
        where, args = ("WHERE source = ?", [source]) if source else ("", [])

        def fn(conn: sqlite3.Connection) -> tuple[list[DncEntry], int]:
            total = conn.execute(f"SELECT COUNT(*) FROM do_not_call {where}", args).fetchone()[0]
            rows = conn.execute(f"SELECT * FROM do_not_call {where} ORDER BY created_at_ms DESC, e164"
                                " LIMIT ? OFFSET ?", [*args, limit, offset]).fetchall()
            return [DncEntry.from_row(r) for r in rows], int(total)

        return await self._read(fn)

    # --- spend ----------------------------------------------------------------------------------

    async def record_call_cost(self, call_id: str, *, cost_mc: int | None, agent_id: str | None) -> int:
        """Write a call's reported cost (and agent) onto its attempt; returns the rows changed."""
        return await self._write(lambda c: c.execute(
            "UPDATE attempts SET cost_mc = COALESCE(?, cost_mc), agent_id = COALESCE(agent_id, ?)"
            " WHERE call_id = ?", (cost_mc, agent_id, call_id)).rowcount)

    async def spend_today(self, *, now_ms: int | None = None) -> tuple[int, int]:
        now = now_or(now_ms)
        return await self._read(lambda c: spend_today(c, now))

    async def spend_breakdown(self, *, now_ms: int | None = None) -> list[SpendRow]:
        """Today's (UTC day) calls by from-number and agent: calls, reported cost, calls without a cost yet."""
        now = now_or(now_ms)
        sql = ("SELECT from_number, agent_id, COUNT(*), COALESCE(SUM(cost_mc), 0),"
               " COALESCE(SUM(CASE WHEN cost_mc IS NULL AND state IN ('pending', 'dialing', 'unknown', 'placed')"
               " THEN 1 ELSE 0 END), 0) FROM attempts"
               " WHERE created_at_ms >= ? AND NOT (state = 'failed' AND dialed_at_ms IS NULL)"
               " GROUP BY from_number, agent_id ORDER BY from_number, agent_id")
        return await self._read(lambda c: [SpendRow(r[0], r[1], int(r[2]), int(r[3]), int(r[4]))
                                           for r in c.execute(sql, (now - now % DAY_MS,)).fetchall()])

    # --- caller-ID pools ------------------------------------------------------------------------

    async def caller_ids(self, to_numbers: Iterable[str]) -> dict[str, str]:
        """The sticky caller ID of each callee that has one."""
        wanted = list(dict.fromkeys(to_numbers))

        def fn(conn: sqlite3.Connection) -> dict[str, str]:
            out: dict[str, str] = {}
            for i in range(0, len(wanted), 500):
                chunk = wanted[i:i + 500]
                sql = f"SELECT to_number, from_number FROM caller_ids WHERE to_number IN ({','.join('?' * len(chunk))})"
                out.update({r[0]: r[1] for r in conn.execute(sql, chunk)})
            return out

        return await self._read(fn)

    async def set_caller_ids(self, pairs: Iterable[tuple[str, str]], *, now_ms: int | None = None) -> None:
        """Remember (to_number, from_number) pairs: the next pool containing that number gives it again."""
        now = now_or(now_ms)
        rows = [(to, frm, now) for to, frm in pairs]
        await self._write(lambda c: c.executemany(
            "INSERT INTO caller_ids (to_number, from_number, updated_at_ms) VALUES (?, ?, ?)"
            " ON CONFLICT (to_number) DO UPDATE SET from_number = excluded.from_number,"
            " updated_at_ms = excluded.updated_at_ms", rows))

    # --- stale calls ----------------------------------------------------------------------------

    async def open_calls(self, *, created_before_ms: int, limit: int = 500) -> list[tuple[str, str, int]]:
        """(call_id, request_json, created_at_ms) of placed calls with no terminal snapshot, created before the
        cutoff, oldest first: the candidates for the stale check."""
        sql = ("SELECT a.call_id, a.request_json, a.created_at_ms FROM attempts a LEFT JOIN calls c"
               " ON c.call_id = a.call_id WHERE a.state = 'placed' AND a.call_id IS NOT NULL"
               " AND a.created_at_ms < ? AND (c.call_id IS NULL OR c.terminal = 0)"
               " ORDER BY a.created_at_ms LIMIT ?")
        return await self._read(lambda c: [(r[0], r[1], int(r[2])) for r in c.execute(sql, (created_before_ms,
                                                                                             limit))])

    # --- scheduled calls ------------------------------------------------------------------------

    async def create_scheduled(
        self, schedule_id: str, *, to_number: str, from_number: str, request_json: str, idempotency_key: str,
        due_at_ms: int, retry_json: str | None = None, tries: int = 1, batch_id: str | None = None,
        task_idx: int | None = None, retry_of: str | None = None, now_ms: int | None = None,
    ) -> ScheduledCall:
        """Store a call to dial at `due_at_ms` (an existing id is kept as it is: one retry per call)."""
        now = now_or(now_ms)

        def op(conn: sqlite3.Connection) -> ScheduledCall:
            conn.execute(
                "INSERT INTO scheduled_calls (schedule_id, to_number, from_number, request_json, idempotency_key,"
                " due_at_ms, state, retry_json, tries, batch_id, task_idx, retry_of, created_at_ms, updated_at_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, 'scheduled', ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (schedule_id) DO NOTHING",
                (schedule_id, to_number, from_number, request_json, idempotency_key, due_at_ms, retry_json, tries,
                 batch_id, task_idx, retry_of, now, now))
            found = _scheduled(conn, schedule_id)
            assert found is not None
            return found

        return await self._write(op)

    async def set_due(self, schedule_id: str, due_at_ms: int, *, now_ms: int | None = None) -> None:
        """Move a scheduled call's time (it waits for a window)."""
        now = now_or(now_ms)
        await self._write(lambda c: c.execute(
            "UPDATE scheduled_calls SET due_at_ms = ?, updated_at_ms = ? WHERE schedule_id = ? AND state = 'scheduled'",
            (due_at_ms, now, schedule_id)))

    async def scheduled_of_batch(self, batch_id: str) -> list[ScheduledCall]:
        sql = "SELECT * FROM scheduled_calls WHERE batch_id = ? ORDER BY task_idx, tries"
        return await self._read(lambda c: [ScheduledCall.from_row(r) for r in c.execute(sql, (batch_id,))])

    async def cancel_scheduled_of_batch(self, batch_id: str, *, now_ms: int | None = None) -> int:
        now = now_or(now_ms)
        return await self._write(lambda c: c.execute(
            "UPDATE scheduled_calls SET state = 'cancelled', code = 'cancelled', updated_at_ms = ?"
            " WHERE batch_id = ? AND state = 'scheduled'", (now, batch_id)).rowcount)

    async def get_scheduled(self, schedule_id: str) -> ScheduledCall | None:
        return await self._read(lambda c: _scheduled(c, schedule_id))

    async def list_scheduled(self, *, states: tuple[str, ...] = (), limit: int = 100) -> list[ScheduledCall]:
        """Soonest first."""
        where = f"WHERE state IN ({','.join('?' * len(states))})" if states else ""
        sql = f"SELECT * FROM scheduled_calls {where} ORDER BY due_at_ms, schedule_id LIMIT ?"
        return await self._read(lambda c: [ScheduledCall.from_row(r) for r in c.execute(sql, (*states, limit))])

    async def mark_scheduled(
        self, schedule_id: str, state: str, *, code: str | None = None, message: str | None = None,
        attempt_id: str | None = None, call_id: str | None = None, expect: str | None = None,
        now_ms: int | None = None,
    ) -> ScheduledCall | None:
        """Move a scheduled call along (scheduled -> dialing -> placed | failed | refused; scheduled -> cancelled).
        `expect`: only if it is in that state now (a claim); returns None when the claim lost. Raises NotFound."""
        now = now_or(now_ms)

        def op(conn: sqlite3.Connection) -> ScheduledCall | None:
            row = _scheduled(conn, schedule_id)
            if row is None:
                raise NotFound(f"no scheduled call {schedule_id}")
            if (expect is not None and row.state != expect) or state not in _SCHEDULED_NEXT[row.state]:
                return None
            # The state read above is the WHERE guard too: of two replicas claiming one call, one wins.
            cur = conn.execute(
                "UPDATE scheduled_calls SET state = ?, code = COALESCE(?, code), message = COALESCE(?, message),"
                " attempt_id = COALESCE(?, attempt_id), call_id = COALESCE(?, call_id), updated_at_ms = ?"
                " WHERE schedule_id = ? AND state = ?",
                (state, code, message, attempt_id, call_id, now, schedule_id, row.state))
            return _scheduled(conn, schedule_id) if cur.rowcount == 1 else None

        return await self._write(op)
