"""Schema, migrated forward one version at a time (one list of statements per version).

The statements are written once, in portable SQL as SQLite reads it. SQLite records the version in
`PRAGMA user_version`; PostgreSQL in a `schema_version` table, with each statement passed through
`pg.translate_ddl` (INTEGER -> BIGINT for ms timestamps, AUTOINCREMENT -> identity). On PostgreSQL the
migration runs under a session advisory lock, so replicas that start together migrate once, in turn.
"""

from __future__ import annotations

import sqlite3

from .errors import StoreError

_V1 = [
    """CREATE TABLE attempts (
        attempt_id TEXT PRIMARY KEY,
        idempotency_key TEXT UNIQUE,
        params_hash TEXT NOT NULL,
        request_json TEXT NOT NULL,
        from_number TEXT NOT NULL,
        to_number TEXT NOT NULL,
        scope TEXT NOT NULL,
        source TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending','dialing','placed','failed','unknown')),
        call_id TEXT,
        error_code TEXT,
        error_message TEXT,
        result_json TEXT,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        dialed_at_ms INTEGER
    )""",
    "CREATE INDEX attempts_by_created ON attempts (created_at_ms)",
    "CREATE INDEX attempts_by_to ON attempts (to_number, created_at_ms)",
    "CREATE INDEX attempts_by_state ON attempts (state)",
    "CREATE INDEX attempts_by_call ON attempts (call_id) WHERE call_id IS NOT NULL",
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        decision TEXT NOT NULL,
        code TEXT,
        summary TEXT NOT NULL,
        details_json TEXT NOT NULL
    )""",
    """CREATE TABLE confirmations (
        token_hash TEXT PRIMARY KEY,
        params_hash TEXT NOT NULL,
        request_json TEXT NOT NULL,
        summary TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        consumed_at_ms INTEGER
    )""",
    # AUTOINCREMENT: seq never goes back even after pruning, so `events_since(seq)` cursors stay valid.
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        dedupe_key TEXT NOT NULL UNIQUE,
        call_id TEXT NOT NULL,
        event TEXT NOT NULL,
        source TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL,
        derived INTEGER NOT NULL DEFAULT 0,
        payload_json TEXT NOT NULL
    )""",
    "CREATE INDEX events_by_call ON events (call_id, seq)",
    """CREATE TABLE calls (
        call_id TEXT PRIMARY KEY,
        status TEXT,
        terminal INTEGER NOT NULL DEFAULT 0,
        analyzed INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        snapshot_json TEXT NOT NULL,
        last_event TEXT,
        last_event_seq INTEGER,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        terminal_at_ms INTEGER
    )""",
    "CREATE INDEX calls_by_updated ON calls (updated_at_ms)",
    """CREATE TABLE batches (
        batch_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        from_number TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending','running','paused','completed','cancelled')),
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        scheduled_at_ms INTEGER,
        window_json TEXT,
        confirm_json TEXT
    )""",
    "CREATE INDEX batches_by_status ON batches (status)",
    """CREATE TABLE batch_tasks (
        batch_id TEXT NOT NULL REFERENCES batches (batch_id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        to_number TEXT NOT NULL,
        request_json TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN
            ('pending','dialing','placed','refused','cancelled','failed','unknown')),
        refusal_code TEXT,
        attempt_id TEXT,
        call_id TEXT,
        final_status TEXT,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (batch_id, idx)
    )""",
    "CREATE INDEX batch_tasks_by_state ON batch_tasks (batch_id, state, idx)",
    """CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value_json TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL
    )""",
]

# v2: a confirmation knows what it confirms (call, batch, eval) and the idempotency key it is bound to.
_V2 = [
    "ALTER TABLE confirmations ADD COLUMN kind TEXT NOT NULL DEFAULT 'call'",
    "ALTER TABLE confirmations ADD COLUMN idempotency_key TEXT",
]

# v3: outreach (issue 12): the do-not-call list, each attempt's reported cost (spend cap) and agent, scheduled
# calls, and batch retries. Portable SQL (SQLite and PostgreSQL): text ids, BIGINT ms timestamps, costs as
# integer thousandths of a cent.
_V3 = [
    """CREATE TABLE do_not_call (
        e164 TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        source TEXT NOT NULL,
        added_by TEXT NOT NULL,
        call_id TEXT,
        created_at_ms BIGINT NOT NULL
    )""",
    "ALTER TABLE attempts ADD COLUMN cost_mc BIGINT",
    "ALTER TABLE attempts ADD COLUMN agent_id TEXT",
    """CREATE TABLE scheduled_calls (
        schedule_id TEXT PRIMARY KEY,
        to_number TEXT NOT NULL,
        from_number TEXT NOT NULL,
        request_json TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        due_at_ms BIGINT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('scheduled','dialing','placed','refused','cancelled','failed')),
        code TEXT,
        message TEXT,
        attempt_id TEXT,
        call_id TEXT,
        retry_json TEXT,
        tries INTEGER NOT NULL DEFAULT 1,
        batch_id TEXT,
        task_idx INTEGER,
        retry_of TEXT,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    )""",
    "CREATE INDEX scheduled_calls_by_batch ON scheduled_calls (batch_id, task_idx)",
    "CREATE INDEX scheduled_calls_by_due ON scheduled_calls (state, due_at_ms)",
    "CREATE INDEX scheduled_calls_by_to ON scheduled_calls (to_number, state)",
    "CREATE INDEX batch_tasks_by_to ON batch_tasks (to_number, state)",
]

# v4: caller-ID pools: the number that last called each callee from a pool (sticky caller ID).
_V4 = [
    """CREATE TABLE caller_ids (
        to_number TEXT PRIMARY KEY,
        from_number TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    )""",
]

# v5: evaluation runs and their scored results; leases (which replica owns a batch or polls a call); the shared
# pacer's state per scope (used on PostgreSQL only). IF NOT EXISTS: databases from before v5 may have created
# these tables on first use.
_V5 = [
    """CREATE TABLE IF NOT EXISTS eval_runs (
        run_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running','completed','interrupted','failed')),
        suite_json TEXT NOT NULL,
        options_json TEXT NOT NULL,
        total INTEGER NOT NULL,
        summary_json TEXT,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS eval_runs_by_created ON eval_runs (created_at_ms)",
    """CREATE TABLE IF NOT EXISTS eval_results (
        run_id TEXT NOT NULL REFERENCES eval_runs (run_id) ON DELETE CASCADE,
        item_key TEXT NOT NULL,
        call_id TEXT,
        passed INTEGER,
        result_json TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (run_id, item_key)
    )""",
    """CREATE TABLE IF NOT EXISTS leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS pacer_scopes (
        scope TEXT PRIMARY KEY,
        tat_us BIGINT NOT NULL,
        paused_until_us BIGINT NOT NULL,
        cps BIGINT NOT NULL,
        pending_cps BIGINT,
        pending_at_us BIGINT,
        concurrency_limit BIGINT,
        explicit BIGINT NOT NULL DEFAULT 0,
        updated_at_ms BIGINT NOT NULL
    )""",
]

MIGRATIONS: list[list[str]] = [_V1, _V2, _V3, _V4, _V5]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION in one transaction; returns the version found."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise StoreError(f"database schema v{found} is newer than this program (v{SCHEMA_VERSION})")
        for statements in MIGRATIONS[found:]:
            for sql in statements:
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")  # transactional, like the DDL
        conn.execute("COMMIT")
        return found
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def migrate_pg(conn) -> int:
    """PostgreSQL: bring the schema to SCHEMA_VERSION, each version in its own transaction, holding
    `pg_advisory_lock(MIGRATION_LOCK)` so concurrent starters wait and then find nothing to do.
    `conn` is a psycopg connection in autocommit mode. Returns the version found."""
    from .pg import MIGRATION_LOCK, lock_key, translate_ddl

    key = lock_key(MIGRATION_LOCK)
    conn.execute("SELECT pg_advisory_lock(%s)", (key,))
    try:
        with conn.transaction():
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        found = 0 if row is None else int(row[0])
        if found > SCHEMA_VERSION:
            raise StoreError(f"database schema v{found} is newer than this program (v{SCHEMA_VERSION})")
        for version in range(found + 1, SCHEMA_VERSION + 1):
            with conn.transaction():
                for sql in MIGRATIONS[version - 1]:
                    conn.execute(translate_ddl(sql))
                conn.execute("UPDATE schema_version SET version = %s", (version,))
        return found
    finally:
        try:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except Exception:  # noqa: BLE001 - a lost connection released the lock already
            pass
