"""Wire mapping between the canonical models and the two dialects (docs/wire.md).

Pure functions, no I/O. `retell_*` speak Retell's snake_case API; `native_*` speak UponAI's
camelCase API. Readers are tolerant: missing envelopes and unknown fields are accepted.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from uponai_mcp.models import (
    ATTEMPT_KEY,
    Agent,
    BindingUpdate,
    Call,
    CallFilter,
    CallRequest,
    Concurrency,
    PhoneNumber,
    ProviderKind,
    WeightedAgent,
)

_CALL_FIELDS = frozenset(Call.model_fields)


# --- shared --------------------------------------------------------------------------------------


def tagged_metadata(request: CallRequest, attempt_id: str) -> dict[str, Any]:
    return {**(request.metadata or {}), ATTEMPT_KEY: attempt_id}


def pick_weighted(agents: list[WeightedAgent], rng: random.Random) -> WeightedAgent:
    """Draw one agent by weight (A/B split); weights need not sum exactly to 1."""
    total = sum(a.weight for a in agents)
    point = rng.random() * total
    for agent in agents:
        point -= agent.weight
        if point < 0:
            return agent
    return agents[-1]


def unwrap(body: Any, key: str) -> Any:
    """`{"success": true, key: X}` -> X; a bare X passes through (the envelopes are partly guessed)."""
    if isinstance(body, dict) and key in body:
        return body[key]
    return body


def items_of(body: Any, *keys: str) -> list[dict[str, Any]]:
    """The list in a paged or enveloped response, or the response itself when it is a bare list."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in keys:
            if isinstance(body.get(key), list):
                return body[key]
    return []


def weighted_agents(raw: Any) -> list[WeightedAgent]:
    """Parse a weighted agent list; percent-style weights (summing to ~100) are scaled to fractions."""
    items = [a for a in (raw or []) if isinstance(a, dict) and a.get("agent_id")]
    if not items:
        return []
    weights = [float(a.get("weight") or 0) or 1.0 for a in items]
    total = sum(weights)
    scale = total if total > 1.0 + 1e-6 else 1.0
    return [
        WeightedAgent(agent_id=a["agent_id"], agent_version=a.get("agent_version"), weight=w / scale)
        for a, w in zip(items, weights, strict=True)
    ]


def weighted_wire(agents: list[WeightedAgent]) -> list[dict[str, Any]]:
    return [a.model_dump(exclude_none=True) for a in agents]


def agents_from_records(records: list[dict[str, Any]]) -> list[Agent]:
    """One Agent per agent_id (legacy lists repeat an agent per version): the latest, with all versions."""
    by_id: dict[str, Agent] = {}
    for record in records:
        agent = Agent.model_validate(record)
        seen = by_id.get(agent.agent_id)
        versions = sorted({*(seen.versions if seen else []), *agent.versions,
                           *([agent.version] if agent.version is not None else [])})
        if seen is None or (agent.version or 0) >= (seen.version or 0):
            by_id[agent.agent_id] = agent.model_copy(update={"versions": versions})
        else:
            by_id[agent.agent_id] = seen.model_copy(update={"versions": versions})
    return list(by_id.values())


def _iso_to_ms(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):  # tolerate epoch ms
        return int(value)
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def ms_to_iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- retell dialect ------------------------------------------------------------------------------


def retell_create_body(request: CallRequest, attempt_id: str) -> dict[str, Any]:
    body = request.model_dump(exclude_none=True, mode="json")
    if not body.get("ignore_e164_validation"):
        body.pop("ignore_e164_validation", None)
    body["metadata"] = tagged_metadata(request, attempt_id)
    body["idempotency_key"] = attempt_id  # same key within 1 h returns the first call
    return body


def retell_list_filter(f: CallFilter) -> dict[str, Any]:
    """CallFilter -> v3 typed `filter_criteria`."""
    crit: dict[str, Any] = {}
    if f.agent_id:
        crit["agent"] = [{"agent_id": f.agent_id}]
    if f.call_status:
        crit["call_status"] = {"type": "enum", "op": "in", "value": [str(f.call_status)]}
    for key in ("from_number", "to_number"):
        if getattr(f, key):
            crit[key] = {"type": "string", "op": "eq", "value": getattr(f, key)}
    lo, hi = f.start_after_ms, f.start_before_ms
    if lo is not None and hi is not None:
        crit["start_timestamp"] = {"type": "range", "op": "bt", "value": [lo, hi]}
    elif lo is not None:
        crit["start_timestamp"] = {"type": "number", "op": "ge", "value": lo}
    elif hi is not None:
        crit["start_timestamp"] = {"type": "number", "op": "le", "value": hi}
    if f.metadata:
        crit["metadata"] = [{"key": k, "type": "string", "op": "eq", "value": v} for k, v in f.metadata.items()]
    return crit


def retell_number(record: dict[str, Any]) -> PhoneNumber:
    return PhoneNumber(
        phone_number=record["phone_number"],
        kind=ProviderKind.from_wire(record.get("phone_number_type")),
        nickname=record.get("nickname"),
        inbound_agents=weighted_agents(record.get("inbound_agents")),
        outbound_agents=weighted_agents(record.get("outbound_agents")),
        allowed_outbound_country_list=record.get("allowed_outbound_country_list"),
        last_modification_timestamp=record.get("last_modification_timestamp"),
    )


def binding_body(update: BindingUpdate) -> dict[str, Any]:
    """Only the directions being changed; [] unsets a direction (the key's absence leaves it)."""
    body: dict[str, Any] = {}
    if update.inbound_agents is not None:
        body["inbound_agents"] = weighted_wire(update.inbound_agents)
    if update.outbound_agents is not None:
        body["outbound_agents"] = weighted_wire(update.outbound_agents)
    return body


def retell_concurrency(body: dict[str, Any]) -> Concurrency:
    return Concurrency.model_validate(body)


# --- uponai native dialect -----------------------------------------------------------------------

# Retell's override groups and their native names.
_OVERRIDE_GROUPS = {"agent": "agent", "retell_llm": "llm", "conversation_flow": "conversationFlow"}


def camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_keys(value: Any) -> Any:
    """snake_case -> camelCase keys, recursively through dicts and lists."""
    if isinstance(value, dict):
        return {camel(k) if isinstance(k, str) else k: camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


def native_agent_override(request: CallRequest) -> dict[str, Any] | None:
    if request.agent_override is None:
        return None
    dumped = request.agent_override.model_dump(exclude_none=True, mode="json")
    out = {_OVERRIDE_GROUPS[group]: camel_keys(fields) for group, fields in dumped.items() if fields}
    return out or None


def native_create_body(
    request: CallRequest, attempt_id: str, *, workspace_id: int, agent_id: str, agent_version: int | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "workspaceId": workspace_id,
        "agentId": agent_id,
        "fromNumber": request.from_number,
        "toNumber": request.to_number,
        "metadata": tagged_metadata(request, attempt_id),
    }
    optional = {
        "overrideAgentVersion": agent_version,
        "agentOverride": native_agent_override(request),
        "uponai_dynamic_variables": request.retell_llm_dynamic_variables,
        "customSipHeaders": request.custom_sip_headers,
        "ignoreE164Validation": True if request.ignore_e164_validation else None,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def native_call(record: dict[str, Any]) -> Call:
    """A native call record (or history row) -> the canonical Call."""
    out: dict[str, Any] = {k: v for k, v in record.items() if k in _CALL_FIELDS and v is not None}
    renames = {
        "callType": "call_type", "agentId": "agent_id", "agentVersion": "agent_version",
        "agentName": "agent_name", "fromNumber": "from_number", "toNumber": "to_number",
        "disconnectionReason": "disconnection_reason", "recordingUrl": "recording_url",
        "uponai_dynamic_variables": "retell_llm_dynamic_variables", "customSipHeaders": "custom_sip_headers",
    }
    for src, dst in renames.items():
        if record.get(src) is not None:
            out[dst] = record[src]
    call_id = record.get("callId") or record.get("callSid") or record.get("call_sid") or record.get("call_id")
    status = record.get("status") or record.get("callStatus") or record.get("call_status")
    if status:
        out["call_status"] = status
    out["call_id"] = call_id
    start = _iso_to_ms(record.get("startedAt"))
    end = _iso_to_ms(record.get("endedAt"))
    if start is not None:
        out["start_timestamp"] = start
    duration = record.get("duration")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        out["duration_ms"] = int(round(duration * 1000))
    if end is None and start is not None and "duration_ms" in out:
        end = start + out["duration_ms"]  # history rows carry startedAt + duration only
    if end is not None:
        out["end_timestamp"] = end
    return Call.model_validate(out)


def native_create_response(body: Any) -> Call:
    """`{success, call_sid, call: {success, call: <native>}}`; tolerate a flatter shape."""
    inner = unwrap(body, "call")
    inner = unwrap(inner, "call")
    record = dict(inner) if isinstance(inner, dict) else {}
    if not (record.get("callId") or record.get("call_id")) and isinstance(body, dict) and body.get("call_sid"):
        record["callId"] = body["call_sid"]
    return native_call(record)


def native_list_params(f: CallFilter, *, workspace_id: int | None, page: int) -> dict[str, Any]:
    return {
        "workspaceId": workspace_id,
        "agentId": f.agent_id,
        "status": str(f.call_status) if f.call_status else None,
        "fromDate": ms_to_iso(f.start_after_ms) if f.start_after_ms is not None else None,
        "toDate": ms_to_iso(f.start_before_ms) if f.start_before_ms is not None else None,
        "page": page,
        "limit": f.limit,
    }


def matches_client_side(call: Call, f: CallFilter) -> bool:
    """The CallFilter parts the native list cannot filter on."""
    if f.from_number and call.from_number != f.from_number:
        return False
    if f.to_number and call.to_number != f.to_number:
        return False
    meta = call.metadata or {}
    return all(str(meta.get(k)) == v and k in meta for k, v in (f.metadata or {}).items())


def native_has_more(body: Any, page: int, limit: int, returned: int) -> bool:
    pagination = body.get("pagination") if isinstance(body, dict) else None
    if isinstance(pagination, dict):
        if isinstance(pagination.get("pages"), int):
            return page < pagination["pages"]
        if isinstance(pagination.get("total"), int):
            return page * (pagination.get("limit") or limit) < pagination["total"]
    return returned >= limit


def native_number(record: dict[str, Any]) -> PhoneNumber:
    """A native number record (snake_case); legacy single-agent fields become one-item lists."""

    def direction(name: str) -> list[WeightedAgent]:
        agents = weighted_agents(record.get(f"{name}_agents"))
        if not agents and record.get(f"{name}_agent_id"):
            agents = [WeightedAgent(agent_id=record[f"{name}_agent_id"],
                                    agent_version=record.get(f"{name}_agent_version"), weight=1.0)]
        return agents

    return PhoneNumber(
        phone_number=record.get("number") or record.get("phone_number"),
        kind=ProviderKind.from_wire(record.get("phone_number_type")),
        nickname=record.get("nickname"),
        inbound_agents=direction("inbound"),
        outbound_agents=direction("outbound"),
        allowed_outbound_country_list=record.get("allowed_outbound_country_list"),
        last_modification_timestamp=record.get("last_modification_timestamp"),
    )


def native_binding_body(update: BindingUpdate, *, account_sid: str, workspace_id: int) -> dict[str, Any]:
    body: dict[str, Any] = {"accountSid": account_sid, "workspaceId": workspace_id}
    if update.inbound_agents is not None:
        body["inboundAgents"] = weighted_wire(update.inbound_agents)
    if update.outbound_agents is not None:
        body["outboundAgents"] = weighted_wire(update.outbound_agents)
    return body


def native_concurrency(body: Any) -> Concurrency:
    data = unwrap(body, "concurrency")
    return Concurrency(
        current_concurrency=data.get("currentUsage", data.get("current_concurrency", 0)),
        concurrency_limit=data.get("maxConcurrent", data.get("concurrency_limit", 0)),
        purchased_concurrency=data.get("purchasedConcurrency"),
        concurrency_purchase_limit=data.get("concurrencyPurchaseLimit"),
        base_concurrency=data.get("baseConcurrency"),
        concurrency_burst_limit=data.get("concurrencyBurstLimit"),
    )
