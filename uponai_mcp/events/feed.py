"""Publishes "this resource changed" to MCP clients of both protocol eras, and wakes local waiters.

Two subscription paths exist and neither reaches the other's clients:
- 2026-07-28 clients open `subscriptions/listen`; `MCPServer` serves it from a `SubscriptionBus`, and we
  publish `ResourceUpdated(uri)` / `ResourcesListChanged()` to that bus.
- 2025-era clients send `resources/subscribe`; `LegacySubscriptions` (filled by the handlers in
  `resources.py`) remembers their sessions, and we send `notifications/resources/updated` to each one.

`Feed.call_changed()` is synchronous and never blocks: the receiver calls it after its commit and answers
204 at once. A worker task (`Feed.running()`, entered by the lifespan) drains the coalesced queue, so a slow
or dead subscriber never delays an acknowledgement. Notifications are level triggers ("refetch if you
care"), so coalescing repeated URIs loses nothing.

`Feed.changed_event(call_id)` gives an `anyio.Event` set on the call's next change, for `wait_for_call`.

Several replicas (PostgreSQL): `Feed.relay`, when set (`events/relay.py`), is handed every local change and
sends it to the other replicas, which replay it with `remote=True` (not relayed again).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ResourcesListChanged,
    ResourceUpdated,
    SubscriptionBus,
)

log = logging.getLogger(__name__)

RECENT_EVENTS_URI = "uponai://events/recent"
SEND_TIMEOUT_S = 5.0
MAX_KNOWN_CALLS = 10_000


def call_uri(call_id: str) -> str:
    return f"uponai://calls/{call_id}"


def call_events_uri(call_id: str) -> str:
    return f"uponai://calls/{call_id}/events"


def uris_for_call(call_id: str) -> tuple[str, str, str]:
    """Every resource one stored event of `call_id` changes."""
    return call_uri(call_id), call_events_uri(call_id), RECENT_EVENTS_URI


def _connection_key(session: Any) -> Hashable:
    # A ServerSession is built per request; its connection is what lives on. Key by the connection so
    # one client is notified once however many requests it subscribed with.
    return getattr(session, "_connection", None) or session


class LegacySubscriptions:
    """`resources/subscribe` state for 2025-era sessions: uri -> {connection: session}.

    Sessions are dropped when their connection closes (cleanup registered on the connection's exit
    stack) or when a send to them fails.
    """

    def __init__(self) -> None:
        self._by_uri: dict[str, dict[Hashable, Any]] = {}
        self._sessions: dict[Hashable, Any] = {}  # every legacy session seen (list_changed goes to all)

    def seen(self, session: Any) -> None:
        """Remember a legacy session (for resources/list_changed) and forget it when it closes."""
        key = _connection_key(session)
        if key in self._sessions:
            self._sessions[key] = session
            return
        self._sessions[key] = session
        stack = getattr(getattr(session, "_connection", None), "exit_stack", None)
        if stack is not None:
            stack.callback(self.drop, session)

    def subscribe(self, uri: str, session: Any) -> None:
        self.seen(session)
        self._by_uri.setdefault(uri, {})[_connection_key(session)] = session

    def unsubscribe(self, uri: str, session: Any) -> None:
        subs = self._by_uri.get(uri)
        if subs is not None:
            subs.pop(_connection_key(session), None)
            if not subs:
                del self._by_uri[uri]

    def drop(self, session: Any) -> None:
        key = _connection_key(session)
        self._sessions.pop(key, None)
        for uri in list(self._by_uri):
            subs = self._by_uri[uri]
            subs.pop(key, None)
            if not subs:
                del self._by_uri[uri]

    def subscribers(self, uri: str) -> list[Any]:
        return list(self._by_uri.get(uri, {}).values())

    def sessions(self) -> list[Any]:
        return list(self._sessions.values())

    def count(self, uri: str | None = None) -> int:
        return len(self._sessions) if uri is None else len(self._by_uri.get(uri, {}))


class Feed:
    """Fan-out of resource changes: the MCP bus (modern), legacy sessions, and in-process waiters."""

    def __init__(self, bus: SubscriptionBus | None = None, legacy: LegacySubscriptions | None = None,
                 *, send_timeout_s: float = SEND_TIMEOUT_S) -> None:
        self.bus: SubscriptionBus = bus if bus is not None else InMemorySubscriptionBus()
        self.legacy = legacy if legacy is not None else LegacySubscriptions()
        self.send_timeout_s = send_timeout_s
        self._pending: dict[str, None] = {}  # ordered set of URIs to announce
        self._list_changed = False
        self._wake = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._waiters: dict[str, anyio.Event] = {}
        self._known_calls: dict[str, None] = {}
        self._running = 0
        self.published = 0  # URIs announced, for tests and benchmarks
        self.relay: Callable[..., None] | None = None  # cross-replica fan-out (events/relay.py)

    # --- producers (sync, never block) ---------------------------------------------------------

    def call_changed(self, call_id: str, *, new: bool | None = None, remote: bool = False) -> None:
        """A stored event or snapshot change for `call_id`. `new=None` decides by whether the call was
        seen before by this feed; a new call also announces that the resource list changed. `remote`: it
        happened on another replica (not relayed back)."""
        if new is None:
            new = call_id not in self._known_calls
        if self.relay is not None and not remote:
            self.relay("call", call_id, new)
        self._remember(call_id)
        self._wake_waiters(call_id)
        for uri in uris_for_call(call_id):
            self._pending[uri] = None
        if new:
            self._list_changed = True
        self._kick()

    def resource_changed(self, uri: str, *, remote: bool = False) -> None:
        if self.relay is not None and not remote:
            self.relay("uri", uri)
        self._pending[uri] = None
        self._kick()

    def list_changed(self, *, remote: bool = False) -> None:
        if self.relay is not None and not remote:
            self.relay("list")
        self._list_changed = True
        self._kick()

    def _remember(self, call_id: str) -> None:
        self._known_calls[call_id] = None
        if len(self._known_calls) > MAX_KNOWN_CALLS:
            self._known_calls.pop(next(iter(self._known_calls)))

    def _kick(self) -> None:
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        self._wake.set()

    # --- waiters -------------------------------------------------------------------------------

    def changed_event(self, call_id: str) -> anyio.Event:
        """An event set the next time `call_id` changes. Take it BEFORE reading the store, so a change
        between the read and the wait is not missed."""
        event = self._waiters.get(call_id)
        if event is None:
            event = self._waiters[call_id] = anyio.Event()
        return event

    def _wake_waiters(self, call_id: str) -> None:
        event = self._waiters.pop(call_id, None)
        if event is not None:
            event.set()

    # --- the worker ----------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Feed]:
        """Run the delivery worker for the duration of the block (the lifespan enters it)."""
        async with anyio.create_task_group() as tg:
            self._running += 1
            tg.start_soon(self._worker)
            try:
                yield self
            finally:
                self._running -= 1
                tg.cancel_scope.cancel()

    async def drained(self) -> None:
        """Wait until everything queued so far was delivered (tests, shutdown)."""
        while not self._idle.is_set():
            await self._idle.wait()

    async def _worker(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Deliver everything pending now (the worker calls this; tests may too)."""
        while self._pending or self._list_changed:
            uris, self._pending = list(self._pending), {}
            list_changed, self._list_changed = self._list_changed, False
            if list_changed:
                await self._publish_list_changed()
            for uri in uris:
                await self._publish_updated(uri)
        self._idle.set()

    async def _publish_updated(self, uri: str) -> None:
        self.published += 1
        try:
            await self.bus.publish(ResourceUpdated(uri=uri))
        except Exception:  # a custom bus failing must not stop the legacy path or the worker
            log.exception("publishing %s to the subscription bus failed", uri)
        for session in self.legacy.subscribers(uri):
            await self._send(session, "updated", uri)

    async def _publish_list_changed(self) -> None:
        try:
            await self.bus.publish(ResourcesListChanged())
        except Exception:
            log.exception("publishing resources/list_changed to the subscription bus failed")
        for session in self.legacy.sessions():
            await self._send(session, "list_changed", None)

    async def _send(self, session: Any, kind: str, uri: str | None) -> None:
        ok = False
        with anyio.move_on_after(self.send_timeout_s):
            try:
                if kind == "updated":
                    await session.send_resource_updated(uri)
                else:
                    await session.send_resource_list_changed()
                ok = True
            except Exception as exc:  # a dead session: forget it, keep serving the others
                log.info("dropping a legacy subscriber after a failed send: %r", exc)
        if not ok:
            self.legacy.drop(session)
