"""Reconciles calls through `get_call` where webhooks cannot arrive (or were lost), feeding the same
ingest path as the receiver.

What it watches: `store.tracked_non_terminal_calls()`, i.e. the calls this server placed that are not
terminal yet, or ended but still waiting for their analysis (for a grace period).
How often: per call, 1 s after it is first seen, doubling up to 30 s while nothing changes, back to 1 s
after a change (the next transition is usually close: ended -> analyzed), with ±20 % jitter so many calls
do not poll in lockstep. Where webhooks do arrive the poller is only a safety net for lost ones: every
call at a flat 30 s, either because a standalone listener runs (`Poller.safety_net()`) or, adaptively,
because a verified webhook arrived in the last 10 minutes on any route (e.g. the streamable HTTP app's
`/webhooks/uponai`).
What it stores: the transitions it observes, as the events the platform would have sent
(`call_started`, `call_ended`, `call_analyzed`, source="poller"), under the same dedupe keys, so a
webhook arriving later (or earlier) for the same transition is a duplicate, never a second event; plus
the snapshot merge of the read. `call_failed` is derived by the store from `call_ended`, as for webhooks.
Several replicas (PostgreSQL): each call is polled by one replica, the holder of its lease ("poll:<call_id>",
renewed with every poll, POLL_LEASE_S); the others skip it, and take it over if the holder stops polling.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from uponai_mcp import callstate as state
from uponai_mcp.api import UponAIClient
from uponai_mcp.api import errors as api_errors
from uponai_mcp.events.ingest import Ingest
from uponai_mcp.store import StoreUnavailable

log = logging.getLogger(__name__)
POLL_LEASE_S = 90.0  # > the slowest cadence (30 s + jitter): a live holder always renews in time


@dataclass
class _Track:
    due: float
    delay: float


@dataclass
class Poller:
    api: UponAIClient
    ingest: Ingest
    min_delay_s: float = 1.0
    max_delay_s: float = 30.0
    jitter: float = 0.2
    tick_s: float = 0.25  # how often the list of tracked calls is re-read
    rng: random.Random = field(default_factory=random.Random)
    monotonic: Callable[[], float] = time.monotonic
    polls: int = 0  # get_call requests made, for tests and stats
    owner: str = field(default_factory=lambda: f"poller-{uuid.uuid4().hex[:12]}")
    _tracks: dict[str, _Track] = field(default_factory=dict)
    _leases: Any = None

    @classmethod
    def safety_net(cls, api: UponAIClient, ingest: Ingest) -> Poller:
        """The slow cadence used when webhooks do arrive: every call at most every 30 s, first after 30 s."""
        return cls(api, ingest, min_delay_s=30.0, max_delay_s=30.0, tick_s=5.0)

    def _jittered(self, delay: float) -> float:
        return delay * (1 + self.rng.uniform(-self.jitter, self.jitter))

    def _base_delay(self) -> float:
        """The first and after-a-change delay: the safety-net cadence while webhooks are flowing."""
        return self.max_delay_s if self.ingest.webhooks_flowing() else self.min_delay_s

    async def run(self) -> None:
        """Poll forever (cancel to stop). Errors are logged and retried; nothing here raises."""
        while True:
            try:
                await self.sweep()
            except Exception:  # the poller must outlive a bad moment of the store or the platform
                log.exception("poller sweep failed")
            await anyio.sleep(self.tick_s)

    async def sweep(self) -> int:
        """One pass: poll every tracked call that is due. Returns how many were polled."""
        try:
            tracked = await self.ingest.store.tracked_non_terminal_calls()
        except StoreUnavailable as exc:
            log.warning("poller cannot read the store: %s", exc)
            return 0
        now = self.monotonic()
        wanted = set(tracked)
        for call_id in list(self._tracks):
            if call_id not in wanted:
                del self._tracks[call_id]
        due = []
        base = self._base_delay()
        for call_id in tracked:
            track = self._tracks.get(call_id)
            if track is None:
                self._tracks[call_id] = _Track(now + self._jittered(base), base)
            elif track.due <= now:
                due.append(call_id)
        for call_id in due:
            try:
                if not await self._mine(call_id):
                    changed = False  # another replica polls it; look again later in case it stops
                else:
                    changed = await self.poll(call_id)
            except StoreUnavailable as exc:  # back off like any failure; the next poll tries again
                log.warning("poller cannot store what it read for %s: %s", call_id, exc)
                changed = False
            track = self._tracks.get(call_id)
            if track is not None:
                track.delay = base if changed else min(max(track.delay * 2, base), self.max_delay_s)
                track.due = self.monotonic() + self._jittered(track.delay)
        return len(due)

    async def _mine(self, call_id: str) -> bool:
        """One replica polls a call (PostgreSQL: the holder of its lease); in one process, always this one."""
        store = self.ingest.store
        if getattr(store, "dialect", "sqlite") != "postgresql":
            return True
        if self._leases is None:
            from uponai_mcp.store.leases import Leases

            self._leases = Leases(store)
        return await self._leases.acquire(f"poll:{call_id}", self.owner, int(POLL_LEASE_S * 1000))

    async def poll(self, call_id: str) -> bool:
        """Read one call from the platform and ingest what changed; True when something did."""
        self.polls += 1
        try:
            call = await self.api.get_call(call_id)
        except api_errors.ApiError as exc:
            log.info("poller: get_call %s failed: %s", call_id, exc)
            return False
        except Exception:  # a reply we cannot read: back off like any failure, never spin
            log.exception("poller: get_call %s returned something unreadable", call_id)
            return False
        data = call.model_dump(mode="json", exclude_none=True)
        stored = {e.event for e in await self.ingest.store.call_events(call_id)}
        changed = False
        for event in synthesize(stored, data):
            result = await self.ingest.event({"event": event, "call": payload_for(event, data)}, source="poller")
            changed = changed or result.stored or result.changed
        result = await self.ingest.api_call(data, source="poller")
        return changed or result.changed


_NOT_YET_AT_START = ("end_timestamp", "duration_ms", "disconnection_reason", "transcript", "transcript_object",
                     "transcript_with_tool_calls", "recording_url", "recording_multi_channel_url", "latency",
                     "call_analysis", "call_cost", "public_log_url")


def synthesize(stored: set[str], call: dict[str, Any]) -> list[str]:
    """The webhook events a platform read proves happened and the event log lacks (`stored`: the event
    names stored for the call), in lifecycle order. Never a `call_started` for a call that never
    connected (the platform sends none either). Duplicates would be harmless: the store dedupes."""
    status = str(call.get("call_status") or "")
    events: list[str] = []
    connected = status == "ongoing" or (status == "ended" and call.get("start_timestamp") is not None)
    if connected and state.STARTED not in stored:
        events.append(state.STARTED)
    if status in state.TERMINAL and state.ENDED not in stored:
        events.append(state.ENDED)
    if state.has_analysis(call) and state.ANALYZED not in stored:
        events.append(state.ANALYZED)
    return events


def payload_for(event: str, call: dict[str, Any]) -> dict[str, Any]:
    """The call object as the platform would have sent it with `event`: a `call_started` carries no end,
    transcript or analysis yet, a `call_ended` no analysis."""
    if event == state.STARTED:
        out = {k: v for k, v in call.items() if k not in _NOT_YET_AT_START}
        out["call_status"] = "ongoing"
        return out
    if event == state.ENDED:
        return {k: v for k, v in call.items() if k != "call_analysis"}
    return call
