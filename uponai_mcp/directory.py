"""The account's numbers and agents, cached briefly: every dial checks its from-number against them."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from uponai_mcp.api import UponAIClient
from uponai_mcp.api import errors as api_errors
from uponai_mcp.errors import Refused, from_api_error
from uponai_mcp.models import Agent, BindingUpdate, PhoneNumber, WeightedAgent


class Directory:
    def __init__(self, api: UponAIClient, *, ttl_s: float = 30.0, monotonic: Callable[[], float] = time.monotonic):
        self._api = api
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._numbers: list[PhoneNumber] | None = None
        self._fetched_at = 0.0
        self._agents: dict[str, Agent] | None = None
        self._agents_at = 0.0
        self._lock = anyio.Lock()

    async def numbers(self, *, fresh: bool = False) -> list[PhoneNumber]:
        async with self._lock:
            stale = self._numbers is None or self._monotonic() - self._fetched_at > self._ttl_s
            if fresh or stale:
                try:
                    self._numbers = await self._api.list_phone_numbers()
                except api_errors.ApiError as exc:
                    raise from_api_error(exc, what="The phone number list") from exc
                self._fetched_at = self._monotonic()
            return list(self._numbers)

    async def number(self, phone_number: str) -> PhoneNumber:
        for n in await self.numbers():
            if n.phone_number == phone_number:
                return n
        for n in await self.numbers(fresh=True):
            if n.phone_number == phone_number:
                return n
        raise Refused(
            "not_found", f"{phone_number} is not a number of this account; list_phone_numbers shows the numbers."
        )

    async def agents(self, *, fresh: bool = True) -> list[Agent]:
        """The account's agents; `fresh=False` accepts the cached list (at most `ttl_s` old)."""
        stale = self._agents is None or self._monotonic() - self._agents_at > self._ttl_s
        if fresh or stale:
            try:
                listed = await self._api.list_agents()
            except api_errors.ApiError as exc:
                raise from_api_error(exc, what="The agent list") from exc
            self._agents, self._agents_at = {a.agent_id: a for a in listed}, self._monotonic()
            return listed
        return list((self._agents or {}).values())

    async def require_agent(self, agent_id: str, version: int | None = None) -> Agent:
        """The agent (at that version), or a `not_found` refusal naming what exists. Served from the cached
        list; an agent or version it does not know yet is looked up once more before refusing."""
        await self.agents(fresh=False)
        agent = (self._agents or {}).get(agent_id)
        if agent is None or (version is not None and agent.versions and version not in agent.versions):
            await self.agents(fresh=True)
            agent = (self._agents or {}).get(agent_id)
        if agent is None:
            known = ", ".join(sorted(self._agents or {})) or "none"
            what = f"agent {agent_id}" + (f" version {version}" if version is not None else "")
            raise Refused("not_found", f"There is no {what}; known agents: {known}.")
        if version is not None and agent.versions and version not in agent.versions:
            raise Refused(
                "not_found",
                f"Agent {agent_id} has no version {version}; its versions are "
                f"{', '.join(map(str, agent.versions))}.",
            )
        return agent

    async def require_agents(self, agents: list[WeightedAgent] | None) -> None:
        for a in agents or []:
            await self.require_agent(a.agent_id, a.agent_version)

    async def bind(self, phone_number: str, update: BindingUpdate) -> tuple[PhoneNumber, PhoneNumber]:
        """Apply a binding change; returns the number before and after."""
        before = await self.number(phone_number)
        await self.require_agents(update.inbound_agents)
        await self.require_agents(update.outbound_agents)
        try:
            after = await self._api.bind_agents(phone_number, update)
        except api_errors.ApiError as exc:
            raise from_api_error(exc, what=f"Number {phone_number}") from exc
        async with self._lock:
            self._numbers = None  # the next dial sees the new binding
        return before, after
