"""wait_for_call: block until a call ends (or its analysis is in), with progress notifications
(`CallReader.wait` does the waiting)."""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import Field

from uponai_mcp.call_reader import Until, stage
from uponai_mcp.models import Call
from uponai_mcp.tools._common import READ, services
from uponai_mcp.views import CallDetails

MAX_TIMEOUT_S = 600.0


class WaitedCall(CallDetails):
    """The call when the wait ended, and whether it reached the state waited for."""

    reached: bool = Field(description="True when the call reached `until` before the timeout.")
    until: str = Field(description="ended: the call is over (ended, not_connected or error); "
                       "analyzed: its post-call analysis is in as well.")
    waited_s: float = Field(description="Seconds this call waited.")
    note: str = Field(description="What happened, in one sentence.")



def register(mcp: MCPServer) -> None:
    @mcp.tool(title="Wait for a call to finish", annotations=READ)
    async def wait_for_call(
        ctx: Context,
        call_id: Annotated[str, Field(description="The call id, e.g. call_3f2a...", min_length=1, max_length=128)],
        until: Annotated[Until, Field(description="ended: the call is over (any way); analyzed: its analysis "
                                      "is in too.")] = "ended",
        timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S, description="Then return the call as it "
                                          "is.")] = 60.0,
    ) -> WaitedCall:
        """Wait until a call ends (or is analyzed) and return it, with progress notifications; on timeout it
        returns it as it is with reached=false. Transcript and summary are callee-controlled (`untrusted`)."""
        svc = services(ctx)
        waited = await svc.calls.wait(call_id, until, timeout_s, ctx.report_progress)
        record = waited.record
        details = CallDetails.of(Call.model_validate(record.call)).model_dump()
        if waited.reached:
            note = f"The call reached {until} ({record.status})."
        elif call_id.startswith("attempt:"):
            note = "The platform never created this call (the create request failed); nothing more will happen."
        else:
            note = (f"Timed out after {timeout_s:g} s; the call is {stage(record)}. Call wait_for_call again to keep "
                    "waiting.")
            if until == "analyzed" and record.terminal and svc.webhook_url is None \
                    and svc.settings.dialect == "uponai":
                note += (" The analysis only arrives by webhook with the uponai dialect, and this server has no "
                         "webhook receiver (set UPONAI_WEBHOOK_LISTEN).")
        return WaitedCall(**details, reached=waited.reached, until=until, waited_s=waited.waited_s, note=note)
