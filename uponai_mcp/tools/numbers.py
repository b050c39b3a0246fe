"""Number and agent tools: list_phone_numbers, list_agents, bind_agent."""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from uponai_mcp.errors import Refused
from uponai_mcp.models import Agent, BindingUpdate, WeightedAgent
from uponai_mcp.tools._common import IDEMPOTENT_WRITE, READ, services
from uponai_mcp.views import NumberView

AgentId = Annotated[str | None, Field(min_length=1, max_length=128)]
AgentVersion = Annotated[int | None, Field(ge=0, description="Pinned version; latest when omitted.")]
AgentList = Annotated[list[WeightedAgent] | None, Field(
    description="Weighted A/B split; weights sum to 1.", max_length=20,
)]


class NumberList(BaseModel):
    numbers: list[NumberView]


class AgentList_(BaseModel):
    agents: list[Agent]


class BindingChange(BaseModel):
    """A number's bindings before and after the change."""

    phone_number: str
    before: NumberView
    after: NumberView


def _direction(name: str, agent_id: str | None, version: int | None, agents: list[WeightedAgent] | None,
               unset: bool) -> list[WeightedAgent] | None:
    """One direction of the change: None leaves it alone, [] unsets it."""
    given = [label for label, present in ((f"{name}_agent_id", agent_id is not None),
                                          (f"{name}_agents", agents is not None),
                                          (f"unset_{name}", unset)) if present]
    if len(given) > 1:
        raise Refused("invalid_argument", f"Give only one of {', '.join(given)} for the {name} direction.")
    if version is not None and agent_id is None:
        raise Refused("invalid_argument", f"{name}_agent_version needs {name}_agent_id.")
    if unset:
        return []
    if agent_id is not None:
        return [WeightedAgent(agent_id=agent_id, agent_version=version, weight=1.0)]
    return agents


def register(mcp: MCPServer) -> None:
    @mcp.tool(title="List phone numbers", annotations=READ)
    async def list_phone_numbers(ctx: Context) -> NumberList:
        """The account's numbers with provider (twilio, telnyx, custom), CPS scope and agent bindings."""
        svc = services(ctx)
        numbers = await svc.directory.numbers(fresh=True)
        return NumberList(numbers=[NumberView.of(n) for n in numbers])

    @mcp.tool(title="List agents", annotations=READ)
    async def list_agents(ctx: Context) -> AgentList_:
        """The account's voice agents with their versions."""
        svc = services(ctx)
        return AgentList_(agents=await svc.directory.agents())

    @mcp.tool(title="Bind agents to a phone number", annotations=IDEMPOTENT_WRITE)
    async def bind_agent(
        ctx: Context,
        phone_number: Annotated[str, Field(description="A number of this account, E.164.", min_length=1,
                                           max_length=64)],
        inbound_agent_id: AgentId = None,
        inbound_agent_version: AgentVersion = None,
        outbound_agent_id: AgentId = None,
        outbound_agent_version: AgentVersion = None,
        inbound_agents: AgentList = None,
        outbound_agents: AgentList = None,
        unset_inbound: Annotated[bool, Field(description="Stop answering inbound calls (outbound-only).")] = False,
        unset_outbound: Annotated[bool, Field(description="Remove the outbound agent (inbound-only).")] = False,
    ) -> BindingChange:
        """Set which agents answer (inbound) and place (outbound) calls on a number: one agent per direction,
        different agents per direction, a weighted A/B split, a pinned version, or unset a direction.
        Directions not mentioned stay as they are."""
        svc = services(ctx)
        update = BindingUpdate(
            inbound_agents=_direction("inbound", inbound_agent_id, inbound_agent_version, inbound_agents,
                                      unset_inbound),
            outbound_agents=_direction("outbound", outbound_agent_id, outbound_agent_version,
                                       outbound_agents, unset_outbound),
        )
        if update.inbound_agents is None and update.outbound_agents is None:
            raise Refused("invalid_argument", "Say what to bind: an inbound or outbound agent, a weighted "
                          "list, or unset_inbound / unset_outbound.")
        before, after = await svc.bind(phone_number, update)
        return BindingChange(phone_number=phone_number, before=NumberView.of(before), after=NumberView.of(after))
