"""The one ingest path: store (one transaction, committed) -> feed (announce, after the commit).

The webhook receiver, the poller and the dialer's "call placed" hook all come through here, so the
event log and the notifications are the same whichever way an event arrived.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from uponai_mcp.callstate import TERMINAL
from uponai_mcp.events.feed import Feed
from uponai_mcp.store import IngestResult, Store
from uponai_mcp.store.calls import EventInput

log = logging.getLogger(__name__)
# Called with the merged snapshot whenever a terminal call's snapshot changes (outreach: costs, opt-outs,
# retries). Its own events (source "outreach") are not passed back to it.
CallEnded = Callable[[dict[str, Any]], Awaitable[None]]


class Ingest:
    def __init__(self, store: Store, feed: Feed) -> None:
        self.store = store
        self.feed = feed
        self.last_webhook_at: float | None = None  # time.monotonic() of the last verified webhook stored
        self.on_ended: list[CallEnded] = []

    async def _ended(self, result: IngestResult, source: str) -> None:
        if not self.on_ended or source == "outreach" or str(result.status) not in TERMINAL:
            return
        if not (result.stored or result.changed):
            return
        snapshot = await self.store.get_call_snapshot(result.call_id)
        for hook in self.on_ended:
            try:
                await hook(snapshot or {})
            except Exception:  # a hook never loses the event: it is stored already
                log.exception("call-ended hook failed for %s", result.call_id)

    def webhooks_flowing(self, within_s: float = 600.0) -> bool:
        """Did a verified webhook arrive (on any route) in the last `within_s` seconds?"""
        return self.last_webhook_at is not None and time.monotonic() - self.last_webhook_at < within_s

    async def event(self, item: EventInput, *, source: str = "webhook", received_at_ms: int | None = None
                    ) -> IngestResult:
        """Store one event (dedupe + monotonic snapshot + derived call_failed, one transaction), then
        announce it. Raises StoreUnavailable (nothing stored) or ValueError (no name / call_id)."""
        result = await self.store.ingest_event(item, source=source, received_at_ms=received_at_ms)
        if source == "webhook":
            self.last_webhook_at = time.monotonic()
        if result.stored or result.changed or result.derived:
            self.feed.call_changed(result.call_id)
        await self._ended(result, source)
        return result

    async def api_call(self, call: Mapping[str, Any], *, source: str = "api", now_ms: int | None = None
                       ) -> IngestResult:
        """Merge a get-call read into the snapshot (no event row; a failed call still gets its one
        derived call_failed), then announce a change."""
        result = await self.store.upsert_call_from_api(call, now_ms, source=source)
        if result.changed or result.derived:
            self.feed.call_changed(result.call_id)
        await self._ended(result, source)
        return result

    async def call_placed(self, call_id: str) -> None:
        """The dialer's `on_call` hook: the call exists now (its snapshot is stored already)."""
        self.feed.call_changed(call_id, new=True)
