"""The API client against the real sandbox over loopback HTTP, in both dialects."""

from __future__ import annotations

import random
import socket
import time
import uuid
from typing import Any

import anyio
import httpx
import pytest

from uponai_mcp.api import (
    ConnectError,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    Unauthorized,
    UponAIClient,
)
from uponai_mcp.api import client as client_module
from uponai_mcp.config import Settings
from uponai_mcp.models import BindingUpdate, CallFilter, CallRequest, ProviderKind, WeightedAgent
from uponai_mcp.sandbox import SandboxConfig, running_sandbox
from uponai_mcp.sandbox.seed import ACCOUNT_SID, WORKSPACE_ID

pytestmark = pytest.mark.anyio

KEY = "sk_sandbox"
TWILIO, TELNYX, CUSTOM = "+14155550100", "+14155550101", "+14155550102"
ANSWERED, BUSY = "+14155552670", "+14155552675"  # the sandbox picks the outcome by the last digit
CREATE_PATH = {"retell": "/v2/create-phone-call", "uponai": "/api/v1/calls/initiate"}
CONCURRENCY_PATH = {"retell": "/get-concurrency", "uponai": "/api/concurrency"}
LIST_CALLS_PATH = {"retell": "/v3/list-calls", "uponai": "/api/v1/calls"}
GET_CALL_PATH = {"retell": "/v2/get-call/", "uponai": "/api/v1/calls/"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
async def sb():
    # High CPS so back-to-back creates in a test are not paced; speed so calls end in well under a second.
    cfg = SandboxConfig(speed=200, cps={"twilio": 1000, "telnyx": 1000, "custom": 1000})
    async with running_sandbox(cfg) as sandbox:
        yield sandbox


class Counting(httpx.AsyncBaseTransport):
    """A real loopback transport that records each request's path (to count retries)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Sleeps(list):
    """Injected sleep: records the delays and waits for none of them."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make(sb: Any, dialect: str, **kw: Any) -> UponAIClient:
    opts: dict[str, Any] = {"backoff_base_s": 0.01, "backoff_cap_s": 0.05}
    opts.update(kw)
    return UponAIClient(base_url=sb.url, api_key=KEY, dialect=dialect, workspace_id=WORKSPACE_ID,
                        account_sid=ACCOUNT_SID, **opts)


@pytest.fixture(params=["uponai", "retell"])
def dialect(request) -> str:
    return request.param


@pytest.fixture
async def client(sb, dialect):
    async with make(sb, dialect) as c:
        yield c


async def ctl(sb: Any, method: str, path: str, body: Any = None) -> Any:
    async with httpx.AsyncClient(base_url=sb.url, headers={"Authorization": f"Bearer {KEY}"}) as h:
        resp = await h.request(method, path, json=body)
        resp.raise_for_status()
        return resp.json()


async def sandbox_calls(sb: Any) -> list[dict[str, Any]]:
    data = await ctl(sb, "GET", "/_sandbox/calls")
    return data if isinstance(data, list) else data.get("calls") or data.get("items") or []


async def fault(sb: Any, kind: str, count: int, path_prefix: str | None = None, **extra: Any) -> None:
    await ctl(sb, "POST", "/_sandbox/faults", {"kind": kind, "count": count, "path_prefix": path_prefix, **extra})


def req(to: str = ANSWERED, frm: str = TWILIO, **kw: Any) -> CallRequest:
    return CallRequest(from_number=frm, to_number=to, **kw)


async def wait_terminal(client: UponAIClient, call_id: str, *, within: float = 10.0):
    with anyio.fail_after(within):
        while True:
            call = await client.get_call(call_id)
            if call.is_terminal:
                return call
            await anyio.sleep(0.02)


# --- calls ---------------------------------------------------------------------------------------


async def test_create_get_and_list(client, sb):
    attempt = str(uuid.uuid4())
    call = await client.create_call(
        req(metadata={"crm": "42"}, retell_llm_dynamic_variables={"customer_name": "Ada"}), attempt_id=attempt
    )
    assert call.call_id and call.from_number == TWILIO and call.to_number == ANSWERED
    assert call.metadata == {"crm": "42", "uponai_attempt_id": attempt}
    assert (call.agent_id, call.agent_version) == ("agent_sales", 3)  # the number's outbound binding
    assert call.retell_llm_dynamic_variables == {"customer_name": "Ada"}
    got = await client.get_call(call.call_id)
    assert got.call_id == call.call_id and got.metadata["crm"] == "42"
    page = await client.list_calls(CallFilter(to_number=ANSWERED, metadata={"crm": "42"}))
    assert [c.call_id for c in page.calls] == [call.call_id]
    assert (await client.list_calls(CallFilter(metadata={"crm": "nope"}))).calls == []


async def test_list_calls_pages(client):
    ids = set()
    for to in ("+14155552670", "+14155552671", "+14155552672"):
        ids.add((await client.create_call(req(to), attempt_id=str(uuid.uuid4()))).call_id)
    for call_id in ids:  # the order (by start time) is stable once no call is starting any more
        await wait_terminal(client, call_id)
    first = await client.list_calls(CallFilter(limit=2, agent_id="agent_sales"))
    assert len(first.calls) == 2 and first.next_page_token
    second = await client.list_calls(CallFilter(limit=2, agent_id="agent_sales", page_token=first.next_page_token))
    assert second.next_page_token is None
    assert {c.call_id for c in first.calls + second.calls} == ids


async def test_override_agent_and_version(client, sb):
    call = await client.create_call(
        req(override_agent_id="agent_support", override_agent_version=1), attempt_id=str(uuid.uuid4())
    )
    assert (call.agent_id, call.agent_version) == ("agent_support", 1)
    pinned = await client.create_call(req(override_agent_version=2), attempt_id=str(uuid.uuid4()))
    assert (pinned.agent_id, pinned.agent_version) == ("agent_sales", 2)
    # An imported number without an outbound agent works with an override only.
    custom = await client.create_call(req(frm=CUSTOM, override_agent_id="agent_sales"), attempt_id="a-custom")
    assert custom.agent_id == "agent_sales" and custom.from_number == CUSTOM


async def test_no_outbound_agent_is_invalid_request(client, sb):
    with pytest.raises(InvalidRequest) as info:
        await client.create_call(req(frm=CUSTOM), attempt_id=str(uuid.uuid4()))
    assert "outbound agent" in info.value.message or "override_agent_id" in info.value.message
    assert await sandbox_calls(sb) == []


async def test_answered_call_ends_with_transcript_retell(sb):
    async with make(sb, "retell") as client:
        call = await client.create_call(req(retell_llm_dynamic_variables={"customer_name": "Ada"}),
                                        attempt_id=str(uuid.uuid4()))
        done = await wait_terminal(client, call.call_id)
    assert done.call_status == "ended"
    assert done.transcript and done.transcript_object and done.transcript_object[0].content
    assert done.start_timestamp and done.end_timestamp and done.duration_ms and done.duration_ms > 0
    assert done.disconnection_reason and done.recording_url


async def test_native_record_maps_to_canonical_call(sb):
    async with make(sb, "uponai") as client:
        call = await client.create_call(req(), attempt_id=str(uuid.uuid4()))
        done = await wait_terminal(client, call.call_id)
    truth = next(c for c in await sandbox_calls(sb) if c["call_id"] == call.call_id)
    truth = truth.get("call", truth)  # the sandbox's Retell-shaped record
    assert done.call_status == truth["call_status"] == "ended"
    assert done.disconnection_reason == truth["disconnection_reason"]
    assert done.recording_url and done.recording_url == truth.get("recording_url")
    assert abs(done.start_timestamp - truth["start_timestamp"]) < 1000  # ISO -> ms
    assert abs(done.duration_ms - truth["duration_ms"]) <= 1000  # seconds -> ms
    assert done.end_timestamp and done.end_timestamp >= done.start_timestamp
    assert (done.agent_id, done.agent_version, done.from_number) == ("agent_sales", 3, TWILIO)


async def test_unanswered_call_reports_reason(client):
    call = await client.create_call(req(BUSY), attempt_id=str(uuid.uuid4()))
    done = await wait_terminal(client, call.call_id)
    assert done.call_status == "not_connected" and done.disconnection_reason == "dial_busy"


async def test_native_create_draws_outbound_agent_by_weight(sb):
    async with make(sb, "uponai", rng=random.Random(3)) as client:  # seeded: the draw is deterministic
        split = [WeightedAgent(agent_id="agent_sales", agent_version=2, weight=0.5),
                 WeightedAgent(agent_id="agent_support", agent_version=1, weight=0.5)]
        await client.bind_agents(TELNYX, BindingUpdate(outbound_agents=split))
        drawn = {(c.agent_id, c.agent_version) for c in
                 [await client.create_call(req(frm=TELNYX), attempt_id=str(uuid.uuid4())) for _ in range(4)]}
    assert drawn == {("agent_sales", 2), ("agent_support", 1)}  # each with its pinned version


async def test_retell_idempotency_key_returns_the_first_call(sb):
    async with make(sb, "retell") as client:
        first = await client.create_call(req(), attempt_id="same-attempt")
        again = await client.create_call(req(), attempt_id="same-attempt")
    assert again.call_id == first.call_id and len(await sandbox_calls(sb)) == 1


# --- numbers, bindings, agents, concurrency ------------------------------------------------------


async def test_phone_numbers(client):
    numbers = {n.phone_number: n for n in await client.list_phone_numbers()}
    assert {k: n.kind for k, n in numbers.items()} == {
        TWILIO: ProviderKind.TWILIO, TELNYX: ProviderKind.TELNYX, CUSTOM: ProviderKind.CUSTOM}
    assert numbers[TWILIO].outbound_agents == [WeightedAgent(agent_id="agent_sales", agent_version=3, weight=1)]
    assert numbers[CUSTOM].outbound_agents == [] and numbers[TELNYX].inbound_agents == []
    one = await client.get_phone_number(TELNYX)
    assert one.kind is ProviderKind.TELNYX and one.outbound_agents[0].agent_id == "agent_sales"
    with pytest.raises(NotFound):
        await client.get_phone_number("+14155559999")


async def test_bindings(client):
    ab = [WeightedAgent(agent_id="agent_sales", agent_version=1, weight=0.3),
          WeightedAgent(agent_id="agent_sales", agent_version=2, weight=0.7)]
    after = await client.bind_agents(TELNYX, BindingUpdate(outbound_agents=ab))
    assert after.outbound_agents == ab and after.inbound_agents == []  # inbound left as it was

    inbound = [WeightedAgent(agent_id="agent_support", agent_version=1, weight=1)]
    after = await client.bind_agents(TELNYX, BindingUpdate(inbound_agents=inbound))
    assert after.inbound_agents == inbound and after.outbound_agents == ab

    both = await client.bind_agents(TWILIO, BindingUpdate(
        inbound_agents=[WeightedAgent(agent_id="agent_sales", weight=1)],
        outbound_agents=[WeightedAgent(agent_id="agent_support", agent_version=1, weight=1)]))
    assert both.inbound_agents[0].agent_id == "agent_sales" and both.inbound_agents[0].agent_version is None
    assert both.outbound_agents[0].agent_id == "agent_support"

    unset = await client.bind_agents(TELNYX, BindingUpdate(outbound_agents=[]))
    assert unset.outbound_agents == [] and unset.inbound_agents == inbound
    assert (await client.get_phone_number(TELNYX)).outbound_agents == []
    with pytest.raises(NotFound):
        await client.bind_agents("+14155559999", BindingUpdate(inbound_agents=[]))


async def test_agents(client):
    agents = {a.agent_id: a for a in await client.list_agents()}
    assert set(agents) == {"agent_sales", "agent_support"}
    assert agents["agent_sales"].version == 3
    assert agents["agent_sales"].versions == [1, 2, 3] and agents["agent_sales"].agent_name
    v2 = await client.get_agent("agent_sales", 2)
    assert (v2.agent_id, v2.version) == ("agent_sales", 2) and v2.agent_name
    assert (await client.get_agent("agent_support")).version == 1
    with pytest.raises(NotFound):
        await client.get_agent("agent_nope")


async def test_listings_follow_pagination(sb, dialect, monkeypatch):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 1)  # one item per page: every page is fetched
    counting = Counting()
    async with make(sb, dialect, transport=counting) as client:
        assert len(await client.list_phone_numbers()) == 3
        assert {a.agent_id for a in await client.list_agents()} == {"agent_sales", "agent_support"}
    if dialect == "retell":
        assert counting.paths.count("/v2/list-phone-numbers") == 3 and counting.paths.count("/v2/list-agents") == 2


async def test_concurrency(client):
    conc = await client.get_concurrency()
    assert conc.concurrency_limit == 20 and conc.current_concurrency == 0
    await client.create_call(req("+14155552679"), attempt_id=str(uuid.uuid4()))  # a long call holds a slot
    assert (await client.get_concurrency()).current_concurrency == 1


async def test_from_settings(sb, dialect):
    settings = Settings(api_key=KEY, base_url=sb.url, dialect=dialect, workspace_id=WORKSPACE_ID,
                        account_sid=ACCOUNT_SID)
    async with UponAIClient.from_settings(settings) as client:
        assert (await client.get_concurrency()).concurrency_limit == 20
        assert KEY not in repr(client)


# --- errors --------------------------------------------------------------------------------------


async def test_wrong_key_is_unauthorized(sb, dialect):
    async with UponAIClient(base_url=sb.url, api_key="sk_wrong", dialect=dialect, workspace_id=1,
                            account_sid=ACCOUNT_SID) as client:
        with pytest.raises(Unauthorized) as info:
            await client.get_concurrency()
    assert info.value.status == 401 and info.value.message


async def test_unknown_call_is_not_found(client):
    with pytest.raises(NotFound) as info:
        await client.get_call("call_does_not_exist")
    assert info.value.status in (404, 422)


async def test_invalid_request_carries_the_platform_message(client, sb):
    with pytest.raises(InvalidRequest) as info:
        await client.create_call(req("12345"), attempt_id=str(uuid.uuid4()))
    assert info.value.status == 400 and "to_number" in info.value.message and "E.164" in info.value.message
    assert await sandbox_calls(sb) == []


# --- retries by class ----------------------------------------------------------------------------


async def test_429_on_read_is_retried_honouring_retry_after(sb, dialect):
    sleeps, counting = Sleeps(), Counting()
    async with make(sb, dialect, sleep=sleeps, transport=counting) as client:
        await fault(sb, "429", 2, CONCURRENCY_PATH[dialect], retry_after_s=2)
        assert (await client.get_concurrency()).concurrency_limit == 20
    assert sleeps == [2.0, 2.0] and len(counting.paths) == 3


async def test_429_exhausted_raises_rate_limited(sb, dialect):
    sleeps, counting = Sleeps(), Counting()
    async with make(sb, dialect, sleep=sleeps, transport=counting, max_retries=2) as client:
        await fault(sb, "429", 10, CONCURRENCY_PATH[dialect], retry_after_s=3)
        with pytest.raises(RateLimited) as info:
            await client.get_concurrency()
    assert info.value.retry_after == 3.0 and info.value.status == 429 and "rate limited" in info.value.message
    assert sleeps == [3.0, 3.0] and len(counting.paths) == 3


async def test_retry_after_is_really_waited(sb):
    async with make(sb, "retell") as client:  # real anyio.sleep
        await fault(sb, "429", 1, "/get-concurrency", retry_after_s=1)
        start = time.monotonic()
        await client.get_concurrency()
    assert 0.95 <= time.monotonic() - start < 3


@pytest.mark.parametrize("kind", ["500", "503"])
async def test_5xx_on_read_is_retried_then_succeeds(sb, dialect, kind):
    sleeps, counting = Sleeps(), Counting()
    async with make(sb, dialect, sleep=sleeps, transport=counting) as client:
        call = await client.create_call(req(), attempt_id=str(uuid.uuid4()))
        counting.paths.clear()
        await fault(sb, kind, 2, GET_CALL_PATH[dialect])
        assert (await client.get_call(call.call_id)).call_id == call.call_id
        assert len(counting.paths) == 3 and len(sleeps) == 2
        await fault(sb, kind, 1, LIST_CALLS_PATH[dialect])  # a list POST (retell) is a read too
        assert [c.call_id for c in (await client.list_calls(CallFilter())).calls] == [call.call_id]
        await fault(sb, kind, 1, "/update-phone-number" if dialect == "retell" else "/api/numbers/")
        bound = await client.bind_agents(CUSTOM, BindingUpdate(inbound_agents=[]))  # same body, same state
        assert bound.inbound_agents == []
    assert len(counting.paths) == 3 + 2 + 2


async def test_5xx_on_read_exhausted_raises_server_error(sb, dialect):
    sleeps = Sleeps()
    async with make(sb, dialect, sleep=sleeps) as client:
        await fault(sb, "503", 10, CONCURRENCY_PATH[dialect])
        with pytest.raises(ServerError) as info:
            await client.get_concurrency()
    assert info.value.status == 503 and len(sleeps) == 3


async def test_read_timeout_on_read_is_retried(sb, dialect):
    timeout = httpx.Timeout(connect=2.0, read=0.3, write=2.0, pool=2.0)
    async with make(sb, dialect, timeout=timeout, sleep=Sleeps()) as client:
        await fault(sb, "hang", 1, CONCURRENCY_PATH[dialect], hang_s=5)
        assert (await client.get_concurrency()).concurrency_limit == 20


async def test_create_timeout_after_create_is_outcome_unknown_and_reconciled(sb, dialect):
    counting = Counting()
    async with make(sb, dialect, create_timeout_s=0.3, transport=counting, sleep=Sleeps()) as client:
        await fault(sb, "hang_after_create", 1, CREATE_PATH[dialect], hang_s=5)
        attempt, request = str(uuid.uuid4()), req(metadata={"crm": "7"})
        with pytest.raises(OutcomeUnknown) as info:
            await client.create_call(request, attempt_id=attempt)
        err = info.value
        assert (err.attempt_id, err.request) == (attempt, request) and "Timeout" in err.cause
        assert abs(err.sent_at_ms - time.time() * 1000) < 5000
        assert counting.paths.count(CREATE_PATH[dialect]) == 1  # never retried
        created = await sandbox_calls(sb)
        assert len(created) == 1
        found = await client.find_call_by_attempt(attempt, since_ms=err.sent_at_ms, to_number=ANSWERED)
        assert found is not None and found.call_id == created[0]["call_id"]
        assert found.metadata == {"crm": "7", "uponai_attempt_id": attempt}
        assert await client.find_call_by_attempt("other-attempt", since_ms=err.sent_at_ms) is None


async def test_500_on_create_is_outcome_unknown_without_retry(sb, dialect):
    counting, sleeps = Counting(), Sleeps()
    async with make(sb, dialect, transport=counting, sleep=sleeps) as client:
        await fault(sb, "500", 5, CREATE_PATH[dialect])
        with pytest.raises(OutcomeUnknown) as info:
            await client.create_call(req(), attempt_id="att-500")
    assert info.value.status == 500 and "500" in info.value.cause
    assert counting.paths.count(CREATE_PATH[dialect]) == 1 and sleeps == []


async def test_429_on_create_is_retried_unless_the_caller_paces(sb, dialect):
    counting, sleeps = Counting(), Sleeps()
    async with make(sb, dialect, transport=counting, sleep=sleeps) as client:
        await fault(sb, "429", 1, CREATE_PATH[dialect], retry_after_s=1)
        await client.create_call(req(), attempt_id=str(uuid.uuid4()))
        assert counting.paths.count(CREATE_PATH[dialect]) == 2 and sleeps == [1.0]
        await fault(sb, "429", 1, CREATE_PATH[dialect], retry_after_s=4)
        with pytest.raises(RateLimited) as info:
            await client.create_call(req(), attempt_id=str(uuid.uuid4()), retry_rate_limited=False)
    assert info.value.retry_after == 4.0 and counting.paths.count(CREATE_PATH[dialect]) == 3
    assert len(await sandbox_calls(sb)) == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_connection_refused_is_retried_then_connect_error(dialect):
    sleeps = Sleeps()
    async with UponAIClient(base_url=f"http://127.0.0.1:{_closed_port()}", api_key=KEY, dialect=dialect,
                            workspace_id=1, account_sid=ACCOUNT_SID, sleep=sleeps, max_retries=3) as client:
        with pytest.raises(ConnectError):
            await client.get_concurrency()
        assert len(sleeps) == 3
        sleeps.clear()
        with pytest.raises(ConnectError):  # nothing was sent, so a create is retried too
            await client.create_call(req(override_agent_id="agent_sales"), attempt_id="x")
        assert len(sleeps) == 3
