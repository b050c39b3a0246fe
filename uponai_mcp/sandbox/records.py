"""In-memory records of the simulated account: agents, phone numbers, calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from uponai_mcp.models import ProviderKind, WeightedAgent


@dataclass
class AgentVersion:
    version: int
    agent_name: str
    voice_id: str
    language: str
    begin_message: str
    is_published: bool
    modified_ms: int


@dataclass
class AgentRec:
    agent_id: str
    versions: dict[int, AgentVersion]

    @property
    def latest(self) -> AgentVersion:
        return self.versions[max(self.versions)]

    def get(self, version: int | None) -> AgentVersion | None:
        return self.latest if version is None else self.versions.get(version)


@dataclass
class NumberRec:
    id: int
    phone_number: str
    kind: ProviderKind
    nickname: str | None
    # None = that direction is unset (the platform reports null); never an empty list.
    inbound_agents: list[WeightedAgent] | None
    outbound_agents: list[WeightedAgent] | None
    modified_ms: int
    inbound_webhook_url: str | None = None
    allowed_inbound_country_list: list[str] | None = None
    allowed_outbound_country_list: list[str] | None = None
    termination_uri: str | None = None


@dataclass
class CallRec:
    """One call. `data` is the Retell-shaped call object as the platform reports it right now."""

    seq: int
    call_id: str
    created_at_ms: int
    scope: str
    outcome: str
    holds_slot: bool  # counts against concurrency while registered/ongoing
    dialect: str  # which API created it (retell | uponai)
    data: dict[str, Any]
    wav: bytes | None = None
    events: list[str] = field(default_factory=list)  # webhook events emitted, in order

    @property
    def status(self) -> str:
        return self.data["call_status"]

    @property
    def sort_ms(self) -> int:
        # Registered calls have no start_timestamp yet; they sort (and filter) by acceptance time.
        return self.data.get("start_timestamp") or self.created_at_ms
