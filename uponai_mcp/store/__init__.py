"""SQLite persistence: attempts ledger, audit, confirmations, webhook events and call snapshots,
batches, settings. Knows SQL and nothing about MCP. See `store.py` for the entry point."""

from .calls import dedupe_key, normalize
from .errors import (
    AlreadyExists,
    ConfirmationRejected,
    IdempotencyConflict,
    InvalidTransition,
    NotFound,
    ReservationRefused,
    StoreError,
    StoreUnavailable,
)
from .misc import hash_token
from .rows import (
    ATTEMPT_STATES,
    BATCH_STATUSES,
    TASK_STATES,
    Attempt,
    AuditEntry,
    Batch,
    BatchTask,
    CallRecord,
    Confirmation,
    IngestResult,
    StoredEvent,
)
from .schema import SCHEMA_VERSION
from .store import Store

__all__ = [
    "ATTEMPT_STATES", "BATCH_STATUSES", "SCHEMA_VERSION", "TASK_STATES",
    "AlreadyExists", "Attempt", "AuditEntry", "Batch", "BatchTask", "CallRecord", "Confirmation",
    "ConfirmationRejected", "IdempotencyConflict", "IngestResult", "InvalidTransition", "NotFound", "ReservationRefused", "Store",
    "StoreError", "StoreUnavailable", "StoredEvent", "dedupe_key", "hash_token", "normalize",
]
