"""The pacer's shared state on PostgreSQL: one row per provider scope, booked in one short transaction that
reads the database's clock, so every replica spaces its create-call requests on one schedule.

Row: the theoretical arrival time (`tat_us`), a pause after a platform 429 (`paused_until_us`), the CPS in force
and a pending Twilio raise (`pending_cps` from `pending_at_us`), the custom scope's concurrency limit. Times are
microseconds on the database's clock (`clock_timestamp()`), never a replica's: clock skew between replicas
does not change the spacing. The booking commits with `synchronous_commit = off` (losing the last few ms of a
schedule in a server crash costs nothing: the platform's own window is a second).

Kept beside the Store (like `EvalRuns`); the table comes with the schema (migration v5).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .base import now_or
from .errors import StoreError
from .store import Store

_NOW_US = "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint"


@dataclass(frozen=True)
class Booking:
    """The outcome of one booking, in seconds relative to the database's now."""

    booked: bool  # False: the slot starts beyond the horizon; nothing was consumed
    start_in_s: float  # when the slot starts (or the earliest one would), from now
    paused_for_s: float  # the scope's remaining 429 pause (0 when none)
    cps: int  # in force now
    pending_cps: int | None
    pending_in_s: float | None
    concurrency_limit: int | None
    explicit: bool
    read_at: float | None = None  # time.monotonic() when the database's now was read (the slot's anchor)


class PacerState:
    def __init__(self, store: Store) -> None:
        if store.dialect != "postgresql":
            raise StoreError("the shared pacer state lives in PostgreSQL")
        self.store = store


    async def book(self, scope: str, *, default_cps: int, margin: float, horizon_s: float,
                   pause_s: float = 0.0, now_ms: int | None = None) -> Booking:
        """Book the scope's next slot (start = max(tat, now, pause end); tat += spacing) unless it starts more
        than `horizon_s` from now. `pause_s` > 0 first extends the scope's pause (a 429 seen here).
        `default_cps` seeds the row of a scope never configured anywhere."""
        now_ms = now_or(now_ms)

        def op(conn: Any) -> Booking:
            conn.execute("SET LOCAL synchronous_commit = off")
            before = time.monotonic()
            now = conn.execute(_NOW_US).fetchone()[0]
            read_at = (before + time.monotonic()) / 2  # within half a loopback round trip of the read
            conn.execute("INSERT INTO pacer_scopes (scope, tat_us, paused_until_us, cps, updated_at_ms)"
                         " VALUES (?, 0, 0, ?, ?) ON CONFLICT (scope) DO NOTHING", (scope, default_cps, now_ms))
            row = conn.execute("SELECT * FROM pacer_scopes WHERE scope = ?", (scope,)).fetchone()
            cps, pending, pending_at = row["cps"], row["pending_cps"], row["pending_at_us"]
            if pending is not None and pending_at is not None and now >= pending_at:
                cps, pending, pending_at = pending, None, None
            paused = max(row["paused_until_us"], now + int(pause_s * 1e6)) if pause_s > 0 else row["paused_until_us"]
            start = max(row["tat_us"], now, paused)
            booked = start - now <= horizon_s * 1e6
            spacing = int(1e6 / cps * (1 + margin))
            tat = start + spacing if booked else row["tat_us"]
            conn.execute("UPDATE pacer_scopes SET tat_us = ?, paused_until_us = ?, cps = ?, pending_cps = ?,"
                         " pending_at_us = ?, updated_at_ms = ? WHERE scope = ?",
                         (tat, paused, cps, pending, pending_at, now_ms, scope))
            return Booking(booked, (start - now) / 1e6, max(0, paused - now) / 1e6, cps, pending,
                           None if pending_at is None else (pending_at - now) / 1e6, row["concurrency_limit"],
                           bool(row["explicit"]), read_at)

        return await self.store._write(op, locks=(("pacer", scope),))

    async def configure(self, scope: str, *, cps: int, pending_cps: int | None, pending_in_s: float | None,
                        concurrency_limit: int | None, cut: bool, margin: float,
                        now_ms: int | None = None) -> None:
        """Publish a scope's configured CPS (set_cps on any replica applies on all). A cut also re-spaces the
        schedule from now at the new rate (slots booked at the old rate stay booked)."""
        now_ms = now_or(now_ms)

        def op(conn: Any) -> None:
            now = conn.execute(_NOW_US).fetchone()[0]
            pending_at = None if pending_in_s is None else now + int(pending_in_s * 1e6)
            conn.execute("INSERT INTO pacer_scopes (scope, tat_us, paused_until_us, cps, updated_at_ms)"
                         " VALUES (?, 0, 0, ?, ?) ON CONFLICT (scope) DO NOTHING", (scope, cps, now_ms))
            conn.execute("UPDATE pacer_scopes SET cps = ?, pending_cps = ?, pending_at_us = ?, concurrency_limit = ?,"
                         " explicit = 1, updated_at_ms = ? WHERE scope = ?",
                         (cps, pending_cps, pending_at, concurrency_limit, now_ms, scope))
            if cut:  # the next booking is at least one new spacing after the latest booked slot
                spacing = int(1e6 / cps * (1 + margin))
                conn.execute("UPDATE pacer_scopes SET tat_us = tat_us + ? WHERE scope = ? AND tat_us > ?",
                             (spacing, scope, now))

        await self.store._write(op, locks=(("pacer", scope),))

    async def scopes(self) -> dict[str, Booking]:
        """Every configured scope as it stands (read only: nothing is booked)."""

        def fn(conn: Any) -> dict[str, Booking]:
            now = conn.execute(_NOW_US).fetchone()[0]
            out = {}
            for row in conn.execute("SELECT * FROM pacer_scopes"):
                cps, pending, pending_at = row["cps"], row["pending_cps"], row["pending_at_us"]
                if pending is not None and pending_at is not None and now >= pending_at:
                    cps, pending, pending_at = pending, None, None
                out[row["scope"]] = Booking(False, max(0, max(row["tat_us"], now) - now) / 1e6,
                                            max(0, row["paused_until_us"] - now) / 1e6, cps, pending,
                                            None if pending_at is None else (pending_at - now) / 1e6,
                                            row["concurrency_limit"], bool(row["explicit"]))
            return out

        return await self.store._read(fn)
