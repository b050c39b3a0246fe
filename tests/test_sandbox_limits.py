"""The platform's rules: CPS, destination countries, E.164, idempotency, bindings, and injected faults."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from uponai_mcp.sandbox import SandboxConfig, running_sandbox

pytestmark = pytest.mark.anyio

SALES, TELNYX, TRUNK = "+14155550100", "+14155550101", "+14155550102"
RATE_LIMITED = "Account rate limited, please throttle your requests."


def call(from_number: str = SALES, to_number: str = "+14155552670", **extra) -> dict:
    return {"from_number": from_number, "to_number": to_number, **extra}


async def raise_cps(client: httpx.AsyncClient) -> None:
    assert (await client.post("/_sandbox/cps", json={"twilio": 1000, "telnyx": 1000, "custom": 1000})).status_code == 200


# --- CPS -----------------------------------------------------------------------------------------


async def test_burst_above_cps_gets_429_with_retry_headers(sandbox_client):
    replies = await asyncio.gather(*(sandbox_client.post("/v2/create-phone-call", json=call()) for _ in range(4)))
    assert sorted(r.status_code for r in replies) == [201, 429, 429, 429]
    for r in replies:
        if r.status_code == 429:
            assert r.json() == {"status": "error", "message": RATE_LIMITED}
            assert r.headers["Retry-After"] == "1"
            assert 0 < int(r.headers["retry-after-ms"]) <= 1000
    # another scope has its own budget
    r = await sandbox_client.post("/v2/create-phone-call", json=call(TELNYX))
    assert r.status_code == 201
    # the native dialect shares the budget and answers in its own shape
    r = await sandbox_client.post("/api/v1/calls/initiate", json={
        "workspaceId": 1, "agentId": "agent_sales", "fromNumber": SALES, "toNumber": "+14155552670"})
    assert r.status_code == 429 and r.json() == {"success": False, "message": RATE_LIMITED}
    stats = (await sandbox_client.get("/_sandbox/stats")).json()
    assert stats["rate_limited_by_scope"] == {"twilio": 4, "telnyx": 0, "custom": 0}
    assert stats["max_accepted_in_any_second"] == {"twilio": 1, "telnyx": 1, "custom": 0}


async def test_waiting_retry_after_ms_frees_a_slot(sandbox_client):
    await sandbox_client.post("/_sandbox/cps", json={"twilio": 5})
    replies = [await sandbox_client.post("/v2/create-phone-call", json=call()) for _ in range(6)]
    assert [r.status_code for r in replies] == [201] * 5 + [429]
    await asyncio.sleep(int(replies[-1].headers["retry-after-ms"]) / 1000 + 0.02)
    assert (await sandbox_client.post("/v2/create-phone-call", json=call())).status_code == 201


async def test_spaced_requests_pass(sandbox_client):
    await sandbox_client.post("/_sandbox/cps", json={"telnyx": 16})  # Telnyx's documented maximum
    for _ in range(8):
        r = await sandbox_client.post("/v2/create-phone-call", json=call(TELNYX))
        assert r.status_code == 201, r.text
        await asyncio.sleep(1 / 16 + 0.005)
    stats = (await sandbox_client.get("/_sandbox/stats")).json()
    assert stats["rate_limited_by_scope"]["telnyx"] == 0 and stats["max_accepted_in_any_second"]["telnyx"] <= 16


async def test_rejected_and_invalid_creates_do_not_use_cps(sandbox_client):
    bad = await sandbox_client.post("/v2/create-phone-call", json=call(to_number="12345"))
    assert bad.status_code == 400
    assert (await sandbox_client.post("/v2/create-phone-call", json=call())).status_code == 201


# --- destinations and numbers --------------------------------------------------------------------


async def test_destination_country_by_region(sandbox_client):
    await raise_cps(sandbox_client)
    jamaica = "+18765550123"  # +1 but JM, not US
    r = await sandbox_client.post("/v2/create-phone-call", json=call(SALES, jamaica))
    assert r.status_code == 400 and "JM" in r.json()["message"] and "retell-twilio" in r.json()["message"]
    r = await sandbox_client.post("/v2/create-phone-call", json=call(TRUNK, jamaica, override_agent_id="agent_sales"))
    assert r.status_code == 201, r.text
    assert (await sandbox_client.post("/v2/create-phone-call", json=call(SALES, "+442071838750"))).status_code == 201
    r = await sandbox_client.post("/v2/create-phone-call", json=call(TELNYX, "+442071838750"))
    assert r.status_code == 400 and "GB" in r.json()["message"] and "US, IN, CA" in r.json()["message"]
    assert (await sandbox_client.post("/v2/create-phone-call", json=call(TELNYX, "+919876543210"))).status_code == 201
    r = await sandbox_client.post("/v2/create-phone-call", json=call(SALES, "+5511987654321"))  # Brazil
    assert r.status_code == 400 and "BR" in r.json()["message"]
    # a per-number allow-list narrows further
    await sandbox_client.patch(f"/update-phone-number/{SALES}", json={"allowed_outbound_country_list": ["US"]})
    r = await sandbox_client.post("/v2/create-phone-call", json=call(SALES, "+16135550123"))  # Canada
    assert r.status_code == 400 and "allowed_outbound_country_list" in r.json()["message"]


async def test_e164_and_ignore_e164_validation(sandbox_client):
    await raise_cps(sandbox_client)
    for bad in ("4155552670", "+1 415 555 2670", "+1415555267a", "+0415555267", "+1415", "+14155"):
        r = await sandbox_client.post("/v2/create-phone-call", json=call(to_number=bad))
        assert r.status_code == 400 and "to_number" in r.json()["message"], bad
    r = await sandbox_client.post("/v2/create-phone-call", json=call(to_number="+19995550123"))  # no such area code
    assert r.status_code == 400 and "not a valid phone number" in r.json()["message"]
    # from_number: must be E.164 unless custom telephony with ignore_e164_validation
    r = await sandbox_client.post("/v2/create-phone-call", json=call("334", override_agent_id="agent_sales"))
    assert r.status_code == 400 and "ignore_e164_validation" in r.json()["message"]
    r = await sandbox_client.post("/v2/create-phone-call", json=call(SALES, ignore_e164_validation=True))
    assert r.status_code == 400 and "custom telephony" in r.json()["message"]
    r = await sandbox_client.post("/v2/create-phone-call", json=call(
        TRUNK, ignore_e164_validation=True, override_agent_id="agent_sales"))
    assert r.status_code == 201, r.text
    r = await sandbox_client.post("/v2/create-phone-call", json=call(
        "334", ignore_e164_validation=True, override_agent_id="agent_support"))
    assert r.status_code == 201, r.text
    assert r.json()["from_number"] == "334"
    r = await sandbox_client.post("/api/v1/calls/initiate", json={
        "workspaceId": 1, "agentId": "agent_sales", "fromNumber": "334", "toNumber": "+14155552670",
        "ignoreE164Validation": True})
    assert r.status_code == 200 and r.json()["call"]["call"]["fromNumber"] == "334"
    calls = (await sandbox_client.get("/_sandbox/calls")).json()["calls"]
    assert [c["scope"] for c in calls] == ["custom", "custom", "custom"]


async def test_unknown_assets_and_missing_outbound_agent(sandbox_client):
    await raise_cps(sandbox_client)
    cases = [
        (call("+14155550199"), 404, "not a phone number of this account"),
        (call(override_agent_id="agent_ghost"), 404, "agent_ghost"),
        (call(override_agent_id="agent_support", override_agent_version=2), 404, "no version 2"),
        (call(override_agent_version=9), 404, "no version 9"),
        (call(TRUNK), 400, "has no outbound agent"),
        (call(retell_llm_dynamic_variables={"customer_name": 5}), 400, "must be a string"),
        (call(custom_sip_headers={"Campaign": "x"}), 400, "must start with 'X-'"),
        (call(custom_sip_headers={"X-Ok": "a\r\nb"}), 400, "line breaks"),
        (call(agent_override={"agent": {"max_call_duration_ms": 5}}), 400, "max_call_duration_ms"),
        (call(metadata={"blob": "x" * 60_000}), 400, "50 kB"),
        ({"to_number": "+14155552670"}, 400, "from_number is required"),
    ]
    for body, status, needle in cases:
        r = await sandbox_client.post("/v2/create-phone-call", json=body)
        assert r.status_code == status and needle in r.json()["message"], (body, r.text)
    r = await sandbox_client.post("/v2/create-phone-call", json=call(override_agent_version=1))
    assert r.status_code == 201 and r.json()["agent_version"] == 1
    r = await sandbox_client.post("/v2/create-phone-call", json=call(TRUNK, override_agent_id="agent_sales"))
    assert r.status_code == 201 and r.json()["agent_version"] == 3


async def test_idempotency_key_returns_the_first_call(sandbox_client):
    # CPS is 1: a second real create within the second would be refused, a replay is not a create.
    first = await sandbox_client.post("/v2/create-phone-call", json=call(idempotency_key="order-1"))
    again = await sandbox_client.post("/v2/create-phone-call", json=call(idempotency_key="order-1"))
    assert first.status_code == again.status_code == 201
    assert again.json()["call_id"] == first.json()["call_id"] and again.headers["x-idempotent-replayed"] == "true"
    assert (await sandbox_client.post("/v2/create-phone-call", json=call(idempotency_key="order-2"))).status_code == 429
    await raise_cps(sandbox_client)
    other = await sandbox_client.post("/v2/create-phone-call", json=call(idempotency_key="order-2"))
    assert other.status_code == 201 and other.json()["call_id"] != first.json()["call_id"]
    assert len((await sandbox_client.get("/_sandbox/calls")).json()["calls"]) == 2
    assert (await sandbox_client.get("/_sandbox/stats")).json()["idempotent_replays"] == 1


# --- bindings ------------------------------------------------------------------------------------


async def test_bindings_ab_weights_unset_and_rejections(sandbox_client):
    await raise_cps(sandbox_client)
    ab = [{"agent_id": "agent_sales", "agent_version": 1, "weight": 0.5},
          {"agent_id": "agent_support", "weight": 0.5}]
    r = await sandbox_client.patch(f"/update-phone-number/{TELNYX}", json={"outbound_agents": ab, "nickname": "AB"})
    assert r.status_code == 200, r.text
    number = r.json()
    assert number["outbound_agents"] == ab and number["nickname"] == "AB"
    assert number["inbound_agents"] is None  # untouched
    picked = set()
    for i in range(20):
        r = await sandbox_client.post("/v2/create-phone-call", json=call(TELNYX, f"+1415555{2600 + i}"))
        picked.add((r.json()["agent_id"], r.json()["agent_version"]))
    assert picked == {("agent_sales", 1), ("agent_support", 1)}

    for unset in (None, []):
        await sandbox_client.patch(f"/update-phone-number/{SALES}",
                                   json={"outbound_agents": [{"agent_id": "agent_sales", "weight": 1}]})
        r = await sandbox_client.patch(f"/update-phone-number/{SALES}", json={"outbound_agents": unset})
        assert r.status_code == 200 and r.json()["outbound_agents"] is None
        assert r.json()["inbound_agents"][0]["agent_id"] == "agent_support"
        r = await sandbox_client.post("/v2/create-phone-call", json=call(SALES))
        assert r.status_code == 400 and "no outbound agent" in r.json()["message"]

    before = (await sandbox_client.get(f"/get-phone-number/{TELNYX}")).json()
    rejections = [
        ({"outbound_agents": [{"agent_id": "agent_sales", "weight": 0.6},
                              {"agent_id": "agent_support", "weight": 0.3}]}, 400, "sum to 1"),
        ({"inbound_agents": [{"agent_id": "agent_sales", "weight": 0}]}, 400, "weight"),
        ({"inbound_agents": [{"agent_id": "agent_sales"}]}, 400, "weight is required"),
        ({"inbound_agents": [{"agent_id": "agent_ghost", "weight": 1}]}, 404, "agent_ghost"),
        ({"inbound_agents": [{"agent_id": "agent_sales", "agent_version": 4, "weight": 1}]}, 404, "no version 4"),
        ({"inbound_agents": {"agent_id": "agent_sales"}}, 400, "must be a list"),
        ({"outbound_agent_id": "agent_sales"}, 400, "no longer supported"),
        ({"allowed_outbound_country_list": ["usa"]}, 400, "alpha-2"),
    ]
    for body, status, needle in rejections:
        r = await sandbox_client.patch(f"/update-phone-number/{TELNYX}", json=body)
        assert r.status_code == status and needle in r.json()["message"], (body, r.text)
    assert (await sandbox_client.get(f"/get-phone-number/{TELNYX}")).json() == before  # nothing half-applied
    r = await sandbox_client.patch("/update-phone-number/+14155550199", json={"outbound_agents": None})
    assert r.status_code == 404


async def test_native_binding_update(sandbox_client):
    from uponai_mcp.sandbox.seed import ACCOUNT_SID

    body = {"accountSid": ACCOUNT_SID, "workspaceId": 1,
            "inboundAgents": [{"agent_id": "agent_sales", "agent_version": 2, "weight": 0.25},
                              {"agent_id": "agent_support", "agent_version": 1, "weight": 0.75}]}
    r = await sandbox_client.put(f"/api/numbers/{TRUNK}/agent", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["success"] is True and out["message"]
    record = out["numbers"][0]
    assert record["inbound_agents"] == body["inboundAgents"] and record["outbound_agents"] == []
    assert out["assignment"]["inbound_agents"] == body["inboundAgents"]
    r = await sandbox_client.put(f"/api/numbers/{TRUNK}/agent", json={**body, "inboundAgents": []})
    assert r.json()["numbers"][0]["inbound_agents"] == []
    retell_view = (await sandbox_client.get(f"/get-phone-number/{TRUNK}")).json()
    assert retell_view["inbound_agents"] is None
    for patch, status in (({"workspaceId": 2}, 403), ({"accountSid": "nope"}, 404), ({"workspaceId": None}, 400),
                          ({"outboundAgents": [{"agent_id": "agent_sales", "weight": 2}]}, 400),
                          ({"outboundAgentId": "agent_sales"}, 400)):
        r = await sandbox_client.put(f"/api/numbers/{TRUNK}/agent", json={**body, **patch})
        assert r.status_code == status and r.json()["success"] is False, (patch, r.text)
    r = await sandbox_client.put("/api/numbers/+14155550199/agent", json=body)
    assert r.status_code == 404


# --- faults --------------------------------------------------------------------------------------


async def test_request_faults(sandbox_client):
    r = await sandbox_client.post("/_sandbox/faults", json={"kind": "429", "count": 1, "retry_after_s": 2})
    assert r.status_code == 200
    r = await sandbox_client.get("/get-concurrency")
    assert r.status_code == 429 and r.headers["Retry-After"] == "2" and r.headers["retry-after-ms"] == "2000"
    assert r.json()["message"] == RATE_LIMITED
    assert (await sandbox_client.get("/get-concurrency")).status_code == 200

    await sandbox_client.post("/_sandbox/faults", json={"kind": "500", "count": 2, "path_prefix": "/api/"})
    assert (await sandbox_client.get("/get-concurrency")).status_code == 200  # prefix does not match
    r = await sandbox_client.get("/api/concurrency?workspaceId=1")
    assert r.status_code == 500 and r.json() == {"success": False, "message": "An unexpected server error occurred."}
    assert (await sandbox_client.get("/api/concurrency?workspaceId=1")).status_code == 500
    assert (await sandbox_client.get("/api/concurrency?workspaceId=1")).status_code == 200

    await sandbox_client.post("/_sandbox/faults", json={"kind": "503", "count": 1})
    r = await sandbox_client.post("/v2/create-phone-call", json=call())
    assert r.status_code == 503 and r.json()["status"] == "error"
    assert (await sandbox_client.get("/_sandbox/calls")).json()["calls"] == []
    for bad in ({"kind": "418"}, {"kind": "500", "count": -1}, {"kind": "hang", "path_prefix": "v2"}):
        assert (await sandbox_client.post("/_sandbox/faults", json=bad)).status_code == 400
    stats = (await sandbox_client.get("/_sandbox/stats")).json()
    assert stats["faults_injected"] == {"429": 1, "500": 2, "503": 1}


async def test_hang_and_hang_after_create(sandbox_client, sandbox):
    await sandbox_client.post("/_sandbox/faults", json={"kind": "hang", "count": 1})
    with pytest.raises(httpx.ReadTimeout):
        await sandbox_client.get("/get-concurrency", timeout=0.15)
    assert (await sandbox_client.get("/get-concurrency")).status_code == 200

    await sandbox_client.post("/_sandbox/faults", json={"kind": "hang_after_create", "count": 1,
                                                        "path_prefix": "/v2/create-phone-call"})
    with pytest.raises(httpx.ReadTimeout):
        await sandbox_client.post("/v2/create-phone-call", json=call(metadata={"attempt": "a1"}), timeout=0.15)
    calls = (await sandbox_client.get("/_sandbox/calls")).json()["calls"]
    assert len(calls) == 1 and calls[0]["metadata"] == {"attempt": "a1"}
    # the client can find the call it could not see created
    found = (await sandbox_client.post("/v3/list-calls", json={
        "filter_criteria": {"metadata": [{"key": "attempt", "type": "string", "op": "eq", "value": "a1"}]}})).json()
    assert [c["call_id"] for c in found["items"]] == [calls[0]["call_id"]]


async def test_shutdown_is_fast_with_a_request_hanging():
    async with httpx.AsyncClient(headers={"Authorization": "Bearer sk_sandbox"}, timeout=30) as client:
        async with running_sandbox(SandboxConfig(speed=50)) as sb:
            await client.post(f"{sb.url}/_sandbox/faults", json={"kind": "hang", "path_prefix": "/get-concurrency"})
            await client.post(f"{sb.url}/v2/create-phone-call", json=call(metadata={"sandbox_outcome": "long_call"}))
            hanging = asyncio.create_task(client.get(f"{sb.url}/get-concurrency"))
            await asyncio.sleep(0.1)
            started = time.monotonic()
        assert time.monotonic() - started < 3  # the hang and the call's timers did not hold the server up
        reply = await hanging
        assert reply.status_code == 504
