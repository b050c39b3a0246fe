"""Calls run their course: each outcome reaches its final state with the fields the platform reports."""

from __future__ import annotations

import asyncio
import io
import time
import wave

import httpx
import pytest

from uponai_mcp.models import Call
from uponai_mcp.sandbox import SandboxConfig

pytestmark = pytest.mark.anyio

SALES, TELNYX, TRUNK = "+14155550100", "+14155550101", "+14155550102"


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    # 200x: an answered call is over in ~60 ms, a long call in ~0.3 s.
    return SandboxConfig(speed=200, cps={"twilio": 1000, "telnyx": 1000, "custom": 1000})


async def create(client: httpx.AsyncClient, **body) -> dict:
    body.setdefault("from_number", SALES)
    body.setdefault("to_number", "+14155552670")
    r = await client.post("/v2/create-phone-call", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def until(client: httpx.AsyncClient, call_id: str, done) -> dict:
    deadline = time.monotonic() + 5
    while True:
        call = (await client.get(f"/v2/get-call/{call_id}")).json()
        if done(call):
            return call
        assert time.monotonic() < deadline, f"{call_id} stuck in {call['call_status']}"
        await asyncio.sleep(0.005)


def analyzed(call: dict) -> bool:
    return call.get("call_analysis") is not None


async def test_answered_call_walks_through_every_state_and_ends_complete(sandbox_client):
    created = await create(sandbox_client, retell_llm_dynamic_variables={"customer_name": "Dana"},
                           metadata={"sandbox_outcome": "answered"})
    seen = ["registered"]
    deadline = time.monotonic() + 5
    while True:
        call = (await sandbox_client.get(f"/v2/get-call/{created['call_id']}")).json()
        status = call["call_status"] + ("+analysis" if analyzed(call) else "")
        if status != seen[-1]:
            seen.append(status)
        if analyzed(call):
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.002)
    assert seen == ["registered", "ongoing", "ended", "ended+analysis"]

    parsed = Call.model_validate(call)
    assert parsed.disconnection_reason == "agent_hangup"
    assert parsed.transcript.startswith("Agent: Hi Dana, this is Alex from UponAI sales.")
    assert "{{" not in parsed.transcript
    roles = [u.role for u in parsed.transcript_object]
    assert roles[0] == "agent" and "user" in roles
    assert all(u.words and u.words[0].start <= u.words[-1].end for u in parsed.transcript_object)
    starts = [w.start for u in parsed.transcript_object for w in u.words]
    assert starts == sorted(starts) and starts[-1] * 1000 < parsed.duration_ms
    tool_roles = [e.role for e in parsed.transcript_with_tool_calls]
    assert "tool_call_invocation" in tool_roles and "tool_call_result" in tool_roles
    invocation = next(e for e in parsed.transcript_with_tool_calls if e.role == "tool_call_invocation")
    result = next(e for e in parsed.transcript_with_tool_calls if e.role == "tool_call_result")
    assert invocation.tool_call_id == result.tool_call_id and invocation.name and invocation.arguments.startswith("{")
    for key in ("e2e", "llm", "tts"):
        stats = getattr(parsed.latency, key)
        assert stats.num == len(stats.values) > 0
        assert stats.min <= stats.p50 <= stats.p90 <= stats.p95 <= stats.p99 <= stats.max
    assert parsed.start_timestamp <= parsed.end_timestamp and 5_000 < parsed.duration_ms < 20_000
    cost = call["call_cost"]
    for key in ("product_costs", "total_duration_seconds", "total_duration_unit_price", "combined_cost"):
        assert key in cost  # required by the OpenAPI call_cost schema
    assert cost["combined_cost"] == pytest.approx(sum(p["cost"] for p in cost["product_costs"]))
    assert "telephony_twilio" in {p["product"] for p in cost["product_costs"]}
    assert parsed.call_analysis.call_successful is True and parsed.call_analysis.in_voicemail is False
    assert parsed.call_analysis.user_sentiment == "Positive" and "Dana" in parsed.call_analysis.call_summary

    assert parsed.recording_url.endswith(f"/_sandbox/recordings/{parsed.call_id}.wav")
    async with httpx.AsyncClient() as anon:  # recordings need no key, like signed URLs
        r = await anon.get(parsed.recording_url)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert 1_000 < len(r.content) < 20_000
    with wave.open(io.BytesIO(r.content)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert w.getnframes() > 1000
    # each stage happened once, in order, as the sandbox records it
    calls = (await sandbox_client.get("/_sandbox/calls")).json()["calls"]
    assert calls[0]["webhook_events"] == ["call_started", "call_ended", "call_analyzed"]


NOT_CONNECTED = {
    "busy": "dial_busy", "no_answer": "dial_no_answer", "failed": "dial_failed",
    "invalid_destination": "invalid_destination",
}


@pytest.mark.parametrize("outcome", sorted(NOT_CONNECTED))
async def test_unconnected_outcomes_end_without_a_conversation(sandbox_client, outcome):
    created = await create(sandbox_client, metadata={"sandbox_outcome": outcome})
    call = await until(sandbox_client, created["call_id"], analyzed)
    assert call["call_status"] == "not_connected"
    assert call["disconnection_reason"] == NOT_CONNECTED[outcome]
    assert call.get("start_timestamp") is None and call.get("transcript") is None
    accepted_ms = (await sandbox_client.get("/_sandbox/calls")).json()["calls"][0]["created_at_ms"]
    assert call.get("recording_url") is None and call["end_timestamp"] >= accepted_ms
    assert call["call_cost"]["combined_cost"] == 0
    assert call["call_analysis"]["call_successful"] is False
    events = (await sandbox_client.get("/_sandbox/calls")).json()["calls"][0]["webhook_events"]
    assert events == ["call_ended", "call_failed", "call_analyzed"]
    r = await sandbox_client.get(f"/_sandbox/recordings/{created['call_id']}.wav")
    assert r.status_code == 404


async def test_voicemail(sandbox_client):
    created = await create(sandbox_client, metadata={"sandbox_outcome": "voicemail"})
    call = await until(sandbox_client, created["call_id"], analyzed)
    assert call["call_status"] == "ended" and call["disconnection_reason"] == "voicemail_reached"
    assert call["transcript"].startswith("User: Hi, you've reached")
    assert call["call_analysis"]["in_voicemail"] is True and call["call_analysis"]["call_successful"] is False


async def test_long_call_and_max_duration(sandbox_client):
    long_one = await create(sandbox_client, metadata={"sandbox_outcome": "long_call"})
    capped = await create(sandbox_client, metadata={"sandbox_outcome": "long_call"},
                          agent_override={"agent": {"max_call_duration_ms": 60_000}})
    long_call = await until(sandbox_client, long_one["call_id"], analyzed)
    assert long_call["duration_ms"] >= 58_000 and long_call["disconnection_reason"] == "user_hangup"
    assert long_call["transcript"].count("\n") > 20
    capped_call = await until(sandbox_client, capped["call_id"], analyzed)
    assert capped_call["duration_ms"] == 60_000 and capped_call["disconnection_reason"] == "max_duration_reached"
    words = [w for u in capped_call["transcript_object"] for w in u["words"]]
    assert words[-1]["start"] < 60 and capped_call["call_analysis"]["call_successful"] is False


async def test_outcome_follows_the_last_digit(sandbox_client):
    table = {"0": "answered", "3": "answered", "4": "voicemail", "5": "busy", "6": "no_answer",
             "7": "failed", "8": "invalid_destination", "9": "long_call"}
    for digit in table:
        await create(sandbox_client, to_number=f"+1415555267{digit}")
    calls = (await sandbox_client.get("/_sandbox/calls")).json()["calls"]
    assert {c["to_number"][-1]: c["sandbox_outcome"] for c in calls} == table
    r = await sandbox_client.post("/v2/create-phone-call", json={
        "from_number": SALES, "to_number": "+14155552670", "metadata": {"sandbox_outcome": "explode"}})
    assert r.status_code == 400 and "sandbox_outcome" in r.json()["message"]


async def test_begin_message_override_and_placeholders(sandbox_client):
    created = await create(sandbox_client, to_number="+14155552671",
                           retell_llm_dynamic_variables={"customer_name": "Ana", "plan": "Pro"},
                           agent_override={"retell_llm": {"begin_message": "Hello {{customer_name}}, about {{plan}} "
                                                                          "and {{unknown}}."}})
    call = await until(sandbox_client, created["call_id"], analyzed)
    assert call["transcript"].startswith("Agent: Hello Ana, about Pro and {{unknown}}.")
    plain = await create(sandbox_client, to_number="+14155552672")  # no variables: the placeholder stays
    call = await until(sandbox_client, plain["call_id"], analyzed)
    assert "Hi {{customer_name}}, this is Alex" in call["transcript"]


async def test_concurrency_limit_ends_extra_calls(sandbox_client):
    r = await sandbox_client.post("/_sandbox/config", json={"concurrency_limit": 1})
    assert r.status_code == 200 and r.json()["concurrency_limit"] == 1
    busy = await create(sandbox_client, metadata={"sandbox_outcome": "long_call"})
    conc = (await sandbox_client.get("/get-concurrency")).json()
    assert (conc["current_concurrency"], conc["concurrency_limit"]) == (1, 1)
    extra = await create(sandbox_client, to_number="+14155552671")
    assert extra["call_status"] == "registered"  # accepted, as the platform does
    call = await until(sandbox_client, extra["call_id"], analyzed)
    assert call["call_status"] == "not_connected"
    assert call["disconnection_reason"] == "concurrency_limit_reached"
    assert (await sandbox_client.get("/get-concurrency")).json()["current_concurrency"] == 1
    await until(sandbox_client, busy["call_id"], analyzed)
    assert (await sandbox_client.get("/api/concurrency?workspaceId=1")).json()["currentUsage"] == 0


async def test_reset_restores_the_seeded_account(sandbox_client, sandbox):
    await sandbox_client.patch(f"/update-phone-number/{SALES}", json={"outbound_agents": None})
    await sandbox_client.post("/_sandbox/config", json={"concurrency_limit": 3})
    await create(sandbox_client, from_number=TELNYX)
    r = await sandbox_client.post("/_sandbox/reset")
    assert r.status_code == 200
    assert (await sandbox_client.get("/_sandbox/calls")).json()["calls"] == []
    number = (await sandbox_client.get(f"/get-phone-number/{SALES}")).json()
    assert number["outbound_agents"][0]["agent_id"] == "agent_sales"
    settings = (await sandbox_client.get("/_sandbox/config")).json()
    assert settings["concurrency_limit"] == 20 and settings["cps"]["twilio"] == 1000
    assert (await sandbox_client.get("/_sandbox/stats")).json()["creates_accepted"] == 0
