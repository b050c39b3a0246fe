"""The store's core: opening, closing, and the two doors (`_write`, `_read`) to SQLite or PostgreSQL.

`Store.open(path)` opens the SQLite file at `path` (the embedded default); `Store.open("postgresql://...")`
opens PostgreSQL (`pg.py`). The mixins' SQL runs unchanged on both. A write op may name the lock keys it
needs on PostgreSQL (`locks=`); SQLite ignores them (its one writer serializes every op).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import anyio

from .db import (
    DEFAULT_BUSY_TIMEOUT_MS,
    DEFAULT_MAX_BATCH,
    GroupWriter,
    ReadPool,
    connect,
    is_storage_error,
    unavailable,
)
from .errors import StoreUnavailable
from .pg import PgBackend, is_pg_url, redact
from .schema import migrate, migrate_pg

T = TypeVar("T")


def now_or(now_ms: int | None) -> int:
    """Callers pass time in (tests control it); the wall clock only as a default."""
    return int(time.time() * 1000) if now_ms is None else int(now_ms)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


class StoreBase:
    dialect = "sqlite"
    _pg: PgBackend | None = None

    def __init__(self, path: Path | None, writer: GroupWriter | None, writer_conn: sqlite3.Connection | None,
                 reads: ReadPool | None, *, pg: PgBackend | None = None) -> None:
        self.path = path
        self._writer = writer
        self._writer_conn = writer_conn
        self._reads = reads
        self._pg = pg
        if pg is not None:
            self.dialect = "postgresql"
        # Readers wait for a connection here, in the event loop, instead of parked in worker threads.
        self._read_slots = anyio.CapacityLimiter(reads.size if reads is not None else 1)
        self._closed = False

    @property
    def location(self) -> str:
        """Where the state lives, for logs and the policy resource (no password)."""
        return redact(self._pg.url) if self._pg is not None else str(self.path)

    @classmethod
    async def open(
        cls, path: str | Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        max_batch: int = DEFAULT_MAX_BATCH, read_connections: int = 4,
    ) -> Self:
        """Open (creating or migrating) the database at `path` (a SQLite file) or a `postgresql://` URL;
        raises StoreUnavailable if it cannot."""
        if is_pg_url(path):
            pg = PgBackend(str(path), lock_timeout_ms=busy_timeout_ms, read_connections=max(read_connections, 4))
            await anyio.to_thread.run_sync(pg.open_blocking, migrate_pg)
            return cls(None, None, None, None, pg=pg)
        path = Path(path)

        def _open() -> sqlite3.Connection:
            conn = connect(path, busy_timeout_ms=busy_timeout_ms, writer=True)
            try:
                migrate(conn)
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            conn = await anyio.to_thread.run_sync(_open)
        except sqlite3.Error as exc:
            raise unavailable(exc) from exc
        reads = ReadPool(lambda: connect(path, busy_timeout_ms=busy_timeout_ms, writer=False), read_connections)
        return cls(path, GroupWriter(conn, max_batch=max_batch), conn, reads)

    async def close(self) -> None:
        """Flush queued writes, then close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._pg is not None:
            await anyio.to_thread.run_sync(self._pg.close_blocking)
            return
        await self._writer.close()

        def _close() -> None:
            self._reads.close()
            self._writer_conn.close()

        await anyio.to_thread.run_sync(_close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def write_stats(self) -> tuple[int, int]:
        """(transactions committed or failed, jobs run): jobs / transactions = group-commit factor."""
        if self._pg is not None:
            return self._pg.transactions, self._pg.transactions
        return self._writer.batches, self._writer.jobs

    async def _write(self, op: Callable[[sqlite3.Connection], T], *, solo: bool = False,
                     locks: Sequence[Any] | None = None) -> T:
        """Run `op(conn)` in a committed write transaction. `locks`: the keys this op must hold alone on
        PostgreSQL (strings or tuples; `()` for none beyond the shared store lock; None, the default: the
        whole store, like SQLite's single writer). SQLite ignores them."""
        if self._pg is not None:
            if self._closed:
                raise StoreUnavailable("the store is closed")
            return await self._pg.write(op, locks)  # type: ignore[arg-type]
        return await self._writer.submit(op, solo=solo)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        if self._pg is not None:
            return await self._pg.read(fn)  # type: ignore[arg-type]
        try:
            return await anyio.to_thread.run_sync(self._reads.run, fn, limiter=self._read_slots)
        except sqlite3.Error as exc:
            if is_storage_error(exc):
                raise unavailable(exc) from exc
            raise

    async def integrity_check(self) -> str:
        """`PRAGMA integrity_check`: "ok" when the file is sound (PostgreSQL: "ok" when it answers)."""
        if self._pg is not None:
            rows = await self._read(lambda c: c.execute("SELECT 'ok'").fetchall())
            return str(rows[0][0])
        rows = await self._read(lambda c: c.execute("PRAGMA integrity_check").fetchall())
        return "\n".join(str(r[0]) for r in rows)
