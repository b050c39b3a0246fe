"""The sandbox's routes in both dialects, auth, error shapes, hostile input and determinism."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from uponai_mcp.models import Agent, Call, Concurrency, PhoneNumber, ProviderKind
from uponai_mcp.sandbox import SandboxConfig, create_app, running_sandbox
from uponai_mcp.sandbox.seed import ACCOUNT_SID

pytestmark = pytest.mark.anyio

SALES = "+14155550100"  # twilio, outbound agent_sales v3
TELNYX = "+14155550101"  # telnyx, outbound agent_sales (latest)
TRUNK = "+14155550102"  # custom telephony, no outbound agent


async def wait_for(client: httpx.AsyncClient, call_id: str, key: str = "call_analysis") -> dict:
    deadline = time.monotonic() + 5
    while True:
        call = (await client.get(f"/v2/get-call/{call_id}")).json()
        if call.get(key) is not None:
            return call
        assert time.monotonic() < deadline, f"{call_id} never got {key}: {call['call_status']}"
        await asyncio.sleep(0.01)


async def raise_cps(client: httpx.AsyncClient) -> None:
    r = await client.post("/_sandbox/cps", json={"twilio": 1000, "telnyx": 1000, "custom": 1000})
    assert r.status_code == 200


def phone_number(obj: dict) -> PhoneNumber:
    """Canonical form; the platform reports an unset direction as null."""
    return PhoneNumber.model_validate({**obj, "kind": ProviderKind.from_wire(obj["phone_number_type"]),
                                       "inbound_agents": obj["inbound_agents"] or [],
                                       "outbound_agents": obj["outbound_agents"] or []})


# --- auth and error shapes -----------------------------------------------------------------------


async def test_missing_or_wrong_key_is_401_in_each_dialects_shape(sandbox):
    async with httpx.AsyncClient(base_url=sandbox.url) as anon:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "sk_sandbox"}):
            r = await anon.get("/v2/get-call/call_x", headers=headers)
            assert r.status_code == 401
            assert r.json() == {"status": "error", "message": "API key is missing or invalid."}
            r = await anon.get("/api/concurrency?workspaceId=1", headers=headers)
            assert r.status_code == 401
            assert r.json()["success"] is False and r.json()["message"]
            r = await anon.get("/_sandbox/stats", headers=headers)
            assert r.status_code == 401
        r = await anon.post("/v2/create-phone-call", json={"from_number": SALES, "to_number": "+14155552670"})
        assert r.status_code == 401
    assert sandbox.engine.calls == {}


async def test_unknown_routes_and_wrong_methods(sandbox_client):
    r = await sandbox_client.get("/v2/nothing-here")
    assert r.status_code == 404 and r.json()["status"] == "error"
    r = await sandbox_client.get("/api/v1/nothing")
    assert r.status_code == 404 and r.json()["success"] is False
    r = await sandbox_client.get("/v2/create-phone-call")
    assert r.status_code == 405 and r.json()["status"] == "error"
    r = await sandbox_client.delete("/api/v1/calls/initiate")
    assert r.status_code == 405 and r.json()["success"] is False


# --- retell dialect --------------------------------------------------------------------------------


async def test_retell_create_and_get_call(sandbox_client):
    body = {"from_number": SALES, "to_number": "+14155552670", "metadata": {"crm": "42"},
            "retell_llm_dynamic_variables": {"customer_name": "Dana"},
            "custom_sip_headers": {"X-Campaign": "spring"},
            "drop_call_if_machine_detected": True}  # an SDK field the sandbox does not model: tolerated
    r = await sandbox_client.post("/v2/create-phone-call", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    call = Call.model_validate(created)
    assert call.call_id.startswith("call_") and call.call_status == "registered"
    for key in ("call_id", "agent_id", "agent_version", "call_status", "call_type", "from_number", "to_number",
                "direction"):
        assert key in created  # V2PhoneCallResponse required fields
    assert (call.agent_id, call.agent_version, call.agent_name) == ("agent_sales", 3, "Alex (UponAI sales)")
    assert call.metadata == {"crm": "42"} and call.custom_sip_headers == {"X-Campaign": "spring"}
    assert created["telephony_identifier"]["twilio_call_sid"].startswith("CA")
    r = await sandbox_client.get(f"/v2/get-call/{call.call_id}")
    assert r.status_code == 200 and r.json()["call_id"] == call.call_id
    r = await sandbox_client.get("/v2/get-call/call_doesnotexist")
    assert r.status_code == 404 and r.json() == {"status": "error", "message": "Call call_doesnotexist not found."}


async def test_retell_list_calls_v3_filters_and_pages(sandbox_client):
    await raise_cps(sandbox_client)
    ids = []
    for i, (src, dst) in enumerate([(SALES, "+14155552670"), (TELNYX, "+14155552671"), (SALES, "+14155552672")]):
        r = await sandbox_client.post("/v2/create-phone-call", json={
            "from_number": src, "to_number": dst, "metadata": {"batch": "b1", "n": str(i)}})
        assert r.status_code == 201, r.text
        ids.append(r.json()["call_id"])
        await asyncio.sleep(0.002)  # distinct acceptance times

    async def v3(**body) -> dict:
        r = await sandbox_client.post("/v3/list-calls", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    everything = await v3()
    assert [c["call_id"] for c in everything["items"]] == ids[::-1]  # newest first by default
    assert everything["has_more"] is False and "pagination_key" not in everything
    first = await v3(limit=2, sort_order="ascending", include_total=True)
    assert [c["call_id"] for c in first["items"]] == ids[:2] and first["has_more"] and first["total"] == 3
    rest = await v3(limit=2, sort_order="ascending", pagination_key=first["pagination_key"])
    assert [c["call_id"] for c in rest["items"]] == ids[2:] and rest["has_more"] is False

    def found(page: dict) -> list[str]:
        return [c["call_id"] for c in page["items"]]

    assert found(await v3(filter_criteria={"from_number": {"type": "string", "op": "eq", "value": TELNYX}})) == [ids[1]]
    assert found(await v3(filter_criteria={"to_number": {"type": "string", "op": "ew", "value": "72"}})) == [ids[2]]
    meta = {"metadata": [{"key": "n", "type": "string", "op": "eq", "value": "0"}]}
    assert found(await v3(filter_criteria=meta)) == [ids[0]]
    # registered calls have no start yet: start_timestamp filters use their acceptance time
    calls = {c["call_id"]: c for c in (await sandbox_client.get("/_sandbox/calls")).json()["calls"]}
    since, now = calls[ids[0]]["created_at_ms"], int(time.time() * 1000) + 5_000
    window = await v3(filter_criteria={"start_timestamp": {"type": "range", "op": "bt", "value": [since, now]}})
    assert set(found(window)) == set(ids)
    assert found(await v3(filter_criteria={"start_timestamp": {"type": "number", "op": "gt", "value": now}})) == []
    statuses = {"call_status": {"type": "enum", "op": "in", "value": ["registered", "ongoing", "ended",
                                                                        "not_connected"]}}
    assert len(found(await v3(filter_criteria=statuses))) == 3
    assert found(await v3(filter_criteria={"agent": [{"agent_id": "agent_support"}]})) == []
    assert len(found(await v3(filter_criteria={"agent": [{"agent_id": "agent_sales", "version": [3]}]}))) == 3
    assert found(await v3(filter_criteria={"agent": [{"agent_id": "agent_sales", "version": [1, 2]}]})) == []
    # The legacy v2 array forms are accepted too.
    assert found(await v3(filter_criteria={"from_number": [TELNYX]})) == [ids[1]]

    bad = await sandbox_client.post("/v3/list-calls", json={"filter_criteria": {"from_number": {"type": "string",
                                                                                                "op": "gt", "value": 1}}})
    assert bad.status_code == 400 and "from_number" in bad.json()["message"]
    for body in ({"limit": 0}, {"limit": "5"}, {"sort_order": "up"}, {"pagination_key": "call_x"}):
        r = await sandbox_client.post("/v3/list-calls", json=body)
        assert r.status_code == 400, body


async def test_retell_legacy_list_calls(sandbox_client):
    await raise_cps(sandbox_client)
    ids = []
    for dst in ("+14155552670", "+14155552671", "+14155552672"):
        ids.append((await sandbox_client.post("/v2/create-phone-call",
                                              json={"from_number": SALES, "to_number": dst})).json()["call_id"])
        await asyncio.sleep(0.002)
    r = await sandbox_client.post("/v2/list-calls", json={"limit": 2})
    assert r.status_code == 200 and [c["call_id"] for c in r.json()] == ids[::-1][:2]
    r = await sandbox_client.post("/v2/list-calls", json={"limit": 2, "pagination_key": ids[1]})
    assert [c["call_id"] for c in r.json()] == [ids[0]]
    r = await sandbox_client.post("/v2/list-calls", json={"filter_criteria": {"to_number": ["+14155552671"]}})
    assert [c["call_id"] for c in r.json()] == [ids[1]]
    r = await sandbox_client.post("/v2/list-calls", content=b"")
    assert r.status_code == 200 and len(r.json()) == 3


async def test_retell_phone_numbers(sandbox_client):
    r = await sandbox_client.get("/v2/list-phone-numbers")
    assert r.status_code == 200
    page = r.json()
    assert page["has_more"] is False and len(page["items"]) == 3
    for obj in page["items"]:
        for key in ("phone_number", "phone_number_type", "last_modification_timestamp"):
            assert key in obj  # PhoneNumberResponse required fields
    numbers = {n["phone_number"]: n for n in page["items"]}
    assert {n: o["phone_number_type"] for n, o in numbers.items()} == {
        SALES: "retell-twilio", TELNYX: "retell-telnyx", TRUNK: "custom"}
    sales = phone_number(numbers[SALES])
    assert sales.kind is ProviderKind.TWILIO
    assert [(a.agent_id, a.agent_version, a.weight) for a in sales.outbound_agents] == [("agent_sales", 3, 1.0)]
    assert [a.agent_id for a in sales.inbound_agents] == ["agent_support"]
    assert numbers[SALES]["phone_number_pretty"] == "+1 (415) 555-0100"
    assert numbers[TRUNK]["outbound_agents"] is None
    assert numbers[TRUNK]["sip_outbound_trunk_config"]["termination_uri"]

    one = (await sandbox_client.get("/v2/list-phone-numbers", params={"limit": 1, "sort_order": "ascending"})).json()
    assert [n["phone_number"] for n in one["items"]] == [SALES] and one["has_more"] and one["pagination_key"] == SALES
    nxt = (await sandbox_client.get("/v2/list-phone-numbers", params={
        "limit": 5, "sort_order": "ascending", "pagination_key": one["pagination_key"]})).json()
    assert [n["phone_number"] for n in nxt["items"]] == [TELNYX, TRUNK]

    legacy = (await sandbox_client.get("/list-phone-numbers")).json()
    assert isinstance(legacy, list) and len(legacy) == 3
    r = await sandbox_client.get(f"/get-phone-number/{TELNYX}")
    assert r.status_code == 200 and r.json()["phone_number"] == TELNYX
    r = await sandbox_client.get("/get-phone-number/%2B14155550199")
    assert r.status_code == 404 and r.json()["status"] == "error"
    r = await sandbox_client.get("/v2/list-phone-numbers", params={"limit": "many"})
    assert r.status_code == 400


async def test_retell_agents_and_concurrency(sandbox_client):
    r = await sandbox_client.post("/v2/list-agents", json={})
    assert r.status_code == 200
    items = r.json()["items"]
    assert {a["agent_id"] for a in items} == {"agent_sales", "agent_support"} and r.json()["has_more"] is False
    assert all(a["channel"] == "voice" for a in items)
    page = (await sandbox_client.post("/v2/list-agents?limit=1&sort_order=ascending")).json()
    assert [a["agent_id"] for a in page["items"]] == ["agent_sales"] and page["pagination_key"] == "agent_sales"
    chat = await sandbox_client.post("/v2/list-agents", json={
        "filter_criteria": {"channel": {"type": "string", "op": "eq", "value": "chat"}}})
    assert chat.json()["items"] == []
    legacy = (await sandbox_client.get("/list-agents")).json()
    assert [a["agent_id"] for a in legacy] == ["agent_sales", "agent_support"]

    r = await sandbox_client.get("/get-agent/agent_sales")
    agent = r.json()
    for key in ("agent_id", "version", "response_engine", "voice_id", "last_modification_timestamp"):
        assert key in agent  # AgentResponse required fields
    parsed = Agent.model_validate(agent)
    assert parsed.version == 3 and parsed.versions == [1, 2, 3] and "{{customer_name}}" in parsed.begin_message
    assert (await sandbox_client.get("/get-agent/agent_sales", params={"version": 1})).json()["version"] == 1
    r = await sandbox_client.get("/get-agent/agent_sales", params={"version": 9})
    assert r.status_code == 404 and "version 9" in r.json()["message"]
    assert (await sandbox_client.get("/get-agent/agent_nobody")).status_code == 404
    versions = (await sandbox_client.get("/get-agent-versions/agent_sales")).json()
    assert [v["version"] for v in versions] == [1, 2, 3]

    conc = Concurrency.model_validate((await sandbox_client.get("/get-concurrency")).json())
    assert (conc.current_concurrency, conc.concurrency_limit) == (0, 20)


# --- uponai dialect --------------------------------------------------------------------------------


async def test_uponai_calls(sandbox_client):
    await raise_cps(sandbox_client)
    r = await sandbox_client.post("/api/v1/calls/initiate", json={
        "workspaceId": 1, "agentId": "agent_sales", "fromNumber": SALES, "toNumber": "+14155552670",
        "overrideAgentVersion": 2, "metadata": {"crm": "7"}, "uponai_dynamic_variables": {"customer_name": "Ola"},
        "customSipHeaders": {"X-Lead": "7"}, "agentOverride": {"llm": {"beginMessage": "Hello {{customer_name}}!"},
                                                               "agent": {"maxCallDurationMs": 120000}},
        "trunkName": "Main Sales Trunk"})  # a documented field the sandbox ignores
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["call"]["success"] is True
    native = body["call"]["call"]
    assert native["callId"] == body["call_sid"]
    assert (native["agentId"], native["agentVersion"], native["status"]) == ("agent_sales", 2, "registered")
    assert native["uponai_dynamic_variables"] == {"customer_name": "Ola"}
    assert native["startedAt"] is None and native["duration"] is None and native["recordingUrl"] is None
    for key in ("callId", "callType", "status", "agentId", "agentVersion", "metadata", "fromNumber", "toNumber",
                "direction", "endedAt", "disconnectionReason"):
        assert key in native

    # the same engine serves both dialects
    retell = await wait_for(sandbox_client, body["call_sid"])
    assert retell["transcript"].startswith("Agent: Hello Ola!")
    got = (await sandbox_client.get(f"/api/v1/calls/{body['call_sid']}")).json()
    assert got["success"] and got["call"]["status"] == "ended" and got["call"]["duration"] >= 1
    assert got["call"]["startedAt"].endswith("Z") and got["call"]["recordingUrl"].endswith(".wav")
    r = await sandbox_client.get("/api/v1/calls/call_nothing")
    assert r.status_code == 404 and r.json() == {"success": False, "message": "Call call_nothing not found."}

    second = (await sandbox_client.post("/api/v1/calls/initiate", json={
        "workspaceId": 1, "agentId": "agent_support", "fromNumber": TELNYX, "toNumber": "+14155552671"})).json()
    listed = (await sandbox_client.get("/api/v1/calls", params={"workspaceId": 1})).json()
    assert listed["success"] and [c["callId"] for c in listed["calls"]] == [second["call_sid"], body["call_sid"]]
    assert listed["pagination"] == {"page": 1, "limit": 20, "total": 2}
    by_agent = (await sandbox_client.get("/api/v1/calls", params={"agentId": "agent_support"})).json()
    assert [c["callId"] for c in by_agent["calls"]] == [second["call_sid"]]
    paged = (await sandbox_client.get("/api/v1/calls", params={"page": 2, "limit": 1})).json()
    assert [c["callId"] for c in paged["calls"]] == [body["call_sid"]] and paged["pagination"]["total"] == 2
    ended = (await sandbox_client.get("/api/v1/calls", params={"status": "ended"})).json()
    assert [c["callId"] for c in ended["calls"]] == [body["call_sid"]]
    future = (await sandbox_client.get("/api/v1/calls", params={"fromDate": "2999-01-01"})).json()
    assert future["calls"] == [] and future["pagination"]["total"] == 0
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert len((await sandbox_client.get("/api/v1/calls", params={"toDate": today})).json()["calls"]) == 2
    for params in ({"page": 0}, {"limit": 101}, {"status": "weird"}, {"fromDate": "yesterday"}):
        r = await sandbox_client.get("/api/v1/calls", params=params)
        assert r.status_code == 400 and r.json()["success"] is False, params


async def test_uponai_create_validation(sandbox_client):
    base = {"workspaceId": 1, "agentId": "agent_sales", "fromNumber": SALES, "toNumber": "+14155552670"}
    cases = [
        ({k: v for k, v in base.items() if k != "workspaceId"}, 400, "workspaceId"),
        ({**base, "workspaceId": "one"}, 400, "workspaceId"),
        ({**base, "workspaceId": 2}, 403, "Workspace 2"),
        ({k: v for k, v in base.items() if k != "agentId"}, 400, "agentId"),
        ({**base, "agentId": "agent_x"}, 404, "agent_x"),
        ({**base, "overrideAgentVersion": 7}, 404, "version 7"),
        ({**base, "uponai_dynamic_variables": {"n": 1}}, 400, "uponai_dynamic_variables.n"),
        ({**base, "customSipHeaders": {"Campaign": "x"}}, 400, "X-"),
        ({**base, "agentOverride": {"retell": {}}}, 400, "agentOverride.retell"),
        ({**base, "toNumber": "555"}, 400, "E.164"),
    ]
    for body, status, needle in cases:
        r = await sandbox_client.post("/api/v1/calls/initiate", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["success"] is False and needle in r.json()["message"], r.text


async def test_uponai_numbers_agents_concurrency(sandbox_client):
    r = await sandbox_client.get(f"/api/numbers/{ACCOUNT_SID}", params={"workspaceId": 1})
    assert r.status_code == 200
    numbers = {n["number"]: n for n in r.json()["numbers"]}
    assert set(numbers) == {SALES, TELNYX, TRUNK} and r.json()["success"] is True
    rec = numbers[SALES]
    for key in ("id", "number", "account_sid", "workspace_id", "inbound_agents", "outbound_agents",
                "inbound_webhook_url", "phone_number_type"):
        assert key in rec
    assert rec["outbound_agents"] == [{"agent_id": "agent_sales", "agent_version": 3, "weight": 1.0}]
    assert numbers[TRUNK]["outbound_agents"] == [] and numbers[TRUNK]["phone_number_type"] == "custom"
    assert (await sandbox_client.get(f"/api/numbers/{ACCOUNT_SID}")).status_code == 400
    assert (await sandbox_client.get(f"/api/numbers/{ACCOUNT_SID}", params={"workspaceId": 9})).status_code == 403
    assert (await sandbox_client.get("/api/numbers/not-an-account", params={"workspaceId": 1})).status_code == 404

    agents = (await sandbox_client.get("/api/agents", params={"workspaceId": 1})).json()
    assert agents["success"] and [a["agent_id"] for a in agents["agents"]] == ["agent_sales", "agent_support"]
    one = (await sandbox_client.get("/api/agents", params={"workspaceId": 1, "limit": 1})).json()
    assert len(one["agents"]) == 1
    agent = (await sandbox_client.get("/api/agents/agent_sales", params={"workspaceId": 1, "version": 2})).json()
    assert agent["success"] and agent["agent"]["version"] == 2 and agent["agent"]["versions"] == [1, 2, 3]
    assert Agent.model_validate(agent["agent"]).begin_message
    r = await sandbox_client.get("/api/agents/agent_sales", params={"workspaceId": 1, "version": 0})
    assert r.status_code == 400
    r = await sandbox_client.get("/api/agents/agent_sales", params={"workspaceId": 1, "version": 4})
    assert r.status_code == 404 and r.json()["success"] is False
    assert (await sandbox_client.get("/api/agents/agent_sales")).status_code == 400

    conc = (await sandbox_client.get("/api/concurrency", params={"workspaceId": 1})).json()
    assert conc == {"maxConcurrent": 20, "currentUsage": 0, "purchasedConcurrency": 0, "concurrencyPurchaseLimit": 100}
    assert (await sandbox_client.get("/api/concurrency")).status_code == 400


# --- hostile input ---------------------------------------------------------------------------------

MALFORMED_BODIES = [  # never a JSON object: 400 on every route that reads a body
    b"{", b"not json", b"[]", b'"a string"', b"42", b"null", b'{"from_number": NaN}',
    b"\xff\xfe\x00garbage", b"[" * 100_000 + b"]" * 100_000,
]
WRONG_TYPES = [  # objects with wrong field types: a 4xx where the field matters, never a 5xx
    b'{"from_number": 5, "to_number": []}', b'{"filter_criteria": [], "limit": -1, "inbound_agents": 3}',
    b'{"from_number": "+14155550100", "to_number": "+14155552670", "metadata": "x"}',
    b'{"from_number": "+14155550100", "to_number": "+14155552670", "agent_override": {"agent": 3}}',
    b'{"from_number": "+14155550100", "to_number": "+14155552670", "ignore_e164_validation": "yes"}',
    b'{"from_number": "", "to_number": "+14155552670"}',
]
HOSTILE_TARGETS = [
    ("POST", "/v2/create-phone-call"), ("POST", "/v3/list-calls"), ("POST", "/v2/list-calls"),
    ("PATCH", f"/update-phone-number/{SALES}"), ("POST", "/v2/list-agents"), ("POST", "/api/v1/calls/initiate"),
    ("PUT", f"/api/numbers/{SALES}/agent"), ("POST", "/_sandbox/faults"), ("POST", "/_sandbox/config"),
]


async def test_hostile_input_gets_a_4xx_in_the_platforms_shape(sandbox_client, sandbox):
    for method, path in HOSTILE_TARGETS:
        for body in MALFORMED_BODIES + WRONG_TYPES:
            r = await sandbox_client.request(method, path, content=body, headers={"content-type": "application/json"})
            assert r.status_code < 500, (method, path, body[:40], r.status_code, r.text)
            if body in MALFORMED_BODIES or path == "/v2/create-phone-call":
                assert 400 <= r.status_code < 500, (method, path, body[:40], r.status_code, r.text)
            if r.status_code < 400:
                continue
            shape = r.json()
            if path.startswith("/api/"):
                assert shape["success"] is False and shape["message"]
            else:
                assert shape["status"] == "error" and shape["message"]
    huge = b'{"metadata": "' + b"x" * (1024 * 1024) + b'"}'
    r = await sandbox_client.post("/v2/create-phone-call", content=huge)
    assert r.status_code == 413 and r.json()["status"] == "error"

    async def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(20):
            yield b"x" * 65536

    r = await sandbox_client.post("/api/v1/calls/initiate", content=chunks())
    assert r.status_code == 413 and r.json()["success"] is False
    r = await sandbox_client.get("/v2/list-phone-numbers", params={"limit": "1e9"})
    assert r.status_code == 400
    stats = (await sandbox_client.get("/_sandbox/stats")).json()
    assert stats["creates_accepted"] == 0 and sandbox.engine.calls == {}
    assert (await sandbox_client.get("/get-concurrency")).status_code == 200  # still serving


FIELDS = ["from_number", "to_number", "override_agent_id", "override_agent_version", "agent_override", "metadata",
          "retell_llm_dynamic_variables", "custom_sip_headers", "ignore_e164_validation", "idempotency_key",
          "filter_criteria", "limit", "pagination_key", "sort_order", "skip", "include_total", "inbound_agents",
          "outbound_agents", "nickname", "allowed_outbound_country_list", "workspaceId", "agentId", "fromNumber",
          "toNumber", "overrideAgentVersion", "agentOverride", "uponai_dynamic_variables", "customSipHeaders",
          "ignoreE164Validation", "accountSid", "inboundAgents", "outboundAgents", "kind", "count", "path_prefix",
          "drop", "duplicate", "delay_ms", "reorder", "webhook_url", "call_failed_events", "concurrency_limit",
          "twilio", "agent", "retell_llm", "llm", "agent_id", "weight", "agent_version", "call_status", "metadata",
          "type", "op", "value", "key", "version", "begin_message", "max_call_duration_ms", "sandbox_outcome"]
ATOMS = [None, True, False, 0, -1, 1, 2**70, 0.5, 1e308, "", "x" * 3000, "+14155552670", "+18765550123", "334",
         SALES, TRUNK, "agent_sales", "latest", "ended", "eq", "in", "bt", "string", "enum", "range", "present",
         "answered", "X-Ok", "9" * 5000]


def _value(rng, depth: int = 0):
    roll = rng.random()
    if depth < 3 and roll < 0.2:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if depth < 3 and roll < 0.45:
        return {rng.choice(FIELDS): _value(rng, depth + 1) for _ in range(rng.randrange(5))}
    return rng.choice(ATOMS)


async def test_fuzzed_bodies_and_queries_never_5xx(sandbox_client):
    import random

    await sandbox_client.post("/_sandbox/cps", json={"twilio": 10_000, "telnyx": 10_000, "custom": 10_000})
    rng = random.Random(1234)
    targets = [t for t in HOSTILE_TARGETS if not t[1].startswith("/_sandbox/faults")]  # faults would hang us
    gets = ["/v2/list-phone-numbers", "/list-agents", "/get-agent/agent_sales", "/api/v1/calls", "/api/agents",
            "/api/agents/agent_sales", "/api/concurrency", f"/api/numbers/{ACCOUNT_SID}"]
    for _ in range(400):
        method, path = rng.choice(targets)
        body = {rng.choice(FIELDS): _value(rng) for _ in range(rng.randrange(8))}
        r = await sandbox_client.request(method, path, json=body)
        assert r.status_code < 500, (path, body, r.text)
        params = {rng.choice(["limit", "page", "version", "workspaceId", "status", "fromDate", "toDate",
                              "sort_order", "pagination_key", "agentId"]): str(rng.choice(ATOMS))[:200]
                  for _ in range(rng.randrange(4))}
        r = await sandbox_client.get(rng.choice(gets), params=params)
        assert r.status_code < 500, (params, r.text)


# --- determinism -----------------------------------------------------------------------------------


async def _script(seed: int) -> list[tuple]:
    async with running_sandbox(SandboxConfig(speed=200, seed=seed, cps={"twilio": 100, "telnyx": 100})) as sb, \
            httpx.AsyncClient(base_url=sb.url, headers={"Authorization": "Bearer sk_sandbox"}) as c:
        await c.patch(f"/update-phone-number/{TELNYX}", json={"outbound_agents": [
            {"agent_id": "agent_sales", "weight": 0.5}, {"agent_id": "agent_support", "weight": 0.5}]})
        ids = []
        for i in range(6):
            src = SALES if i % 2 else TELNYX
            r = await c.post("/v2/create-phone-call", json={
                "from_number": src, "to_number": f"+1415555267{i}",
                "retell_llm_dynamic_variables": {"customer_name": f"Kim {i}"}})
            ids.append(r.json()["call_id"])
        out = []
        for call_id in ids:
            call = await wait_for(c, call_id)
            out.append((call_id, call["agent_id"], call["call_status"], call.get("transcript"),
                        call.get("duration_ms"), call["call_analysis"]["call_summary"]))
        return out


async def test_same_seed_same_requests_same_calls():
    first, second, other = await asyncio.gather(_script(7), _script(7), _script(8))
    assert first == second
    assert [c[0] for c in first] != [c[0] for c in other]
    assert any("Kim 0" in (c[3] or "") for c in first)


# --- fixture file, clean shutdown, CLI ---------------------------------------------------------------


async def test_fixture_file_replaces_the_seed(tmp_path):
    fixture = tmp_path / "account.json"
    fixture.write_text(json.dumps({
        "workspace_id": 42, "account_sid": "acct-test",
        "agents": [{"agent_id": "agent_x", "agent_name": "X", "begin_message": "Yo {{who}}.",
                    "versions": [1, {"version": 2, "begin_message": "Hey {{who}}."}]}],
        "phone_numbers": [{"phone_number": "+442071838750", "type": "telnyx",
                           "outbound_agents": [{"agent_id": "agent_x", "agent_version": 2, "weight": 1}]}],
    }))
    async with running_sandbox(SandboxConfig(speed=200, fixture=fixture)) as sb, \
            httpx.AsyncClient(base_url=sb.url, headers={"Authorization": "Bearer sk_sandbox"}) as c:
        numbers = (await c.get("/list-phone-numbers")).json()
        assert [(n["phone_number"], n["phone_number_type"]) for n in numbers] == [("+442071838750", "retell-telnyx")]
        assert (await c.get("/api/agents", params={"workspaceId": 42})).json()["agents"][0]["agent_id"] == "agent_x"
        r = await c.post("/v2/create-phone-call", json={"from_number": "+442071838750", "to_number": "+14155552670",
                                                         "retell_llm_dynamic_variables": {"who": "Sam"}})
        assert r.status_code == 201, r.text
        call = await wait_for(c, r.json()["call_id"])
        assert call["transcript"].startswith("Agent: Hey Sam.")
        await c.post("/_sandbox/reset")
        assert len((await c.get("/list-phone-numbers")).json()) == 1  # reset goes back to the fixture
    bad = tmp_path / "bad.json"
    for text in ("{", '{"agents": [{"agent_id": "a", "versions": [0]}]}',
                 '{"phone_numbers": [{"phone_number": "+14155550100", "type": "twilio",'
                 ' "outbound_agents": [{"agent_id": "ghost", "weight": 1}]}]}'):
        bad.write_text(text)
        with pytest.raises(ValueError, match="fixture"):
            create_app(SandboxConfig(fixture=bad))


async def test_shutdown_cancels_timers_and_deliveries():
    async with running_sandbox(SandboxConfig(speed=1, webhook_url="http://127.0.0.1:9/hook")) as sb, \
            httpx.AsyncClient(base_url=sb.url, headers={"Authorization": "Bearer sk_sandbox"}) as c:
        for dst in ("+14155552670", "+14155552679"):
            await c.post("/v2/create-phone-call", json={"from_number": SALES, "to_number": dst})
            await c.post("/_sandbox/cps", json={"twilio": 100})
        assert sb.engine.pending_tasks == 2
    assert sb.engine.pending_tasks == 0


async def test_cli_serves_until_interrupted(tmp_path):
    import signal
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uponai_mcp", "sandbox", "--port", "0", "--speed", "100", "--seed", "3",
        "--cps", "twilio=5,telnyx=16", "--concurrency", "7", "--api-key", "k1", "--no-call-failed",
        "--log-level", "warning", stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        assert "listening on http://127.0.0.1:" in line, line
        url = line.split("listening on ", 1)[1].split()[0]
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": "Bearer k1"}) as c:
            settings = (await c.get("/_sandbox/config")).json()
            assert settings["cps"] == {"twilio": 5, "telnyx": 16, "custom": 1}
            assert (settings["concurrency_limit"], settings["call_failed_events"], settings["seed"]) == (7, False, 3)
            assert (await c.get("/get-concurrency", headers={"Authorization": "Bearer sk_sandbox"})).status_code == 401
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert await proc.stdout.read() == b""  # stdout stays clean
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    from uponai_mcp.sandbox import main

    assert main(["--port", "not-a-number"]) == 2
    assert main(["--cps", "twilio=fast"]) == 2
