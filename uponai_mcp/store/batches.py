"""Batches of calls: a batch row plus one task per destination, created in one transaction.

Batch status: pending -> running <-> paused -> completed | cancelled (pending/paused may be cancelled).
Task state:   pending -> dialing | refused | cancelled | failed; dialing -> placed | failed | unknown;
              unknown -> placed | failed; placed -> placed (to record final_status).
A runner claims a task by marking it dialing; that fails if `cancel_batch` got there first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from .base import StoreBase, dumps, now_or
from .errors import AlreadyExists, InvalidTransition, NotFound
from .rows import BATCH_STATUSES, TASK_STATES, Batch, BatchTask

_BATCH_NEXT = {
    "pending": {"running", "paused", "cancelled"},
    "running": {"paused", "completed", "cancelled"},
    "paused": {"running", "cancelled"},
    "completed": set(),
    "cancelled": set(),
}
_TASK_NEXT = {
    "pending": {"dialing", "refused", "cancelled", "failed"},
    "dialing": {"placed", "failed", "unknown"},
    "unknown": {"placed", "failed"},
    "placed": {"placed"},
    "refused": set(),
    "cancelled": set(),
    "failed": set(),
}


def _batch(conn: sqlite3.Connection, batch_id: str) -> Batch | None:
    row = conn.execute("SELECT * FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
    if row is None:
        return None
    counts = {r[0]: r[1] for r in conn.execute(
        "SELECT state, COUNT(*) FROM batch_tasks WHERE batch_id = ? GROUP BY state", (batch_id,))}
    return Batch.from_row(row, counts)


def _require(conn: sqlite3.Connection, batch_id: str) -> Batch:
    batch = _batch(conn, batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id}")
    return batch


def _task(conn: sqlite3.Connection, batch_id: str, idx: int) -> BatchTask | None:
    row = conn.execute("SELECT * FROM batch_tasks WHERE batch_id = ? AND idx = ?", (batch_id, idx)).fetchone()
    return None if row is None else BatchTask.from_row(row)


def _task_rows(tasks: Iterable[tuple[str, str]], batch_id: str, now: int) -> list[tuple[Any, ...]]:
    return [(batch_id, idx, to_number, request_json, now) for idx, (to_number, request_json) in enumerate(tasks)]


class BatchesMixin(StoreBase):
    async def create_batch(
        self, batch_id: str, *, name: str, from_number: str, tasks: Iterable[tuple[str, str]],
        scheduled_at_ms: int | None = None, window: Any = None, confirm: Any = None,
        status: str = "pending", now_ms: int | None = None,
    ) -> Batch:
        """The batch and its tasks (pairs of to_number, request_json; idx = position) in one transaction."""
        if status not in BATCH_STATUSES:
            raise ValueError(f"unknown batch status {status!r}")
        now = now_or(now_ms)
        rows = _task_rows(tasks, batch_id, now)
        window_json = None if window is None else dumps(window)
        confirm_json = None if confirm is None else dumps(confirm)

        def op(conn: sqlite3.Connection) -> Batch:
            cur = conn.execute(
                "INSERT INTO batches (batch_id, name, from_number, status, created_at_ms, updated_at_ms,"
                " scheduled_at_ms, window_json, confirm_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (batch_id) DO NOTHING",
                (batch_id, name, from_number, status, now, now, scheduled_at_ms, window_json, confirm_json),
            )
            if cur.rowcount != 1:
                raise AlreadyExists(f"batch {batch_id} exists")
            conn.executemany(
                "INSERT INTO batch_tasks (batch_id, idx, to_number, request_json, state, updated_at_ms)"
                " VALUES (?, ?, ?, ?, 'pending', ?)", rows)
            return _batch(conn, batch_id)

        return await self._write(op, locks=(("batch", batch_id),))

    async def get_batch(self, batch_id: str) -> Batch | None:
        return await self._read(lambda c: _batch(c, batch_id))

    async def list_batches(self, limit: int = 50, *, status: str | None = None) -> list[Batch]:
        """Newest first."""
        where, args = ("WHERE status = ?", (status, limit)) if status else ("", (limit,))
        sql = f"SELECT batch_id FROM batches {where} ORDER BY created_at_ms DESC, batch_id LIMIT ?"
        return await self._read(lambda c: [_batch(c, r[0]) for r in c.execute(sql, args).fetchall()])

    async def batch_tasks(self, batch_id: str) -> list[BatchTask]:
        sql = "SELECT * FROM batch_tasks WHERE batch_id = ? ORDER BY idx"
        return await self._read(lambda c: [BatchTask.from_row(r) for r in c.execute(sql, (batch_id,))])

    async def next_pending_tasks(self, batch_id: str, limit: int = 1) -> list[BatchTask]:
        """The first `limit` pending tasks by idx (read only: claim one by marking it dialing)."""
        sql = "SELECT * FROM batch_tasks WHERE batch_id = ? AND state = 'pending' ORDER BY idx LIMIT ?"
        return await self._read(lambda c: [BatchTask.from_row(r) for r in c.execute(sql, (batch_id, limit))])

    async def mark_task(
        self, batch_id: str, idx: int, state: str, *, refusal_code: str | None = None,
        attempt_id: str | None = None, call_id: str | None = None, final_status: str | None = None,
        now_ms: int | None = None,
    ) -> BatchTask:
        """Move a task along its state machine; raises NotFound / InvalidTransition."""
        if state not in TASK_STATES:
            raise ValueError(f"unknown task state {state!r}")
        now = now_or(now_ms)

        def op(conn: sqlite3.Connection) -> BatchTask:
            task = _task(conn, batch_id, idx)
            if task is None:
                raise NotFound(f"no task {idx} in batch {batch_id}")
            if state not in _TASK_NEXT[task.state]:
                raise InvalidTransition(f"task {batch_id}/{idx}", task.state, state)
            conn.execute(
                "UPDATE batch_tasks SET state = ?, refusal_code = COALESCE(?, refusal_code),"
                " attempt_id = COALESCE(?, attempt_id), call_id = COALESCE(?, call_id),"
                " final_status = COALESCE(?, final_status), updated_at_ms = ? WHERE batch_id = ? AND idx = ?",
                (state, refusal_code, attempt_id, call_id, final_status, now, batch_id, idx),
            )
            return _task(conn, batch_id, idx)

        return await self._write(op, locks=(("batch", batch_id),))

    async def set_batch_status(self, batch_id: str, status: str, *, now_ms: int | None = None) -> Batch:
        """Change a batch's status (same status is a no-op); raises NotFound / InvalidTransition."""
        now = now_or(now_ms)

        def op(conn: sqlite3.Connection) -> Batch:
            batch = _require(conn, batch_id)
            if status == batch.status:
                return batch
            if status not in _BATCH_NEXT[batch.status]:
                raise InvalidTransition(f"batch {batch_id}", batch.status, status)
            conn.execute("UPDATE batches SET status = ?, updated_at_ms = ? WHERE batch_id = ?",
                         (status, now, batch_id))
            return _batch(conn, batch_id)

        return await self._write(op, locks=(("batch", batch_id),))

    async def cancel_batch(self, batch_id: str, *, now_ms: int | None = None) -> int:
        """Cancel every pending task and the batch itself, atomically; tasks already dialing (or done)
        are left alone. Returns how many tasks were cancelled. A completed batch is left as it is."""
        now = now_or(now_ms)

        def op(conn: sqlite3.Connection) -> int:
            if _require(conn, batch_id).status == "completed":
                return 0
            cur = conn.execute("UPDATE batch_tasks SET state = 'cancelled', updated_at_ms = ?"
                               " WHERE batch_id = ? AND state = 'pending'", (now, batch_id))
            conn.execute("UPDATE batches SET status = 'cancelled', updated_at_ms = ? WHERE batch_id = ?",
                         (now, batch_id))
            return cur.rowcount

        return await self._write(op, locks=(("batch", batch_id),))

    async def batches_to_resume(self) -> list[Batch]:
        """After a restart: batches that were running or waiting to start (paused ones wait for a person).
        Oldest first."""
        sql = ("SELECT batch_id FROM batches WHERE status IN ('running', 'pending')"
               " ORDER BY created_at_ms, batch_id")
        return await self._read(lambda c: [_batch(c, r[0]) for r in c.execute(sql).fetchall()])
