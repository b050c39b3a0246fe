"""CPS tools: set_cps, get_cps. CPS has no platform API: these configure our own pacer."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from uponai_mcp.models import ProviderKind
from uponai_mcp.tools._common import IDEMPOTENT_WRITE, LOCAL_READ, services

Provider = Annotated[Literal["twilio", "telnyx", "custom"], Field(
    description="The CPS scope: the provider behind the from-number (twilio, telnyx, or custom telephony).")]


class CpsView(BaseModel):
    """One provider scope's pacing: configured and effective calls per second, and the next free slot."""

    provider: str
    configured_cps: float
    effective_cps: float = Field(description="The rate pacing uses right now.")
    pending_cps: float | None = Field(None, description="A Twilio raise waiting for its 10 minutes.")
    pending_effective_in_s: float | None = None
    max_cps: float | None = Field(None, description="The provider's maximum.")
    next_slot_in_s: float = Field(description="Seconds until the next call may be dialled.")
    paused_for_s: float = Field(0.0, description="Seconds left of a pause after the platform answered 429.")
    dispatched: int = 0


class CpsList(BaseModel):
    scopes: list[CpsView]


def view(state) -> CpsView:
    return CpsView(
        provider=state.scope, configured_cps=state.configured_cps, effective_cps=state.effective_cps,
        pending_cps=state.pending_cps, pending_effective_in_s=state.pending_effective_in_s,
        max_cps=state.max_cps, next_slot_in_s=round(state.next_slot_in_s, 3),
        paused_for_s=round(state.paused_for_s, 3), dispatched=state.dispatched,
    )


def register(mcp: MCPServer) -> None:
    @mcp.tool(title="Show CPS pacing", annotations=LOCAL_READ)
    async def get_cps(ctx: Context) -> CpsList:
        """Each provider scope's configured and effective calls-per-second and its next free slot."""
        svc = services(ctx)
        return CpsList(scopes=[view(svc.pacer.get_state(k.value)) for k in ProviderKind])

    @mcp.tool(title="Set calls per second", annotations=IDEMPOTENT_WRITE)
    async def set_cps(
        ctx: Context,
        provider: Provider,
        cps: Annotated[int, Field(ge=1, description="Calls per second. Twilio: max 5 (a raise takes effect "
                                    "after 10 minutes); Telnyx: max 16; custom: max concurrency / 20.")],
    ) -> CpsView:
        """Set the calls-per-second our pacer allows for a provider scope, within the provider's maximum.
        Match what the platform is configured for: exceeding it gets calls rejected."""
        state = await services(ctx).set_cps(provider, cps)
        return view(state)
