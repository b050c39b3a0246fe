"""Leases: "this replica owns that work until then" (a batch being run, a call being polled).

One row per name: its owner and when the lease expires. `acquire` takes a free or expired lease, or renews
one the caller already holds, in one statement (INSERT ... ON CONFLICT DO UPDATE ... WHERE), so two replicas
can never both believe they hold it. A replica that dies stops renewing; another takes the work over once
the lease has expired. Times are the callers' wall clocks (ms): keep replica clocks in sync (NTP), the TTLs
are seconds.

Kept beside the Store (like `EvalRuns`): `Leases(store)` creates its table on first use, on SQLite or
PostgreSQL (portable SQL).
"""

from __future__ import annotations

from typing import Any

import anyio

from .base import now_or
from .store import Store

_DDL = """CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
)"""


class Leases:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._ready = False
        self._lock = anyio.Lock()

    async def _ensure(self) -> None:
        if self._ready:
            return
        async with self._lock:
            if not self._ready:
                await self.store._write(lambda c: c.execute(_DDL), solo=True)
                self._ready = True

    async def acquire(self, name: str, owner: str, ttl_ms: int, *, now_ms: int | None = None) -> bool:
        """Take the lease (free, expired, or ours already) until now + ttl; False when another owner holds it."""
        await self._ensure()
        now = now_or(now_ms)

        def op(conn: Any) -> bool:
            rows = conn.execute(
                "INSERT INTO leases (name, owner, expires_at_ms) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at_ms = excluded.expires_at_ms"
                " WHERE leases.owner = excluded.owner OR leases.expires_at_ms < ?"
                " RETURNING owner", (name, owner, now + int(ttl_ms), now)).fetchall()
            return bool(rows)

        return await self.store._write(op, locks=(("lease", name),))

    async def release(self, name: str, owner: str) -> None:
        await self._ensure()
        await self.store._write(lambda c: c.execute("DELETE FROM leases WHERE name = ? AND owner = ?",
                                                    (name, owner)), locks=(("lease", name),))

    async def holder(self, name: str, *, now_ms: int | None = None) -> str | None:
        """Who holds the lease now (None: nobody, or it expired)."""
        await self._ensure()
        now = now_or(now_ms)
        row = await self.store._read(lambda c: c.execute(
            "SELECT owner FROM leases WHERE name = ? AND expires_at_ms >= ?", (name, now)).fetchone())
        return None if row is None else row[0]
