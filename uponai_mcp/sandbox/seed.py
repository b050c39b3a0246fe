"""The account the sandbox starts with, and loading a JSON fixture that replaces it (docs/sandbox.md)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from uponai_mcp.models import ProviderKind, WeightedAgent, check_weights

from .records import AgentRec, AgentVersion, NumberRec

WORKSPACE_ID = 1
ACCOUNT_SID = "5b1f6c2e-8a4d-4f3b-9c7e-1d2a3b4c5d6e"

SALES_GREETING = (
    "Hi {{customer_name}}, this is Alex from UponAI sales. "
    "Do you have a minute to talk about automating your phone calls?"
)
SUPPORT_GREETING = "Thanks for calling UponAI support, this is Sam. How can I help you today?"

DEFAULT_SEED: dict[str, Any] = {
    "workspace_id": WORKSPACE_ID,
    "account_sid": ACCOUNT_SID,
    "agents": [
        {
            "agent_id": "agent_sales",
            "agent_name": "Alex (UponAI sales)",
            "voice_id": "11labs-Adrian",
            "language": "en-US",
            "begin_message": SALES_GREETING,
            "versions": [1, 2, 3],
        },
        {
            "agent_id": "agent_support",
            "agent_name": "Sam (UponAI support)",
            "voice_id": "11labs-Myra",
            "language": "en-US",
            "begin_message": SUPPORT_GREETING,
            "versions": [1],
        },
    ],
    "phone_numbers": [
        {
            "phone_number": "+14155550100",
            "type": "twilio",
            "nickname": "Sales line (Twilio)",
            "inbound_agents": [{"agent_id": "agent_support", "agent_version": 1, "weight": 1}],
            "outbound_agents": [{"agent_id": "agent_sales", "agent_version": 3, "weight": 1}],
        },
        {
            "phone_number": "+14155550101",
            "type": "telnyx",
            "nickname": "Sales overflow (Telnyx)",
            "inbound_agents": None,
            "outbound_agents": [{"agent_id": "agent_sales", "weight": 1}],
        },
        {
            "phone_number": "+14155550102",
            "type": "custom",
            "nickname": "Office SIP trunk (imported)",
            "inbound_agents": [{"agent_id": "agent_support", "weight": 1}],
            "outbound_agents": None,
            "termination_uri": "sandbox-trunk.pstn.example.com",
        },
    ],
}

_KINDS = {
    "twilio": ProviderKind.TWILIO, "retell-twilio": ProviderKind.TWILIO,
    "telnyx": ProviderKind.TELNYX, "retell-telnyx": ProviderKind.TELNYX,
    "custom": ProviderKind.CUSTOM,
}


@dataclass
class Seed:
    workspace_id: int
    account_sid: str
    agents: dict[str, AgentRec]
    numbers: dict[str, NumberRec]


def load_fixture(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"fixture {path}: {exc}") from exc
    build_seed(data)  # fail at start-up, not at the first request
    return data


def build_seed(data: Any) -> Seed:
    """Turn seed data (DEFAULT_SEED's format) into fresh records; ValueError says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("fixture: the top level must be a JSON object")
    now = int(time.time() * 1000)
    workspace_id = data.get("workspace_id", WORKSPACE_ID)
    account_sid = data.get("account_sid", ACCOUNT_SID)
    if not isinstance(workspace_id, int) or isinstance(workspace_id, bool):
        raise ValueError("fixture: workspace_id must be an integer")
    if not isinstance(account_sid, str) or not account_sid:
        raise ValueError("fixture: account_sid must be a non-empty string")
    agents = {}
    for i, raw in enumerate(_list(data, "agents")):
        agent = _agent(raw, f"agents[{i}]", now)
        agents[agent.agent_id] = agent
    numbers = {}
    for i, raw in enumerate(_list(data, "phone_numbers")):
        number = _number(raw, f"phone_numbers[{i}]", i + 1, agents, now)
        numbers[number.phone_number] = number
    return Seed(workspace_id, account_sid, agents, numbers)


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"fixture: {key} must be a list")
    return value


def _str(raw: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value:
        raise ValueError(f"fixture: {where}.{key} must be a non-empty string")
    return value


def _agent(raw: Any, where: str, now: int) -> AgentRec:
    if not isinstance(raw, dict):
        raise ValueError(f"fixture: {where} must be an object")
    agent_id = _str(raw, "agent_id", where)
    name = _str(raw, "agent_name", where, agent_id)
    base = {
        "agent_name": name,
        "voice_id": _str(raw, "voice_id", where, "11labs-Adrian"),
        "language": _str(raw, "language", where, "en-US"),
        "begin_message": _str(raw, "begin_message", where, f"Hello, this is {name}."),
    }
    versions: dict[int, AgentVersion] = {}
    for j, v in enumerate(raw.get("versions", [1])):
        # A version is an int, or {"version": n, ...fields that differ from the agent's}.
        fields = dict(base)
        if isinstance(v, dict):
            fields.update({k: v[k] for k in base if isinstance(v.get(k), str)})
            v = v.get("version")
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"fixture: {where}.versions[{j}] must be an integer >= 1")
        versions[v] = AgentVersion(version=v, is_published=True, modified_ms=now, **fields)
    if not versions:
        raise ValueError(f"fixture: {where}.versions must not be empty")
    return AgentRec(agent_id, versions)


def _number(raw: Any, where: str, id_: int, agents: dict[str, AgentRec], now: int) -> NumberRec:
    if not isinstance(raw, dict):
        raise ValueError(f"fixture: {where} must be an object")
    number = _str(raw, "phone_number", where)
    kind = _KINDS.get(raw.get("type", raw.get("phone_number_type", "")))
    if kind is None:
        raise ValueError(f"fixture: {where}.type must be one of twilio, telnyx, custom")
    lists = {}
    for direction in ("inbound", "outbound"):
        key = f"{direction}_agents"
        try:
            items = [WeightedAgent.model_validate(a) for a in raw.get(key) or []]
            check_weights(items, direction)
        except (ValidationError, ValueError, TypeError) as exc:
            raise ValueError(f"fixture: {where}.{key}: {exc}") from exc
        for a in items:
            if a.agent_id not in agents or agents[a.agent_id].get(a.agent_version) is None:
                raise ValueError(f"fixture: {where}.{key}: unknown agent {a.agent_id} v{a.agent_version}")
        lists[key] = items or None
    countries = raw.get("allowed_outbound_country_list")
    if countries is not None and not (isinstance(countries, list) and all(isinstance(c, str) for c in countries)):
        raise ValueError(f"fixture: {where}.allowed_outbound_country_list must be a list of ISO codes")
    return NumberRec(
        id=id_, phone_number=number, kind=kind, nickname=raw.get("nickname"), modified_ms=now,
        allowed_outbound_country_list=countries, termination_uri=raw.get("termination_uri"),
        inbound_webhook_url=raw.get("inbound_webhook_url"), **lists,
    )
