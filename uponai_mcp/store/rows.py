"""Plain, frozen records the store returns. Timestamps are ms since the epoch."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

# Attempt states: pending -> dialing -> placed | failed | unknown; unknown -> dialing | placed | failed.
ATTEMPT_STATES = ("pending", "dialing", "placed", "failed", "unknown")
BATCH_STATUSES = ("pending", "running", "paused", "completed", "cancelled")
TASK_STATES = ("pending", "dialing", "placed", "refused", "cancelled", "failed", "unknown")


def _json_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@dataclass(frozen=True)
class Attempt:
    attempt_id: str
    idempotency_key: str | None
    params_hash: str
    request_json: str
    from_number: str
    to_number: str
    scope: str
    source: str
    state: str
    call_id: str | None
    error_code: str | None
    error_message: str | None
    result_json: str | None
    created_at_ms: int
    updated_at_ms: int
    dialed_at_ms: int | None  # first time the request may have left for the platform
    replay: bool = False  # create_attempt returned an earlier attempt with the same key and parameters
    cost_mc: int | None = None  # the platform's call_cost, thousandths of a cent, once reported (v3)
    agent_id: str | None = None  # the agent that took the call, once known (v3)

    @classmethod
    def from_row(cls, row: sqlite3.Row, *, replay: bool = False) -> Attempt:
        return cls(**{k: row[k] for k in row.keys()}, replay=replay)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at_ms: int
    kind: str
    decision: str
    code: str | None
    summary: str
    details: dict[str, Any]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> AuditEntry:
        return cls(row["id"], row["at_ms"], row["kind"], row["decision"], row["code"], row["summary"],
                   json.loads(row["details_json"]))


@dataclass(frozen=True)
class Confirmation:
    token_hash: str
    params_hash: str
    request_json: str
    summary: str
    created_at_ms: int
    expires_at_ms: int
    consumed_at_ms: int | None
    kind: str = "call"
    idempotency_key: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Confirmation:
        return cls(**{k: row[k] for k in row.keys()})


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    call_id: str
    event: str
    source: str  # webhook | poller | api
    received_at_ms: int
    derived: bool  # synthesized here (call_failed), not sent by the platform
    call: dict[str, Any]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> StoredEvent:
        return cls(row["seq"], row["call_id"], row["event"], row["source"], row["received_at_ms"],
                   bool(row["derived"]), json.loads(row["payload_json"]))

    def as_webhook(self) -> dict[str, Any]:
        return {"event": self.event, "call": self.call}


@dataclass(frozen=True)
class CallRecord:
    """A call snapshot with its bookkeeping; `call` is the merged call object."""

    call_id: str
    call: dict[str, Any]
    status: str | None
    terminal: bool
    analyzed: bool
    failed: bool
    last_event: str | None
    last_event_seq: int | None
    created_at_ms: int
    updated_at_ms: int
    terminal_at_ms: int | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> CallRecord:
        return cls(row["call_id"], json.loads(row["snapshot_json"]), row["status"], bool(row["terminal"]),
                   bool(row["analyzed"]), bool(row["failed"]), row["last_event"], row["last_event_seq"],
                   row["created_at_ms"], row["updated_at_ms"], row["terminal_at_ms"])


@dataclass(frozen=True)
class IngestResult:
    stored: bool  # False: a duplicate, nothing changed
    event_seq: int | None
    call_id: str
    derived: list[str] = field(default_factory=list)  # synthesized events stored with it, e.g. ["call_failed"]
    derived_seqs: list[int] = field(default_factory=list)
    status: str | None = None  # snapshot status after the ingest (None for a duplicate)
    changed: bool = False  # the snapshot changed (publish a resource update)


@dataclass(frozen=True)
class Batch:
    batch_id: str
    name: str
    from_number: str
    status: str
    created_at_ms: int
    updated_at_ms: int
    scheduled_at_ms: int | None
    window: Any
    confirm: Any
    total: int
    counts: dict[str, int]  # task state -> number of tasks

    @classmethod
    def from_row(cls, row: sqlite3.Row, counts: dict[str, int]) -> Batch:
        return cls(row["batch_id"], row["name"], row["from_number"], row["status"], row["created_at_ms"],
                   row["updated_at_ms"], row["scheduled_at_ms"], _json_or_none(row["window_json"]),
                   _json_or_none(row["confirm_json"]), sum(counts.values()), counts)


@dataclass(frozen=True)
class BatchTask:
    batch_id: str
    idx: int
    to_number: str
    request_json: str
    state: str
    refusal_code: str | None
    attempt_id: str | None
    call_id: str | None
    final_status: str | None
    updated_at_ms: int

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> BatchTask:
        return cls(**{k: row[k] for k in row.keys()})
