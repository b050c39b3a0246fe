"""Webhook delivery to a real receiver: signed, ordered per call, retried, and bent by delivery faults."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from uponai_mcp.models import WebhookEvent
from uponai_mcp.sandbox import SandboxConfig
from uponai_mcp.sandbox.server import serving
from uponai_mcp.signature import HEADER, verify
from uponai_mcp.tcp import bind_tcp

pytestmark = pytest.mark.anyio

SALES = "+14155550100"


class Receiver:
    """A tiny webhook endpoint: records every delivery and answers with scripted statuses."""

    def __init__(self) -> None:
        self.got: list[dict] = []
        self.statuses: list[int] = []  # next answers; 204 once empty
        self.slow_calls: dict[str, float] = {}  # call_id -> seconds to wait before answering
        self.url = ""
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        payload = json.loads(body)
        await asyncio.sleep(self.slow_calls.get(payload["call"]["call_id"], 0))
        self.got.append({"raw": body, "signature": request.headers.get(HEADER), "at": time.monotonic(),
                         "event": payload["event"], "call": payload["call"]})
        return Response(status_code=self.statuses.pop(0) if self.statuses else 204)

    def events(self, call_id: str) -> list[str]:
        return [g["event"] for g in self.got if g["call"]["call_id"] == call_id]

    async def wait(self, call_id: str, count: int) -> list[str]:
        deadline = time.monotonic() + 5
        while len(self.events(call_id)) < count:
            assert time.monotonic() < deadline, f"only got {self.events(call_id)}"
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)  # anything extra (duplicates) would arrive now
        return self.events(call_id)


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(speed=200, cps={"twilio": 1000, "telnyx": 1000, "custom": 1000})


@pytest.fixture
async def receiver(sandbox_client) -> AsyncIterator[Receiver]:
    rec = Receiver()
    async with serving(rec.app) as url:
        rec.url = f"{url}/hook"
        r = await sandbox_client.post("/_sandbox/config", json={"webhook_url": rec.url})
        assert r.status_code == 200 and r.json()["webhook_url"] == rec.url
        yield rec


async def create(client: httpx.AsyncClient, outcome: str = "answered", **extra) -> str:
    r = await client.post("/v2/create-phone-call", json={
        "from_number": SALES, "to_number": "+14155552670", "metadata": {"sandbox_outcome": outcome}, **extra})
    assert r.status_code == 201, r.text
    return r.json()["call_id"]


async def test_connected_call_events_are_signed_and_in_order(sandbox_client, receiver, sandbox):
    call_id = await create(sandbox_client, retell_llm_dynamic_variables={"customer_name": "Dana"})
    assert await receiver.wait(call_id, 3) == ["call_started", "call_ended", "call_analyzed"]
    now = int(time.time() * 1000)
    for got in receiver.got:
        assert verify(sandbox.config.api_key, got["raw"], got["signature"], now) is None
        assert verify("another-key", got["raw"], got["signature"], now) == "signature does not match"
        event = WebhookEvent.model_validate_json(got["raw"])
        assert event.call.call_id == call_id
    started, ended, analyzed = (g["call"] for g in receiver.got)
    assert started["call_status"] == "ongoing" and "transcript" not in started
    assert ended["call_status"] == "ended" and "Dana" in ended["transcript"] and "call_analysis" not in ended
    assert analyzed["call_analysis"]["call_successful"] is True
    assert analyzed["recording_url"].startswith(sandbox.url)


async def test_unconnected_calls_and_the_call_failed_switch(sandbox_client, receiver):
    call_id = await create(sandbox_client, "busy")
    assert await receiver.wait(call_id, 3) == ["call_ended", "call_failed", "call_analyzed"]
    failed = next(g["call"] for g in receiver.got if g["event"] == "call_failed")
    assert failed["call_status"] == "not_connected" and failed["disconnection_reason"] == "dial_busy"
    await sandbox_client.post("/_sandbox/config", json={"call_failed_events": False})  # Retell's behaviour
    quiet = await create(sandbox_client, "no_answer")
    assert await receiver.wait(quiet, 2) == ["call_ended", "call_analyzed"]


async def test_retries_after_errors(sandbox_client, receiver):
    receiver.statuses = [500, 503]  # the first delivery fails twice, then succeeds
    call_id = await create(sandbox_client)
    assert await receiver.wait(call_id, 5) == ["call_started", "call_started", "call_started",
                                                "call_ended", "call_analyzed"]
    stats = (await sandbox_client.get("/_sandbox/stats")).json()
    assert stats["webhooks"]["retries"] == 2 and stats["webhooks"]["delivered"] == 3
    first = stats["webhook_log"][0]
    assert (first["event"], first["outcome"], first["attempts"]) == ("call_started", "delivered", 3)


async def test_gives_up_after_three_retries_and_keeps_serving(sandbox_client):
    with bind_tcp("127.0.0.1", 0) as closed:  # a port nobody answers on once closed
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
    await sandbox_client.post("/_sandbox/config", json={"webhook_url": dead})
    call_id = await create(sandbox_client, "busy")
    deadline = time.monotonic() + 5
    while (await sandbox_client.get("/_sandbox/stats")).json()["webhooks"].get("failed", 0) < 3:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    stats = (await sandbox_client.get("/_sandbox/stats")).json()
    assert stats["webhooks"]["attempts"] == 12 and stats["webhooks"].get("delivered", 0) == 0
    assert {e["attempts"] for e in stats["webhook_log"]} == {4}
    assert (await sandbox_client.get(f"/v2/get-call/{call_id}")).status_code == 200


async def test_duplicate_and_drop_faults(sandbox_client, receiver):
    assert (await sandbox_client.post("/_sandbox/webhook-faults", json={"duplicate": 1})).status_code == 200
    doubled = await create(sandbox_client)
    assert await receiver.wait(doubled, 4) == ["call_started", "call_started", "call_ended", "call_analyzed"]
    await sandbox_client.post("/_sandbox/webhook-faults", json={"drop": 1})
    dropped = await create(sandbox_client)
    assert await receiver.wait(dropped, 2) == ["call_ended", "call_analyzed"]
    stats = (await sandbox_client.get("/_sandbox/stats")).json()["webhooks"]
    assert stats["duplicated"] == 1 and stats["dropped"] == 1
    assert (await sandbox_client.post("/_sandbox/webhook-faults", json={"drop": -1})).status_code == 400


async def test_reorder_and_delay_faults(sandbox_client, receiver):
    await sandbox_client.post("/_sandbox/webhook-faults", json={"reorder": True})
    swapped = await create(sandbox_client)
    assert await receiver.wait(swapped, 3) == ["call_ended", "call_started", "call_analyzed"]
    await sandbox_client.post("/_sandbox/webhook-faults", json={"delay_ms": 150})
    started = time.monotonic()
    late = await create(sandbox_client, "busy")
    assert await receiver.wait(late, 3) == ["call_ended", "call_failed", "call_analyzed"]
    first = next(g for g in receiver.got if g["call"]["call_id"] == late)
    assert first["at"] - started >= 0.15


async def test_a_slow_receiver_for_one_call_does_not_hold_up_others(sandbox_client, receiver):
    slow = await create(sandbox_client)
    receiver.slow_calls[slow] = 0.08
    fast = await create(sandbox_client, to_number="+14155552671")
    assert await receiver.wait(fast, 3) == ["call_started", "call_ended", "call_analyzed"]
    assert len(receiver.events(slow)) < 3  # still working through its own queue, in order
    assert await receiver.wait(slow, 3) == ["call_started", "call_ended", "call_analyzed"]
