"""wait_for_call: block until a call ends (or its analysis is in), with progress notifications.

It reads the store, which webhooks and the poller both fill, and wakes on the feed's per-call event
rather than polling; a store re-read every few seconds is the fallback. For a call this server did not
place (the poller does not track those) it also reads the platform every few seconds while waiting.
"""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import Field

from uponai_mcp.errors import Refused
from uponai_mcp.events.ingest import read_call
from uponai_mcp.models import Call
from uponai_mcp.services import Services
from uponai_mcp.store import CallRecord
from uponai_mcp.tools._common import READ, refusals, services
from uponai_mcp.views import CallDetails

MAX_TIMEOUT_S = 600.0
RECHECK_S = 2.0  # store re-read when no change was announced
PROGRESS_EVERY_S = 5.0
OWN_POLL_S = 5.0  # platform reads for calls the poller does not track

Until = Literal["ended", "analyzed"]


class WaitedCall(CallDetails):
    """The call when the wait ended, and whether it reached the state waited for."""

    reached: bool = Field(description="True when the call reached `until` before the timeout.")
    until: str = Field(description="ended: the call is over (ended, not_connected or error); "
                       "analyzed: its post-call analysis is in as well.")
    waited_s: float = Field(description="Seconds this call waited.")
    note: str = Field(description="What happened, in one sentence.")


def _reached(record: CallRecord | None, until: Until) -> bool:
    if record is None:
        return False
    return record.terminal and (until == "ended" or record.analyzed)


def register(mcp: MCPServer, *, read_only: bool) -> None:
    @mcp.tool(title="Wait for a call to finish", annotations=READ)
    async def wait_for_call(
        ctx: Context,
        call_id: Annotated[str, Field(description="The call id, e.g. call_3f2a...", min_length=1, max_length=128)],
        until: Annotated[Until, Field(description="ended: wait until the call is over (ended, not connected or "
                                      "failed); analyzed: also wait for the post-call analysis.")] = "ended",
        timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S, description="Give up waiting after this many "
                                          "seconds (max 600) and return the call as it is then.")] = 60.0,
    ) -> WaitedCall:
        """Wait until a call ends (or is analyzed) and return it, with progress notifications while waiting.
        On timeout it returns the current state with reached=false (not an error). Transcript and summary
        are callee-controlled data, returned in the `untrusted` field."""
        svc = services(ctx)
        with refusals():
            return await _wait(ctx, svc, call_id, until, timeout_s)


async def _wait(ctx: Context, svc: Services, call_id: str, until: Until, timeout_s: float) -> WaitedCall:
    start = anyio.current_time()
    deadline = start + timeout_s
    record = await svc.store.get_call_record(call_id)
    if record is None or not _reached(record, until):
        if await read_call(svc, call_id) is None:
            raise Refused("not_found", f"There is no call {call_id}; list_calls shows recent calls.")
    tracked = (await svc.store.get_attempt_by_call(call_id)) is not None or call_id.startswith("attempt:")
    next_own_poll = start + OWN_POLL_S
    last_status: str | None = None
    last_progress = -1.0
    next_progress = start
    while True:
        changed = svc.feed.changed_event(call_id)  # before the read: a change in between still wakes us
        record = await svc.store.get_call_record(call_id)
        now = anyio.current_time()
        reached = _reached(record, until)
        status = _stage(record)
        if status != last_status or now >= next_progress or reached:
            elapsed = max(now - start, last_progress + 1e-3)  # progress must increase
            await ctx.report_progress(elapsed, timeout_s, f"call {call_id} is {status} after {now - start:.1f} s")
            last_status, last_progress, next_progress = status, elapsed, now + PROGRESS_EVERY_S
        if reached or now >= deadline or (call_id.startswith("attempt:") and record is not None):
            break
        with anyio.move_on_after(min(deadline - now, RECHECK_S)):
            await changed.wait()
        if not tracked and anyio.current_time() >= next_own_poll:
            next_own_poll = anyio.current_time() + OWN_POLL_S
            await read_call(svc, call_id)
    waited = round(anyio.current_time() - start, 3)
    assert record is not None  # read_call found it, and the store keeps what it found
    details = CallDetails.of(Call.model_validate(record.call)).model_dump()
    if reached:
        note = f"The call reached {until} ({record.status})."
    elif call_id.startswith("attempt:"):
        note = "The platform never created this call (the create request failed); nothing more will happen."
    else:
        note = f"Timed out after {timeout_s:g} s; the call is {_stage(record)}. Call wait_for_call again to keep waiting."
        if until == "analyzed" and record.terminal and svc.webhook_url is None and svc.settings.dialect == "uponai":
            note += (" The analysis only arrives by webhook with the uponai dialect, and this server has no webhook "
                     "receiver (set UPONAI_WEBHOOK_LISTEN).")
    return WaitedCall(**details, reached=reached, until=until, waited_s=waited, note=note)


def _stage(record: CallRecord | None) -> str:
    if record is None:
        return "unknown"
    status = record.status or "unknown"
    return f"{status}, analyzed" if record.analyzed else status
