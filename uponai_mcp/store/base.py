"""The store's core: opening, closing, and the two doors to SQLite (`_write`, `_read`)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
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
from .schema import migrate

T = TypeVar("T")


def now_or(now_ms: int | None) -> int:
    """Callers pass time in (tests control it); the wall clock only as a default."""
    return int(time.time() * 1000) if now_ms is None else int(now_ms)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


class StoreBase:
    def __init__(self, path: Path, writer: GroupWriter, writer_conn: sqlite3.Connection, reads: ReadPool) -> None:
        self.path = path
        self._writer = writer
        self._writer_conn = writer_conn
        self._reads = reads
        # Readers wait for a connection here, in the event loop, instead of parked in worker threads.
        self._read_slots = anyio.CapacityLimiter(reads.size)
        self._closed = False

    @classmethod
    async def open(
        cls, path: str | Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        max_batch: int = DEFAULT_MAX_BATCH, read_connections: int = 4,
    ) -> Self:
        """Open (creating or migrating) the database at `path`; raises StoreUnavailable if it cannot."""
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
        return self._writer.batches, self._writer.jobs

    async def _write(self, op: Callable[[sqlite3.Connection], T], *, solo: bool = False) -> T:
        return await self._writer.submit(op, solo=solo)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        try:
            return await anyio.to_thread.run_sync(self._reads.run, fn, limiter=self._read_slots)
        except sqlite3.Error as exc:
            if is_storage_error(exc):
                raise unavailable(exc) from exc
            raise

    async def integrity_check(self) -> str:
        """`PRAGMA integrity_check`: "ok" when the file is sound."""
        rows = await self._read(lambda c: c.execute("PRAGMA integrity_check").fetchall())
        return "\n".join(str(r[0]) for r in rows)
