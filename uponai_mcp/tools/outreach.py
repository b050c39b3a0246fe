"""Outreach tools: the do-not-call list (add, remove, list/export, CSV import), today's spend, scheduled calls;
and the resources uponai://do-not-call, uponai://spend, uponai://scheduled-calls."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.types import ToolAnnotations
from pydantic import Field

from uponai_mcp.errors import Refused
from uponai_mcp.outreach.views import (
    DNC_URI,
    SCHEDULED_URI,
    SPEND_URI,
    DncChange,
    DncList,
    ScheduledList,
    ScheduledView,
    SpendView,
)
from uponai_mcp.store import StoreUnavailable
from uponai_mcp.tools._common import LOCAL_READ, services

if TYPE_CHECKING:
    from uponai_mcp.outreach.service import OutreachService
    from uponai_mcp.services import Services

LOCAL_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                              open_world_hint=False)
# Taking a number off the list lets it be dialled again: hosts should treat that as destructive.
UNLIST = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
Number = Annotated[str, Field(min_length=1, max_length=64, description="Any format.")]


def _outreach(ctx: Context) -> OutreachService:
    svc = services(ctx)
    if svc.outreach is None:
        raise Refused("configuration_error", "Outreach is not available on this server.")
    return svc.outreach


def register(mcp: MCPServer) -> None:
    @mcp.tool(title="Add to do-not-call", annotations=LOCAL_WRITE)
    async def add_do_not_call(
        ctx: Context,
        reason: Annotated[str, Field(min_length=1, max_length=500, description="Why (kept with the entry).")],
        phone_number: Annotated[str | None, Field(min_length=1, max_length=64, description="Any format.")] = None,
        csv: Annotated[str | None, Field(min_length=1, max_length=5_000_000, description=(
            "Instead: CSV with a phone_number column (and reason), or one number per line."))] = None,
        default_region: Annotated[str | None, Field(min_length=2, max_length=2, description=(
            "CSV: ISO region of numbers without +country code."))] = None,
    ) -> DncChange:
        """Never dial a number (or a CSV of them) again: calls, batches, schedules, retries and evals refuse it
        (do_not_call); pending calls to it are cancelled."""
        out = _outreach(ctx)
        if (phone_number is None) == (csv is None):
            raise Refused("invalid_argument", "Give phone_number or csv, exactly one of them.", field="phone_number")
        if csv is not None:
            return await out.import_csv(csv, reason=reason, default_region=default_region.upper()
                                        if default_region else None)
        return await out.add(phone_number, reason)

    @mcp.tool(title="Remove from do-not-call", annotations=UNLIST)
    async def remove_do_not_call(ctx: Context, phone_number: Number) -> DncChange:
        """Take a number off the do-not-call list (only when the person asked for calls again)."""
        return await _outreach(ctx).remove(phone_number)

    @mcp.tool(title="List do-not-call", annotations=LOCAL_READ)
    async def list_do_not_call(
        ctx: Context,
        source: Annotated[Literal["manual", "csv", "opt_out"] | None, Field(description="Only this source.")] = None,
        limit: Annotated[int, Field(ge=1, le=1000)] = 100,
        offset: Annotated[int, Field(ge=0)] = 0,
        format: Annotated[Literal["json", "csv"], Field(description="csv: the whole list as CSV.")] = "json",
    ) -> DncList:
        """The do-not-call list, newest first, with reason and source (manual, csv, opt_out)."""
        return await _outreach(ctx).list(limit=limit, offset=offset, source=source, as_csv=format == "csv")

    @mcp.tool(title="Today's spend", annotations=LOCAL_READ)
    async def get_spend(ctx: Context) -> SpendView:
        """Today's (UTC) call spend in cents by from-number and agent, against UPONAI_MAX_SPEND_PER_DAY."""
        return await _outreach(ctx).spend()

    @mcp.tool(title="List scheduled calls", annotations=LOCAL_READ)
    async def list_scheduled_calls(
        ctx: Context,
        state: Annotated[Literal["scheduled", "dialing", "placed", "refused", "cancelled", "failed"] | None,
                         Field(description="Only this state.")] = None,
        limit: Annotated[int, Field(ge=1, le=500)] = 50,
    ) -> ScheduledList:
        """Scheduled calls and retries, soonest first, with state and call id."""
        return ScheduledList(scheduled=await _outreach(ctx).list_scheduled(state=state, limit=limit))

    @mcp.tool(title="Cancel a scheduled call", annotations=LOCAL_WRITE)
    async def cancel_scheduled_call(
        ctx: Context, schedule_id: Annotated[str, Field(min_length=1, max_length=64)],
    ) -> ScheduledView:
        """Cancel a scheduled call or retry that has not been dialled."""
        return await _outreach(ctx).cancel_scheduled(schedule_id)


def register_resources(mcp: MCPServer, services_now: Callable[[], Services]) -> None:
    """uponai://do-not-call, uponai://spend, uponai://scheduled-calls (static resources get no request context,
    so `resources.register` hands in the running services)."""

    async def _read(what: str) -> str:
        try:
            out = services_now().outreach
            if out is None:
                raise Refused("configuration_error", "Outreach is not available on this server.")
            if what == "dnc":
                value = (await out.list(limit=1000)).model_dump(mode="json")
            elif what == "spend":
                value = (await out.spend()).model_dump(mode="json")
            else:
                value = ScheduledList(scheduled=await out.list_scheduled(limit=500)).model_dump(mode="json")
        except (Refused, StoreUnavailable) as exc:
            raise ResourceError(str(exc)) from exc
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    @mcp.resource(DNC_URI, name="do_not_call", title="Do-not-call list", mime_type="application/json",
                  description="Numbers never dialled (newest 1000), with reason and source.")
    async def dnc_resource() -> str:
        return await _read("dnc")

    @mcp.resource(SPEND_URI, name="spend", title="Today's spend", mime_type="application/json",
                  description="Today's call spend by number and agent, and the cap.")
    async def spend_resource() -> str:
        return await _read("spend")

    @mcp.resource(SCHEDULED_URI, name="scheduled_calls", title="Scheduled calls", mime_type="application/json",
                  description="Scheduled calls and retries with their state.")
    async def scheduled_resource() -> str:
        return await _read("scheduled")
