"""End to end: sandbox -> signed webhook -> receiver -> SQLite -> an MCP client subscribed over real
streamable HTTP (both protocol eras); the poller over real stdio when no webhook can arrive; and a
receiver process killed with SIGKILL keeps every event it acknowledged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.subscriptions import ResourceUpdated

from tests.server_harness import TWILIO, harness, settings_for
from tests.webhook_helpers import KEY, lifecycle_body, signed
from uponai_mcp.api import UponAIClient
from uponai_mcp.config import Settings
from uponai_mcp.events import receiver
from uponai_mcp.events.feed import Feed
from uponai_mcp.events.ingest import Ingest
from uponai_mcp.events.poller import Poller
from uponai_mcp.models import CallRequest
from uponai_mcp.sandbox import SandboxConfig, running_sandbox
from uponai_mcp.sandbox.seed import ACCOUNT_SID, WORKSPACE_ID
from uponai_mcp.server import create_server
from uponai_mcp.store import Store

pytestmark = pytest.mark.anyio

CALLEE = "+14155552671"
ROOT = Path(__file__).resolve().parent.parent


async def _place(client: Client) -> str:
    r = await client.call_tool("create_phone_call", {"from_number": TWILIO, "to_number": CALLEE})
    assert not r.is_error, r.content[0].text
    return r.structured_content["call_id"]


async def _events(client: Client, call_id: str) -> list[dict[str, Any]]:
    result = await client.read_resource(f"uponai://calls/{call_id}/events")
    return json.loads(result.contents[0].text)["events"]


async def test_streamable_http_subscribers_of_both_eras_get_webhook_updates(tmp_path):
    server = create_server(Settings(sandbox=True, data_dir=tmp_path, sandbox_speed=10))
    async with receiver.serving(server.streamable_http_app(), lifespan=True) as base:
        url = base + "/mcp"

        # 2026-07-28: subscriptions/listen
        async with Client(url) as client:
            assert client.protocol_version == "2026-07-28"
            call_id = await _place(client)
            events_uri = f"uponai://calls/{call_id}/events"
            async with client.listen(resource_subscriptions=[f"uponai://calls/{call_id}", events_uri]) as sub:
                with anyio.fail_after(30):
                    async for event in sub:
                        assert isinstance(event, ResourceUpdated)
                        if [e["event"] for e in await _events(client, call_id)][-1:] == ["call_analyzed"]:
                            break
            names = [(e["event"], e["source"]) for e in await _events(client, call_id)]
            assert names == [("call_started", "webhook"), ("call_ended", "webhook"), ("call_analyzed", "webhook")]
            snapshot = json.loads((await client.read_resource(f"uponai://calls/{call_id}")).contents[0].text)
            assert snapshot["analyzed"] and snapshot["untrusted"]["transcript"]

            # a webhook POSTed to the MCP app's own route reaches the same subscribers
            async with client.listen(resource_subscriptions=["uponai://calls/call_http_route"]) as sub:
                body = lifecycle_body("call_started", "call_http_route")
                async with httpx.AsyncClient(trust_env=False) as http:
                    bad = await http.post(base + "/webhooks/uponai", content=body, headers=signed(body))
                    assert bad.status_code == 401  # signed with a key that is not the sandbox's
                    ok = await http.post(base + "/webhooks/uponai", content=body,
                                         headers=signed(body, key="sk_sandbox"))
                    assert ok.status_code == 204
                with anyio.fail_after(10):
                    assert await sub.__anext__() == ResourceUpdated("uponai://calls/call_http_route")

        # 2025-11-25: resources/subscribe + notifications/resources/updated
        updated: list[str] = []
        arrived = anyio.Event()

        async def on_message(message: Any) -> None:
            nonlocal arrived
            if getattr(message, "method", None) == "notifications/resources/updated":
                updated.append(str(message.params.uri))
                arrived.set()

        async with Client(url, mode="legacy", message_handler=on_message) as legacy:
            assert legacy.protocol_version != "2026-07-28"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await legacy.subscribe_resource("uponai://events/recent")
            call_id = await _place(legacy)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await legacy.subscribe_resource(f"uponai://calls/{call_id}/events")
            with anyio.fail_after(30):
                while True:
                    arrived = anyio.Event()
                    if f"uponai://calls/{call_id}/events" in updated and \
                            [e["event"] for e in await _events(legacy, call_id)][-1:] == ["call_analyzed"]:
                        break
                    await arrived.wait()
            assert "uponai://events/recent" in updated


def _stdio_env(sandbox_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        "UPONAI_API_KEY": "sk_sandbox", "UPONAI_BASE_URL": sandbox_url, "UPONAI_SANDBOX": "0",
        "UPONAI_DIALECT": "retell", "UPONAI_WORKSPACE_ID": str(WORKSPACE_ID), "UPONAI_ACCOUNT_SID": ACCOUNT_SID,
        "UPONAI_DATA_DIR": str(data_dir), "UPONAI_CONFIRM": "never", "UPONAI_CALLING_WINDOW": "off",
        "PYTHONPATH": str(ROOT),
    }
    env.update(extra)
    return env


async def test_stdio_without_a_listener_the_poller_completes_the_event_log(tmp_path):
    async with running_sandbox(SandboxConfig(speed=20)) as sb:  # no webhook_url: no webhook can arrive
        params = StdioServerParameters(command=sys.executable, args=["-m", "uponai_mcp", "serve"],
                                       env=_stdio_env(sb.url, tmp_path), cwd=str(ROOT))
        async with Client(params) as client:
            policy = json.loads((await client.read_resource("uponai://policy")).contents[0].text)
            assert policy["call_events"] == {"webhook_receiver": None, "poller": "primary"}
            call_id = await _place(client)
            progress: list[str] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append(message or "")

            r = await client.call_tool("wait_for_call", {"call_id": call_id, "until": "analyzed", "timeout_s": 30},
                                       progress_callback=on_progress)
            assert not r.is_error, r.content[0].text
            assert r.structured_content["reached"] and r.structured_content["analyzed"]
            assert progress and "analyzed" in progress[-1]
            events = await _events(client, call_id)
            assert [(e["event"], e["source"]) for e in events] == [
                ("call_started", "poller"), ("call_ended", "poller"), ("call_analyzed", "poller")]
            started = events[0]["call"]
            assert started["call_status"] == "ongoing" and not started["untrusted"]["transcript"]
            assert events[1]["call"]["untrusted"]["transcript"]


async def test_poller_with_the_native_dialect_logs_the_lifecycle_it_can_see(tmp_path):
    """The native get-call has no analysis: the poller logs started/ended; waiting for the analysis says why
    it cannot come."""
    async with harness(tmp_path, sandbox=SandboxConfig(speed=50)) as h:
        placed = await h.ok("create_phone_call", from_number=TWILIO, to_number=CALLEE)
        call_id = placed["call_id"]
        ended = await h.ok("wait_for_call", call_id=call_id, until="ended", timeout_s=20)
        assert ended["reached"] and ended["call_status"] == "ended"
        names = [(e["event"], e["source"]) for e in await _events(h.client, call_id)]
        assert names == [("call_started", "poller"), ("call_ended", "poller")]
        waited = await h.ok("wait_for_call", call_id=call_id, until="analyzed", timeout_s=0.5)
        assert not waited["reached"] and "UPONAI_WEBHOOK_LISTEN" in waited["note"]


async def test_poller_and_webhooks_never_double_an_event(tmp_path):
    """A dropped webhook is made good by the poller; what arrived both ways (and twice) is stored once."""
    store = await Store.open(tmp_path / "both.db")
    try:
        feed = Feed()
        ingest = Ingest(store, feed)
        async with (
            feed.running(),
            receiver.serving(receiver.app(ingest, "sk_sandbox")) as base,
            running_sandbox(SandboxConfig(speed=20, webhook_url=base + receiver.WEBHOOK_PATH)) as sb,
            UponAIClient.from_settings(settings_for(sb.url, tmp_path, dialect="retell")) as api,
            httpx.AsyncClient(base_url=sb.url, headers={"Authorization": "Bearer sk_sandbox"}) as http,
        ):
            # call_started is dropped; call_ended and call_analyzed are each delivered twice
            (await http.post("/_sandbox/webhook-faults", json={"drop": 1, "duplicate": 2})).raise_for_status()
            call = await api.create_call(CallRequest(from_number=TWILIO, to_number=CALLEE), attempt_id="att_both")
            with anyio.fail_after(20):
                while True:
                    changed = feed.changed_event(call.call_id)
                    if (rec := await store.get_call_record(call.call_id)) and rec.analyzed:
                        break
                    await changed.wait()
            await anyio.sleep(0.1)  # let the duplicate deliveries land
            assert [e.event for e in await store.call_events(call.call_id)] == ["call_ended", "call_analyzed"]
            poller = Poller(api, ingest)
            assert await poller.poll(call.call_id)  # synthesizes the missing call_started only
            assert not await poller.poll(call.call_id)  # nothing new the second time
        events = await store.call_events(call.call_id)
        assert [(e.event, e.source) for e in events] == [
            ("call_ended", "webhook"), ("call_analyzed", "webhook"), ("call_started", "poller")]
        rec = await store.get_call_record(call.call_id)
        assert rec.status == "ended" and rec.analyzed and rec.call["start_timestamp"]
    finally:
        await store.close()


async def test_acknowledged_events_survive_sigkill(tmp_path):
    db = tmp_path / "killed.db"
    proc = subprocess.Popen(  # noqa: ASYNC220 (a plain child process we SIGKILL; nothing awaits it)
        [sys.executable, "-m", "uponai_mcp.events.receiver", "--db", str(db), "--key", KEY],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    acked: list[str] = []
    enough = anyio.Event()
    try:
        assert proc.stdout is not None
        line = await anyio.to_thread.run_sync(proc.stdout.readline)
        assert line.startswith("listening "), line
        url = line.split(" ", 1)[1].strip()
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(trust_env=False, limits=limits, timeout=10) as http:
            async def send(i: int) -> None:
                body = lifecycle_body(("call_started", "call_ended", "call_analyzed")[i % 3], f"call_k{i // 3}")
                try:
                    r = await http.post(url, content=body, headers=signed(body))
                except httpx.HTTPError:
                    return  # the process died under this request: not acknowledged
                if r.status_code == 204:
                    acked.append(f"call_k{i // 3}/{i % 3}")
                    if len(acked) >= 90:
                        enough.set()

            async with anyio.create_task_group() as tg:
                for i in range(60):
                    tg.start_soon(send, i)
            assert len(acked) == 60

            async def kill_soon() -> None:
                await enough.wait()
                os.kill(proc.pid, signal.SIGKILL)  # mid-burst: requests are in flight

            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_soon)
                for i in range(60, 400):
                    tg.start_soon(send, i)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert 90 <= len(acked) < 400
    store = await Store.open(db)
    try:
        assert await store.integrity_check() == "ok"
        stored = {f"{e.call_id}/{('call_started', 'call_ended', 'call_analyzed').index(e.event)}"
                  for e in await store.events_since(0, limit=10_000)}
    finally:
        await store.close()
    missing = set(acked) - stored
    assert not missing, sorted(missing)[:5]


async def test_poller_backs_off_to_the_safety_net_while_webhooks_flow(tmp_path):
    store = await Store.open(tmp_path / "adaptive.db")
    try:
        ingest = Ingest(store, Feed())
        poller = Poller(api=None, ingest=ingest)  # type: ignore[arg-type]  # no platform read in this test
        assert poller._base_delay() == 1.0
        await ingest.event({"event": "call_started", "call": {"call_id": "call_x"}}, source="poller")
        assert poller._base_delay() == 1.0  # the poller's own events say nothing about webhooks
        await ingest.event({"event": "call_started", "call": {"call_id": "call_x"}}, source="webhook")
        assert ingest.webhooks_flowing() and poller._base_delay() == 30.0  # a duplicate still proves delivery
    finally:
        await store.close()


def test_synthesized_events_follow_the_platform_lifecycle():
    from uponai_mcp.events.poller import payload_for, synthesize

    ongoing = {"call_id": "c", "call_status": "ongoing", "start_timestamp": 1}
    ended = {**ongoing, "call_status": "ended", "end_timestamp": 2, "transcript": "hi", "disconnection_reason": "x"}
    analyzed = {**ended, "call_analysis": {"call_summary": "s"}}
    busy = {"call_id": "c", "call_status": "not_connected", "disconnection_reason": "dial_busy"}
    assert synthesize(set(), {"call_id": "c", "call_status": "registered"}) == []
    assert synthesize(set(), ongoing) == ["call_started"]
    assert synthesize({"call_started"}, ongoing) == []
    assert synthesize(set(), analyzed) == ["call_started", "call_ended", "call_analyzed"]
    assert synthesize({"call_started", "call_ended"}, analyzed) == ["call_analyzed"]
    assert synthesize(set(), busy) == ["call_ended"]  # never connected: no call_started, as the platform
    started = payload_for("call_started", analyzed)
    assert started["call_status"] == "ongoing" and "transcript" not in started and "call_analysis" not in started
    assert "call_analysis" not in payload_for("call_ended", analyzed) and payload_for("call_ended", analyzed)["transcript"]


async def test_poller_backs_off_per_call_while_nothing_changes(tmp_path):
    """1 s after a call is first seen, then doubling to 30 s while the platform shows no change (jitter off)."""
    clock = [1000.0]
    store = await Store.open(tmp_path / "backoff.db")
    try:
        async with (
            running_sandbox(SandboxConfig(speed=0.01)) as sb,  # the call rings for minutes of real time
            UponAIClient.from_settings(settings_for(sb.url, tmp_path)) as api,
        ):
            call = await api.create_call(CallRequest(from_number=TWILIO, to_number=CALLEE), attempt_id="att_b")
            await store.create_attempt("att_b", idempotency_key=None, params_hash="h", request_json="{}",
                                       from_number=TWILIO, to_number=CALLEE, scope="twilio")
            await store.mark_attempt("att_b", "dialing")
            await store.mark_attempt("att_b", "placed", call_id=call.call_id)
            poller = Poller(api, Ingest(store, Feed()), jitter=0.0, monotonic=lambda: clock[0])
            assert await poller.sweep() == 0  # first seen: due in 1 s
            delays = []
            for _ in range(8):
                clock[0] = poller._tracks[call.call_id].due
                assert await poller.sweep() == 1
                delays.append(poller._tracks[call.call_id].delay)
            assert delays[0] == 1.0  # the first poll stored the call (a change): stay at 1 s
            assert delays[1:] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
            assert poller.polls == 8
    finally:
        await store.close()
