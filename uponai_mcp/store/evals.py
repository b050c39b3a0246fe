"""Evaluation runs and their per-item results (uponai-mcp eval, run_eval).

Kept beside the Store rather than in it: `EvalRuns(store)` uses the store's writer and readers; its tables come
with the schema (migration v5).
An item is one case x repeat x variant; its key is `<case>:<repeat>:<variant>` (indexes).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from .base import dumps, now_or
from .errors import NotFound
from .store import Store

RUN_STATUSES = ("running", "completed", "interrupted", "failed")



@dataclass(frozen=True)
class EvalRunRow:
    run_id: str
    name: str
    status: str
    suite: dict[str, Any]
    options: dict[str, Any]
    total: int
    summary: dict[str, Any] | None
    created_at_ms: int
    updated_at_ms: int
    scored: int = 0
    passed: int = 0

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> EvalRunRow:
        return cls(row["run_id"], row["name"], row["status"], json.loads(row["suite_json"]),
                   json.loads(row["options_json"]), row["total"],
                   json.loads(row["summary_json"]) if row["summary_json"] else None,
                   row["created_at_ms"], row["updated_at_ms"], row["scored"] or 0, row["passed"] or 0)


_RUN_SQL = ("SELECT r.*, (SELECT COUNT(*) FROM eval_results e WHERE e.run_id = r.run_id) AS scored,"
            " (SELECT COUNT(*) FROM eval_results e WHERE e.run_id = r.run_id AND e.passed = 1) AS passed"
            " FROM eval_runs r")


class EvalRuns:
    def __init__(self, store: Store) -> None:
        self.store = store


    async def create(self, run_id: str, *, name: str, suite: dict[str, Any], options: dict[str, Any], total: int,
                     now_ms: int | None = None) -> EvalRunRow:
        now = now_or(now_ms)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO eval_runs (run_id, name, status, suite_json, options_json, total,"
                         " created_at_ms, updated_at_ms) VALUES (?, ?, 'running', ?, ?, ?, ?, ?)",
                         (run_id, name, dumps(suite), dumps(options), total, now, now))

        await self.store._write(op)
        row = await self.get(run_id)
        assert row is not None
        return row

    async def get(self, run_id: str) -> EvalRunRow | None:

        def fn(conn: sqlite3.Connection) -> EvalRunRow | None:
            row = conn.execute(_RUN_SQL + " WHERE r.run_id = ?", (run_id,)).fetchone()
            return None if row is None else EvalRunRow.from_row(row)

        return await self.store._read(fn)

    async def list(self, limit: int = 20) -> list[EvalRunRow]:
        sql = _RUN_SQL + " ORDER BY r.created_at_ms DESC, r.run_id LIMIT ?"
        return await self.store._read(lambda c: [EvalRunRow.from_row(r) for r in c.execute(sql, (limit,))])

    async def set_status(self, run_id: str, status: str, *, summary: dict[str, Any] | None = None,
                         now_ms: int | None = None) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown eval run status {status!r}")
        now = now_or(now_ms)
        summary_json = None if summary is None else dumps(summary)

        def op(conn: sqlite3.Connection) -> None:
            cur = conn.execute("UPDATE eval_runs SET status = ?, summary_json = COALESCE(?, summary_json),"
                               " updated_at_ms = ? WHERE run_id = ?", (status, summary_json, now, run_id))
            if cur.rowcount != 1:
                raise NotFound(f"no eval run {run_id}")

        await self.store._write(op)

    async def save_result(self, run_id: str, item_key: str, *, call_id: str | None, passed: bool,
                          result: dict[str, Any], now_ms: int | None = None) -> None:
        """Record an item's scored result (last write wins: a resumed run re-scores the same call)."""
        now = now_or(now_ms)
        body = dumps(result)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO eval_results (run_id, item_key, call_id, passed, result_json, updated_at_ms)"
                         " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, item_key) DO UPDATE SET"
                         " call_id = excluded.call_id, passed = excluded.passed,"
                         " result_json = excluded.result_json, updated_at_ms = excluded.updated_at_ms",
                         (run_id, item_key, call_id, int(passed), body, now))
            conn.execute("UPDATE eval_runs SET updated_at_ms = ? WHERE run_id = ?", (now, run_id))

        await self.store._write(op)

    async def call_progress(self, call_id: str) -> tuple[str | None, bool, bool] | None:
        """(status, terminal, analyzed) of a stored call without parsing its snapshot: what a waiter polls."""
        sql = "SELECT status, terminal, analyzed FROM calls WHERE call_id = ?"

        def fn(conn: sqlite3.Connection) -> tuple[str | None, bool, bool] | None:
            row = conn.execute(sql, (call_id,)).fetchone()
            return None if row is None else (row[0], bool(row[1]), bool(row[2]))

        return await self.store._read(fn)

    async def results(self, run_id: str) -> dict[str, dict[str, Any]]:
        sql = "SELECT item_key, result_json FROM eval_results WHERE run_id = ?"
        return await self.store._read(
            lambda c: {r["item_key"]: json.loads(r["result_json"]) for r in c.execute(sql, (run_id,))})
