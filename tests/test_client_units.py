"""Client pieces that need no sandbox: header parsing, wire mapping, guards before sending."""

from __future__ import annotations

import email.utils
import json
import random
import time

import httpx
import pytest

from uponai_mcp.api import (
    ConfigurationError,
    InvalidRequest,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    UponAIClient,
)
from uponai_mcp.api import dialects as d
from uponai_mcp.api.errors import platform_message
from uponai_mcp.api.retry import backoff_delay, parse_retry_after
from uponai_mcp.config import Settings
from uponai_mcp.models import CallFilter, CallRequest, WeightedAgent

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def test_retry_after_parsing():
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after({"retry-after": date}, now=now) <= 31
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_is_jittered_exponential_and_capped():
    rng = random.Random(1)
    delays = [backoff_delay(n, base=0.25, cap=8.0, rng=rng) for n in range(8)]
    for n, delay in enumerate(delays):
        ceiling = min(8.0, 0.25 * 2**n)
        assert ceiling / 2 <= delay <= ceiling


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"status": "error", "message": "bad from_number"}', "bad from_number"),
        (b'{"success": false, "message": "no agent"}', "no agent"),
        (b'{"success": false, "error": "workspace missing"}', "workspace missing"),
        (b"upstream exploded", "upstream exploded"),
        (b"<html>502</html>", "Bad Gateway"),
        (b"", "Bad Gateway"),
    ],
)
def test_platform_message_shapes(body, expected):
    assert platform_message(body, "Bad Gateway") == expected


def test_agent_override_maps_to_native_camel_case():
    req = CallRequest.model_validate({
        "from_number": "+14155550100", "to_number": "+14155552671",
        "agent_override": {
            "agent": {"voice_id": "11labs-Adrian", "max_call_duration_ms": 120000,
                      "voicemail_option": {"action": {"type": "static_text", "text_value": "hi"}}},
            "retell_llm": {"begin_message": "Hello", "model": "gpt-4.1"},
            "conversation_flow": {"start_speaker": "agent"},
        },
        "retell_llm_dynamic_variables": {"name": "Ada"},
        "custom_sip_headers": {"X-Ref": "1"},
    })
    body = d.native_create_body(req, "att-1", workspace_id=1, agent_id="agent_sales", agent_version=2)
    assert body["agentOverride"] == {
        "agent": {"voiceId": "11labs-Adrian", "maxCallDurationMs": 120000,
                  "voicemailOption": {"action": {"type": "static_text", "textValue": "hi"}}},
        "llm": {"beginMessage": "Hello", "model": "gpt-4.1"},
        "conversationFlow": {"startSpeaker": "agent"},
    }
    assert body["uponai_dynamic_variables"] == {"name": "Ada"}
    assert body["customSipHeaders"] == {"X-Ref": "1"}
    assert body["metadata"] == {"uponai_attempt_id": "att-1"}
    assert body["overrideAgentVersion"] == 2 and "ignoreE164Validation" not in body


def test_retell_body_tags_attempt_and_keeps_caller_metadata():
    req = CallRequest(from_number="+14155550100", to_number="+14155552671", metadata={"crm": "42"})
    body = d.retell_create_body(req, "att-2")
    assert body["metadata"] == {"crm": "42", "uponai_attempt_id": "att-2"}
    assert body["idempotency_key"] == "att-2"
    assert "ignore_e164_validation" not in body and "agent_override" not in body


def test_native_call_record_maps_to_canonical():
    call = d.native_call({
        "callId": "c1", "callType": "phone_call", "status": "ended", "agentId": "agent_sales", "agentVersion": 3,
        "metadata": {"k": "v"}, "uponai_dynamic_variables": {"name": "Ada"}, "fromNumber": "+14155550100",
        "toNumber": "+14155552671", "direction": "outbound", "startedAt": "2026-01-01T00:00:00.000Z",
        "endedAt": None, "duration": 12.5, "disconnectionReason": "user_hangup",
        "recordingUrl": "http://x/r.wav",
    })
    assert call.call_id == "c1" and call.call_status == "ended" and call.agent_version == 3
    assert call.start_timestamp == 1767225600000 and call.duration_ms == 12500
    assert call.end_timestamp == 1767225600000 + 12500  # derived when endedAt is absent
    assert call.disconnection_reason == "user_hangup" and call.recording_url == "http://x/r.wav"
    assert call.retell_llm_dynamic_variables == {"name": "Ada"} and call.from_number == "+14155550100"


def test_native_number_record_and_legacy_single_agent():
    num = d.native_number({"number": "+14155550101", "phone_number_type": "retell-telnyx",
                           "inbound_agents": [{"agent_id": "a", "agent_version": 1, "weight": 50},
                                              {"agent_id": "b", "weight": 50}],
                           "outbound_agent_id": "agent_sales", "outbound_agent_version": 0})
    assert num.kind == "telnyx"
    assert [(a.agent_id, a.weight) for a in num.inbound_agents] == [("a", 0.5), ("b", 0.5)]
    assert num.outbound_agents == [WeightedAgent(agent_id="agent_sales", agent_version=0, weight=1.0)]


def test_weighted_pick_follows_weights():
    agents = [WeightedAgent(agent_id="a", weight=0.8), WeightedAgent(agent_id="b", weight=0.2)]
    rng = random.Random(7)
    picks = [d.pick_weighted(agents, rng).agent_id for _ in range(2000)]
    assert 0.75 < picks.count("a") / 2000 < 0.85


def test_v3_filter_shapes():
    f = CallFilter(agent_id="agent_sales", call_status="ended", to_number="+1", start_after_ms=5,
                   start_before_ms=9, metadata={"k": "v"})
    assert d.retell_list_filter(f) == {
        "agent": [{"agent_id": "agent_sales"}],
        "call_status": {"type": "enum", "op": "in", "value": ["ended"]},
        "to_number": {"type": "string", "op": "eq", "value": "+1"},
        "start_timestamp": {"type": "range", "op": "bt", "value": [5, 9]},
        "metadata": [{"key": "k", "type": "string", "op": "eq", "value": "v"}],
    }


def test_repr_and_from_settings_hide_the_key():
    s = Settings(api_key="sk_live_supersecret", base_url="https://api.example", dialect="retell",
                 connect_timeout_s=2, read_timeout_s=7, create_timeout_s=11)
    client = UponAIClient.from_settings(s)
    assert "supersecret" not in repr(client) and "supersecret" not in str(vars(client))
    assert client.dialect == "retell" and client.base_url == "https://api.example"
    assert client.create_timeout.read == 11 and client.create_timeout.connect == 2


def _never(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"nothing should be sent, got {request.method} {request.url}")


async def test_missing_native_settings_fail_before_sending():
    async with UponAIClient(base_url="http://p", api_key="k", transport=httpx.MockTransport(_never)) as client:
        with pytest.raises(ConfigurationError, match="UPONAI_WORKSPACE_ID"):
            await client.get_concurrency()
        with pytest.raises(ConfigurationError, match="UPONAI_WORKSPACE_ID"):
            await client.create_call(CallRequest(from_number="+1", to_number="+2", override_agent_id="a"),
                                     attempt_id="x")
    async with UponAIClient(base_url="http://p", api_key="k", workspace_id=1,
                            transport=httpx.MockTransport(_never)) as client:
        with pytest.raises(ConfigurationError, match="UPONAI_ACCOUNT_SID"):
            await client.list_phone_numbers()


async def test_retry_after_date_and_cap_with_recorded_sleeps():
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": "3600"}, json={"status": "error", "message": "slow"})

    async with UponAIClient(base_url="http://p", api_key="k", dialect="retell", max_retries=2,
                            retry_after_cap_s=5, sleep=sleep, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(RateLimited) as info:
            await client.get_concurrency()
    assert slept == [5, 5] and info.value.retry_after == 5 and info.value.message == "slow"


async def test_write_timeout_on_create_is_ambiguous_and_read_timeout_on_read_is_retried():
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        raise httpx.ReadTimeout("slow", request=request)

    async def sleep(_: float) -> None:
        pass

    async with UponAIClient(base_url="http://p", api_key="k", dialect="retell", max_retries=2, sleep=sleep,
                            transport=httpx.MockTransport(handler)) as client:
        req = CallRequest(from_number="+14155550100", to_number="+14155552671")
        with pytest.raises(OutcomeUnknown) as info:
            await client.create_call(req, attempt_id="att-3")
        assert calls == ["/v2/create-phone-call"] and info.value.attempt_id == "att-3"
        assert info.value.request == req and "ReadTimeout" in info.value.cause
        calls.clear()
        with pytest.raises(ServerError):
            await client.get_call("c1")
        assert calls == ["/v2/get-call/c1"] * 3


async def test_native_list_pages_by_number_and_filters_client_side():
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        records = [{"callId": "a", "toNumber": "+1", "status": "ended"},
                   {"callId": "b", "toNumber": "+2", "status": "ended"}]
        return httpx.Response(200, content=json.dumps(
            {"success": True, "calls": records, "pagination": {"page": 1, "limit": 2, "total": 3}}))

    async with UponAIClient(base_url="http://p", api_key="k", workspace_id=1,
                            transport=httpx.MockTransport(handler)) as client:
        page = await client.list_calls(CallFilter(to_number="+2", limit=2, start_after_ms=0))
    assert [c.call_id for c in page.calls] == ["b"] and page.next_page_token == "2"
    assert seen[0] == {"workspaceId": "1", "page": "1", "limit": "2", "fromDate": "1970-01-01T00:00:00.000Z"}


async def test_unreadable_answers():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/create-phone-call":
            return httpx.Response(201, content=b"<html>ok</html>")
        if request.url.path == "/get-concurrency":
            return httpx.Response(200, json={"unexpected": True})
        return httpx.Response(200, json={"success": False, "message": "workspace 9 is not yours"})

    async with UponAIClient(base_url="http://p", api_key="k", dialect="retell",
                            transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(OutcomeUnknown, match="not JSON"):  # created, but we cannot say which call
            await client.create_call(CallRequest(from_number="+1", to_number="+2"), attempt_id="a")
        with pytest.raises(ServerError, match="unexpected response"):
            await client.get_concurrency()
        with pytest.raises(InvalidRequest, match="workspace 9 is not yours"):
            await client.get_call("c1")
