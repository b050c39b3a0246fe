"""Leases: "this replica owns that work until then" (a batch being run, a call being polled).

One row per name: its owner and when the lease expires. `acquire` takes a free or expired lease, or renews
one the caller already holds, in one statement (INSERT ... ON CONFLICT DO UPDATE ... WHERE), so two replicas
can never both believe they hold it. A replica that dies stops renewing; another takes the work over once
the lease has expired. Times are the callers' wall clocks (ms): keep replica clocks in sync (NTP), the TTLs
are seconds.

Kept beside the Store (like `EvalRuns`); the table comes with the schema (migration v5), on SQLite or
PostgreSQL (portable SQL).
"""

from __future__ import annotations

from typing import Any

from .base import now_or
from .store import Store


class Leases:
    def __init__(self, store: Store) -> None:
        self.store = store


    async def acquire(self, name: str, owner: str, ttl_ms: int, *, now_ms: int | None = None) -> bool:
        """Take the lease (free, expired, or ours already) until now + ttl; False when another owner holds it."""
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
        await self.store._write(lambda c: c.execute("DELETE FROM leases WHERE name = ? AND owner = ?",
                                                    (name, owner)), locks=(("lease", name),))

    async def holder(self, name: str, *, now_ms: int | None = None) -> str | None:
        """Who holds the lease now (None: nobody, or it expired)."""
        now = now_or(now_ms)
        row = await self.store._read(lambda c: c.execute(
            "SELECT owner FROM leases WHERE name = ? AND expires_at_ms >= ?", (name, now)).fetchone())
        return None if row is None else row[0]
