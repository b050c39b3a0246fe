"""Cross-replica fan-out through PostgreSQL LISTEN/NOTIFY.

Every change a replica announces on its `Feed` (a call changed, a resource changed, the resource list changed)
is also sent as `NOTIFY uponai_feed, <json>` after the data was committed; every other replica LISTENs and
replays it on its own feed, so its MCP subscribers (both eras) and its `wait_for_call` waiters hear about a
webhook that reached another replica. A notification is a hint ("refetch"): the data is in the database
already, and a lost one (a listener reconnecting) costs a refetch at most, never data. Payloads stay under
PostgreSQL's 8000-byte limit by splitting. A replica ignores its own messages (origin id).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from uponai_mcp.events.feed import Feed

log = logging.getLogger(__name__)

CHANNEL = "uponai_feed"
MAX_PAYLOAD = 7000
RECONNECT_S = (0.2, 0.5, 1.0, 2.0, 5.0)


def _chunks(origin: str, calls: list[tuple[str, bool]], uris: list[str], list_changed: bool) -> list[str]:
    out: list[str] = []
    msg: dict[str, Any] = {"o": origin, "c": [], "u": [], "l": list_changed}

    def size() -> int:
        return len(json.dumps(msg, separators=(",", ":")))

    for kind, items in (("c", calls), ("u", uris)):
        for item in items:
            msg[kind].append(list(item) if kind == "c" else item)
            if size() > MAX_PAYLOAD:
                msg[kind].pop()
                out.append(json.dumps(msg, separators=(",", ":")))
                msg = {"o": origin, "c": [], "u": [], "l": False}
                msg[kind].append(list(item) if kind == "c" else item)
    if msg["c"] or msg["u"] or msg["l"]:
        out.append(json.dumps(msg, separators=(",", ":")))
    return out


class PgRelay:
    """Connects a `Feed` to the other replicas on one PostgreSQL database."""

    def __init__(self, url: str, feed: Feed, *, origin: str | None = None) -> None:
        self.url = url
        self.feed = feed
        self.origin = origin or uuid.uuid4().hex[:12]
        self._calls: dict[str, bool] = {}
        self._uris: dict[str, None] = {}
        self._list_changed = False
        self._wake = anyio.Event()
        self.sent = 0  # notifications sent / replayed, for tests and benchmarks
        self.received = 0
        self.listening = anyio.Event()

    # --- out: the feed hands every local change here (sync, never blocks) -----------------------------

    def outgoing(self, kind: str, value: Any = None, new: bool = False) -> None:
        if kind == "call":
            self._calls[value] = self._calls.get(value, False) or new
        elif kind == "uri":
            self._uris[value] = None
        else:
            self._list_changed = True
        self._wake.set()

    async def _sender(self) -> None:
        import psycopg

        conn = None
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            calls, self._calls = list(self._calls.items()), {}
            uris, self._uris = list(self._uris), {}
            list_changed, self._list_changed = self._list_changed, False
            for payload in _chunks(self.origin, calls, uris, list_changed):
                try:
                    if conn is None or conn.closed:
                        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=5,
                                                                     application_name="uponai-mcp/relay-out")
                    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                    self.sent += 1
                except Exception as exc:  # a hint lost: the other replicas' clients refetch later
                    log.warning("cross-replica notification not sent: %s", exc)
                    if conn is not None:
                        await conn.close()
                    conn = None

    # --- in: other replicas' changes, replayed on our feed --------------------------------------------

    def _replay(self, payload: str) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            return
        if not isinstance(msg, dict) or msg.get("o") == self.origin:
            return
        self.received += 1
        for call_id, new in msg.get("c") or ():
            self.feed.call_changed(str(call_id), new=bool(new), remote=True)
        for uri in msg.get("u") or ():
            self.feed.resource_changed(str(uri), remote=True)
        if msg.get("l"):
            self.feed.list_changed(remote=True)

    async def _listener(self) -> None:
        import psycopg

        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.url, autocommit=True, connect_timeout=5, application_name="uponai-mcp/relay-in") as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    failures = 0
                    self.listening.set()
                    async for note in conn.notifies():
                        self._replay(note.payload)
            except Exception as exc:
                self.listening = anyio.Event()
                log.warning("cross-replica listener lost its connection (%s); reconnecting", exc)
            await anyio.sleep(RECONNECT_S[min(failures, len(RECONNECT_S) - 1)])
            failures += 1

    @asynccontextmanager
    async def running(self) -> AsyncIterator[PgRelay]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._listener)
            tg.start_soon(self._sender)
            self.feed.relay = self.outgoing
            try:
                yield self
            finally:
                self.feed.relay = None
                tg.cancel_scope.cancel()
