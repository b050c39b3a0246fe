"""Webhook events and call snapshots.

An ingest is one job of the group writer, so all of this is one transaction: insert the event under
its dedupe key (a duplicate stops here), merge the snapshot monotonically (`callstate.py`), store a
synthesized `call_failed` under (call_id, "call_failed") when the merge says so, commit.

Dedupe keys (the platform sends no event id), JSON arrays:
  call_started, call_ended, call_failed: [call_id, event]
  call_analyzed:                        [call_id, event, sha256(call_analysis)]  (analysis can re-run)
  any other event:                      [call_id, event, sha256(event + call)]
Digests are over canonical JSON with nulls dropped, so a model dump and a raw dict of the same
payload agree.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from uponai_mcp.callstate import (
    ANALYZED,
    ENDED,
    FAILED,
    STARTED,
    derive_failed,
    has_analysis,
    is_failed,
    is_terminal,
    merge_snapshot,
)
from uponai_mcp.models import Call, WebhookEvent

from .base import StoreBase, dumps, now_or
from .rows import CallRecord, IngestResult, StoredEvent

EventInput = WebhookEvent | tuple[str, Mapping[str, Any] | Call] | Mapping[str, Any]
_KEYED_BY_NAME = frozenset({STARTED, ENDED, FAILED})


# --- pure helpers ---------------------------------------------------------------------------------


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_nulls(v) for v in value]
    return value


def digest(value: Any) -> str:
    text = json.dumps(_drop_nulls(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def dedupe_key(event: str, call: Mapping[str, Any]) -> str:
    parts = [call["call_id"], event]
    if event == ANALYZED:
        parts.append(digest(call.get("call_analysis")))
    elif event not in _KEYED_BY_NAME:
        parts.append(digest({"event": event, "call": call}))
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=False)


def _call_dict(call: Any) -> dict[str, Any]:
    if isinstance(call, Call):
        return call.model_dump(mode="json", exclude_none=True)
    if not isinstance(call, Mapping) or not isinstance(call.get("call_id"), str) or not call["call_id"]:
        raise ValueError("a call needs a non-empty string call_id")
    return dict(call)


def normalize(item: EventInput) -> tuple[str, dict[str, Any]]:
    """(event name, call dict) from a WebhookEvent, an (event, call) pair, or a {"event", "call"} dict."""
    if isinstance(item, WebhookEvent):
        name, call = item.event, item.call
    elif isinstance(item, Mapping):
        name, call = item.get("event"), item.get("call")
    else:
        name, call = item
    name = str(getattr(name, "value", name) or "")
    if not name:
        raise ValueError("an event needs a name")
    return name, _call_dict(call)


# --- SQL, inside the writer's transaction ------------------------------------------------------


def _insert_event(conn: sqlite3.Connection, event: str, call: dict[str, Any], source: str, at: int,
                  *, derived: bool) -> int | None:
    """The new event's seq, or None when its dedupe key exists (a duplicate)."""
    rows = conn.execute(
        "INSERT INTO events (dedupe_key, call_id, event, source, received_at_ms, derived, payload_json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING RETURNING seq",
        (dedupe_key(event, call), call["call_id"], event, source, at, int(derived), dumps(call)),
    ).fetchall()
    return rows[0][0] if rows else None


def _load(conn: sqlite3.Connection, call_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM calls WHERE call_id = ?", (call_id,)).fetchone()


def _save(conn: sqlite3.Connection, call: dict[str, Any], *, analyzed: bool, last: tuple[str | None, int | None],
          at: int) -> None:
    terminal = is_terminal(call)
    conn.execute(
        "INSERT INTO calls (call_id, status, terminal, analyzed, failed, snapshot_json, last_event, last_event_seq,"
        " created_at_ms, updated_at_ms, terminal_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (call_id) DO UPDATE SET status = excluded.status, terminal = excluded.terminal,"
        " analyzed = excluded.analyzed, failed = excluded.failed, snapshot_json = excluded.snapshot_json,"
        " last_event = excluded.last_event, last_event_seq = excluded.last_event_seq,"
        " updated_at_ms = CASE WHEN excluded.updated_at_ms > calls.updated_at_ms"
        " THEN excluded.updated_at_ms ELSE calls.updated_at_ms END,"
        " terminal_at_ms = COALESCE(calls.terminal_at_ms, excluded.terminal_at_ms)",
        (call["call_id"], call.get("call_status"), int(terminal), int(analyzed), int(is_failed(call)), dumps(call),
         last[0], last[1], at, at, at if terminal else None),
    )


def _apply(conn: sqlite3.Connection, event: str | None, call: dict[str, Any], source: str, at: int,
           seq: int | None) -> IngestResult:
    """Merge one input into the snapshot (and derive call_failed); `seq` is its stored event, if any."""
    call_id = call["call_id"]
    row = _load(conn, call_id)
    old = json.loads(row["snapshot_json"]) if row else None
    new = merge_snapshot(old, event, call)
    derived_seq = None
    if derive_failed(old, new, event):
        derived_seq = _insert_event(conn, FAILED, new, source, at, derived=True)
    analyzed = bool(row and row["analyzed"]) or event == ANALYZED or has_analysis(new)
    changed = new != old or analyzed != bool(row and row["analyzed"])
    if derived_seq is not None:
        last = (FAILED, derived_seq)
    elif seq is not None:
        last = (event, seq)
    else:
        last = (row["last_event"], row["last_event_seq"]) if row else (None, None)
    if changed or seq is not None or derived_seq is not None:
        _save(conn, new, analyzed=analyzed, last=last, at=at)
    derived = [FAILED] if derived_seq is not None else []
    return IngestResult(seq is not None, seq, call_id, derived, [derived_seq] if derived_seq else [],
                        new.get("call_status"), changed)


def _ingest(conn: sqlite3.Connection, event: str, call: dict[str, Any], source: str, at: int,
            *, derived: bool = False) -> IngestResult:
    seq = _insert_event(conn, event, call, source, at, derived=derived)
    if seq is None:
        return IngestResult(False, None, call["call_id"])
    return _apply(conn, event, call, source, at, seq)


def _failed_create_call(conn: sqlite3.Connection, attempt_id: str, error: str | None, error_code: str | None,
                        request_json: str | None) -> dict[str, Any]:
    """A call object for a create-call error: there is no platform call, so the id is synthetic."""
    att = conn.execute("SELECT * FROM attempts WHERE attempt_id = ?", (attempt_id,)).fetchone()
    try:
        req = json.loads(request_json or (att["request_json"] if att else None) or "{}")
    except ValueError:
        req = {}
    call = {
        "call_id": f"attempt:{attempt_id}",
        "call_status": "error",
        "direction": "outbound",
        "agent_id": req.get("override_agent_id"),
        "from_number": att["from_number"] if att else req.get("from_number"),
        "to_number": att["to_number"] if att else req.get("to_number"),
        "metadata": {**(req.get("metadata") or {}), "attempt_id": attempt_id},
        "create_error": {"code": error_code or (att["error_code"] if att else None),
                         "message": error or (att["error_message"] if att else None)},
    }
    return {k: v for k, v in call.items() if v is not None}


class CallsMixin(StoreBase):
    # --- writes ---------------------------------------------------------------------------------

    async def ingest_event(
        self, item: EventInput, *, received_at_ms: int | None = None, source: str = "webhook",
        group: bool = True,
    ) -> IngestResult:
        """Store one event and update its call, committed on return (group-committed with concurrent
        callers). `group=False` commits it alone (the per-event-fsync ceiling, for benchmarks).
        Raises ValueError for an input without event name or call_id, StoreUnavailable on storage errors."""
        event, call = normalize(item)
        at = now_or(received_at_ms)
        return await self._write(lambda conn: _ingest(conn, event, call, source, at), solo=not group,
                                 locks=(("call", call["call_id"]),))

    async def ingest_event_direct(
        self, item: EventInput, *, received_at_ms: int | None = None, source: str = "webhook",
    ) -> IngestResult:
        """`ingest_event` in a transaction of its own: same inserts, same durability, one fsync each."""
        return await self.ingest_event(item, received_at_ms=received_at_ms, source=source, group=False)

    async def ingest_many(
        self, items: Iterable[EventInput], *, received_at_ms: int | None = None, source: str = "webhook",
    ) -> list[IngestResult]:
        """Several events in one transaction, in order; all or nothing."""
        parsed = [normalize(item) for item in items]
        at = now_or(received_at_ms)
        return await self._write(lambda conn: [_ingest(conn, e, c, source, at) for e, c in parsed],
                                 locks=[("call", c["call_id"]) for _, c in parsed])

    async def upsert_call_from_api(
        self, call: Mapping[str, Any] | Call, now_ms: int | None = None, *, source: str = "api",
    ) -> IngestResult:
        """Merge a get-call result into the snapshot with the same monotonic merge (no event row is
        stored; a failed call still yields its one call_failed). `stored` is always False."""
        data, at = _call_dict(call), now_or(now_ms)
        return await self._write(lambda conn: _apply(conn, None, data, source, at, None),
                                 locks=(("call", data["call_id"]),))

    async def record_failed_create(
        self, attempt_id: str, *, error: str | None = None, error_code: str | None = None,
        request_json: str | None = None, now_ms: int | None = None,
    ) -> IngestResult:
        """A create-call error as a `call_failed` event for the synthetic call `attempt:<id>`, once per
        attempt. Numbers and the error default to the attempt row; it does not change the attempt."""
        at = now_or(now_ms)

        def op(conn: sqlite3.Connection) -> IngestResult:
            call = _failed_create_call(conn, attempt_id, error, error_code, request_json)
            return _ingest(conn, FAILED, call, "api", at, derived=True)

        return await self._write(op, locks=(("call", f"attempt:{attempt_id}"),))

    # --- reads ----------------------------------------------------------------------------------

    async def get_call_record(self, call_id: str) -> CallRecord | None:
        def fn(conn: sqlite3.Connection) -> CallRecord | None:
            row = _load(conn, call_id)
            return None if row is None else CallRecord.from_row(row)

        return await self._read(fn)

    async def get_call_snapshot(self, call_id: str) -> dict[str, Any] | None:
        """The merged call object (a dict shaped like `models.Call`), or None."""
        record = await self.get_call_record(call_id)
        return None if record is None else record.call

    async def list_call_snapshots(self, limit: int = 50, *, non_terminal_only: bool = False) -> list[CallRecord]:
        """Most recently updated first."""
        where = "WHERE terminal = 0" if non_terminal_only else ""
        sql = f"SELECT * FROM calls {where} ORDER BY updated_at_ms DESC, call_id LIMIT ?"
        return await self._read(lambda c: [CallRecord.from_row(r) for r in c.execute(sql, (limit,))])

    async def call_events(self, call_id: str) -> list[StoredEvent]:
        """A call's events in arrival order (seq)."""
        sql = "SELECT * FROM events WHERE call_id = ? ORDER BY seq"
        return await self._read(lambda c: [StoredEvent.from_row(r) for r in c.execute(sql, (call_id,))])

    async def recent_events(self, limit: int = 50) -> list[StoredEvent]:
        """Newest first."""
        sql = "SELECT * FROM events ORDER BY seq DESC LIMIT ?"
        return await self._read(lambda c: [StoredEvent.from_row(r) for r in c.execute(sql, (limit,))])

    async def events_since(self, seq: int, limit: int = 1000) -> list[StoredEvent]:
        """Events with a seq above `seq`, oldest first (a feed cursor)."""
        sql = "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
        return await self._read(lambda c: [StoredEvent.from_row(r) for r in c.execute(sql, (seq, limit))])

    async def tracked_non_terminal_calls(
        self, *, now_ms: int | None = None, analysis_grace_ms: int = 15 * 60_000,
        max_age_ms: int = 2 * 86_400_000, limit: int = 500,
    ) -> list[str]:
        """Call ids the poller should look at: calls of our placed attempts (created within `max_age_ms`)
        with no snapshot, a non-terminal one, or a terminal one still waiting for its analysis
        (ended less than `analysis_grace_ms` ago). Oldest attempt first."""
        now = now_or(now_ms)
        sql = (
            "SELECT a.call_id FROM attempts a LEFT JOIN calls c ON c.call_id = a.call_id"
            " WHERE a.state = 'placed' AND a.call_id IS NOT NULL AND a.created_at_ms >= ?"
            " AND (c.call_id IS NULL OR c.terminal = 0 OR (c.analyzed = 0 AND c.terminal_at_ms >= ?))"
            " GROUP BY a.call_id ORDER BY MIN(a.created_at_ms) LIMIT ?"
        )
        args = (now - max_age_ms, now - analysis_grace_ms, limit)
        return await self._read(lambda c: [r[0] for r in c.execute(sql, args)])
