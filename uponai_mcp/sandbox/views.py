"""How records look on the wire in each dialect (Retell snake_case objects, UponAI native records)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import phonenumbers

from uponai_mcp.models import ProviderKind, WeightedAgent

from .records import AgentRec, AgentVersion, CallRec, NumberRec

DEFAULT_MAX_CALL_MS = 3_600_000


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pretty(number: str) -> str:
    if number.startswith("+1") and len(number) == 12 and number[1:].isdigit():
        return f"+1 ({number[2:5]}) {number[5:8]}-{number[8:]}"
    try:
        return phonenumbers.format_number(phonenumbers.parse(number, None), phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        return number


def _weighted(items: list[WeightedAgent] | None, *, native: bool) -> list[dict[str, Any]] | None:
    if not items:
        return [] if native else None
    return [a.model_dump() if native else a.model_dump(exclude_none=True) for a in items]


# --- retell -------------------------------------------------------------------------------------


def retell_number(n: NumberRec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "phone_number": n.phone_number,
        "phone_number_type": n.kind.to_wire(),
        "phone_number_pretty": pretty(n.phone_number),
        "nickname": n.nickname,
        "inbound_agents": _weighted(n.inbound_agents, native=False),
        "outbound_agents": _weighted(n.outbound_agents, native=False),
        "inbound_webhook_url": n.inbound_webhook_url,
        "allowed_inbound_country_list": n.allowed_inbound_country_list,
        "allowed_outbound_country_list": n.allowed_outbound_country_list,
        "last_modification_timestamp": n.modified_ms,
        "sip_outbound_trunk_config": None,
        "fallback_number": None,
    }
    if n.phone_number.startswith("+1") and len(n.phone_number) == 12:
        out["area_code"] = int(n.phone_number[2:5])
    if n.kind is ProviderKind.CUSTOM:
        out["sip_outbound_trunk_config"] = {"termination_uri": n.termination_uri, "auth_username": None,
                                            "transport": "TCP"}
    return out


def retell_agent(agent: AgentRec, av: AgentVersion) -> dict[str, Any]:
    return {
        "agent_id": agent.agent_id,
        "version": av.version,
        "is_published": av.is_published,
        "agent_name": av.agent_name,
        "voice_id": av.voice_id,
        "language": av.language,
        "response_engine": {"type": "retell-llm", "llm_id": f"llm_{agent.agent_id}", "version": av.version},
        "max_call_duration_ms": DEFAULT_MAX_CALL_MS,
        "webhook_url": None,
        "last_modification_timestamp": av.modified_ms,
        # sandbox extras: every version and the greeting, so clients can show them without another call
        "versions": sorted(agent.versions),
        "begin_message": av.begin_message,
    }


def retell_agent_item(agent: AgentRec) -> dict[str, Any]:
    """An item of POST /v2/list-agents: the list fields plus the latest version's agent object."""
    item = retell_agent(agent, agent.latest)
    item.update(channel="voice", tags={}, user_modified_timestamp=agent.latest.modified_ms)
    return item


# --- uponai -------------------------------------------------------------------------------------


def native_call(rec: CallRec) -> dict[str, Any]:
    d = rec.data
    duration = d.get("duration_ms")
    return {
        "callId": rec.call_id,
        "callType": d["call_type"],
        "status": d["call_status"],
        "agentId": d["agent_id"],
        "agentVersion": d["agent_version"],
        "metadata": d.get("metadata"),
        "uponai_dynamic_variables": d.get("retell_llm_dynamic_variables"),
        "fromNumber": d["from_number"],
        "toNumber": d["to_number"],
        "direction": d["direction"],
        "startedAt": iso(d.get("start_timestamp")),
        "endedAt": iso(d.get("end_timestamp")),
        "duration": round(duration / 1000) if duration is not None else None,
        "disconnectionReason": d.get("disconnection_reason"),
        "recordingUrl": d.get("recording_url"),
        "optOutSensitiveDataStorage": False,
        "accessToken": None,
        "expiresAt": None,
        "webCallUrl": None,
    }


def native_number(n: NumberRec, account_sid: str, workspace_id: int) -> dict[str, Any]:
    return {
        "id": n.id,
        "number": n.phone_number,
        "account_sid": account_sid,
        "workspace_id": workspace_id,
        "inbound_agents": _weighted(n.inbound_agents, native=True),
        "outbound_agents": _weighted(n.outbound_agents, native=True),
        "inbound_webhook_url": n.inbound_webhook_url,
        "phone_number_type": n.kind.to_wire(),
        "agent_id": n.outbound_agents[0].agent_id if n.outbound_agents else None,
        "inbound_agent_id": n.inbound_agents[0].agent_id if n.inbound_agents else None,
        "is_time_routing_enabled": False,
        "platform_import_error": False,
    }


def native_agent(agent: AgentRec, av: AgentVersion) -> dict[str, Any]:
    return {
        "agent_id": agent.agent_id,
        "version": av.version,
        "agent_name": av.agent_name,
        "voice_id": av.voice_id,
        "response_engine": {"type": "uponai-llm", "llm_id": f"llm_{agent.agent_id}"},
        "max_call_duration_ms": DEFAULT_MAX_CALL_MS,
        "interruption_sensitivity": None,
        "responsiveness": None,
        "created_at": iso(av.modified_ms),
        "updated_at": iso(av.modified_ms),
        "versions": sorted(agent.versions),
        "begin_message": av.begin_message,
    }
