"""Reading and following calls: the one read path (stored snapshot merged with a platform read), listing,
the event and audit logs, and waiting for a call to end. Tools and resources read calls only through here.

It reads the store, which webhooks and the poller both fill, and a wait wakes on the feed's per-call event
rather than polling; a store re-read every few seconds is the fallback. For a call this server did not
place (the poller does not track those) a wait also reads the platform every few seconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio

from uponai_mcp.api import errors as api_errors
from uponai_mcp.callstate import merge_snapshot
from uponai_mcp.errors import Refused
from uponai_mcp.events.feed import Feed
from uponai_mcp.events.ingest import Ingest
from uponai_mcp.models import Call, CallFilter, CallPage
from uponai_mcp.store import AuditEntry, CallRecord, Store, StoredEvent

if TYPE_CHECKING:
    from uponai_mcp.api import UponAIClient

RECHECK_S = 2.0  # store re-read when no change was announced
PROGRESS_EVERY_S = 5.0
OWN_POLL_S = 5.0  # platform reads for calls the poller does not track

Until = Literal["ended", "analyzed"]
Report = Callable[[float, float, str], Awaitable[None]]


@dataclass(frozen=True)
class Waited:
    record: CallRecord
    reached: bool
    waited_s: float


def reached(record: CallRecord | None, until: Until) -> bool:
    return record is not None and record.terminal and (until == "ended" or record.analyzed)


def stage(record: CallRecord | None) -> str:
    if record is None:
        return "unknown"
    status = record.status or "unknown"
    return f"{status}, analyzed" if record.analyzed else status


class CallReader:
    def __init__(self, store: Store, api: UponAIClient, ingest: Ingest, feed: Feed) -> None:
        self.store = store
        self.api = api
        self.ingest = ingest
        self.feed = feed

    async def snapshot(self, call_id: str) -> dict[str, Any] | None:
        """The call's stored snapshot merged with a fresh platform read, or None when neither knows it. No
        platform read for a final call (terminal and analyzed) or a failed create (`attempt:<id>`: only we
        know it); a platform error falls back to the stored state. A change the read reveals is stored and
        announced."""
        record = await self.store.get_call_record(call_id)
        if record is not None and record.terminal and record.analyzed:
            return record.call
        if call_id.startswith("attempt:"):
            return None if record is None else record.call
        try:
            call = await self.api.get_call(call_id)
        except api_errors.NotFound:
            return None if record is None else record.call
        except api_errors.ApiError:
            if record is None:
                raise
            return record.call
        data = call.model_dump(mode="json", exclude_none=True)
        if record is not None and merge_snapshot(record.call, None, data) == record.call:
            return record.call  # the platform says nothing new: no write, no announcement
        await self.ingest.api_call(data)
        return await self.store.get_call_snapshot(call_id)

    async def get(self, call_id: str) -> Call:
        snapshot = await self.snapshot(call_id)
        if snapshot is None:
            raise Refused("not_found", f"There is no call {call_id}; list_calls shows recent calls.")
        return Call.model_validate(snapshot)

    async def list(self, criteria: CallFilter) -> CallPage:
        return await self.api.list_calls(criteria)

    async def events(self, call_id: str) -> list[StoredEvent] | None:
        """The call's events in arrival order; None when the call is unknown."""
        events = await self.store.call_events(call_id)
        if events or await self.store.get_call_record(call_id) is not None:
            return events
        return None

    async def recent_calls(self, limit: int) -> list[CallRecord]:
        """The latest call snapshots this server knows (for resources/list)."""
        return await self.store.list_call_snapshots(limit)

    async def recent_events(self, limit: int) -> list[StoredEvent]:
        return await self.store.recent_events(limit)

    async def recent_audit(self, limit: int) -> list[AuditEntry]:
        return await self.store.recent_audit(limit)

    async def wait(self, call_id: str, until: Until, timeout_s: float, report: Report) -> Waited:
        """Until the call reaches `until` or `timeout_s` passes, reporting progress; raises not_found."""
        start = anyio.current_time()
        deadline = start + timeout_s
        record = await self.store.get_call_record(call_id)
        if not reached(record, until) and await self.snapshot(call_id) is None:
            raise Refused("not_found", f"There is no call {call_id}; list_calls shows recent calls.")
        tracked = (await self.store.get_attempt_by_call(call_id)) is not None or call_id.startswith("attempt:")
        next_own_poll = start + OWN_POLL_S
        last_status: str | None = None
        last_progress, next_progress = -1.0, start
        while True:
            changed = self.feed.changed_event(call_id)  # before the read: a change in between still wakes us
            record = await self.store.get_call_record(call_id)
            now = anyio.current_time()
            done = reached(record, until)
            status = stage(record)
            if status != last_status or now >= next_progress or done:
                elapsed = max(now - start, last_progress + 1e-3)  # progress must increase
                await report(elapsed, timeout_s, f"call {call_id} is {status} after {now - start:.1f} s")
                last_status, last_progress, next_progress = status, elapsed, now + PROGRESS_EVERY_S
            if done or now >= deadline or (call_id.startswith("attempt:") and record is not None):
                break
            with anyio.move_on_after(min(deadline - now, RECHECK_S)):
                await changed.wait()
            if not tracked and anyio.current_time() >= next_own_poll:
                next_own_poll = anyio.current_time() + OWN_POLL_S
                await self.snapshot(call_id)
        assert record is not None  # snapshot() found it, and the store keeps what it found
        return Waited(record, done, round(anyio.current_time() - start, 3))
