"""Resources, subscriptions (both eras, in memory) and wait_for_call through a real `mcp.Client`, with the
embedded sandbox delivering signed webhooks to the server's own receiver."""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourcesListChanged, ResourceUpdated

from tests.server_harness import TWILIO, harness
from uponai_mcp.config import Settings
from uponai_mcp.sandbox import SandboxConfig
from uponai_mcp.server import create_server

pytestmark = pytest.mark.anyio

CALLEE = "+14155552671"  # answered
BUSY = "+14155552675"  # last digit 5: the sandbox answers busy
STATIC = {"uponai://events/recent", "uponai://numbers", "uponai://cps", "uponai://policy", "uponai://audit"}
SNEAKY = "Ada\u202e\u200bLovelace"  # bidi override and zero-width space: must not reach the model


@asynccontextmanager
async def embedded(tmp_path, *, speed: float = 20.0, **client_kwargs: Any) -> AsyncIterator[Client]:
    """The server in sandbox mode: embedded sandbox, webhooks to the server's own loopback receiver."""
    server = create_server(Settings(sandbox=True, data_dir=tmp_path, sandbox_speed=speed))
    async with Client(server, **client_kwargs) as client:
        yield client


async def place(client: Client, to_number: str = CALLEE, **args: Any) -> str:
    r = await client.call_tool("create_phone_call", {"from_number": TWILIO, "to_number": to_number, **args})
    assert not r.is_error, r.content[0].text
    return r.structured_content["call_id"]


async def read_json(client: Client, uri: str) -> Any:
    result = await client.read_resource(uri)
    content = result.contents[0]
    assert content.mime_type == "application/json"
    return json.loads(content.text)


async def wait(client: Client, call_id: str, until: str = "analyzed", timeout_s: float = 30.0,
               progress: list | None = None) -> dict:
    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        if progress is not None:
            progress.append((value, total, message))

    r = await client.call_tool("wait_for_call", {"call_id": call_id, "until": until, "timeout_s": timeout_s},
                               progress_callback=on_progress)
    assert not r.is_error, r.content[0].text
    return r.structured_content


async def test_resources_templates_and_capabilities(tmp_path):
    async with embedded(tmp_path) as client:
        listed = {r.uri: r for r in (await client.list_resources()).resources}
        assert STATIC <= set(listed)
        data = [r for uri, r in listed.items() if not str(uri).startswith("ui://")]  # ui:// are the MCP Apps
        assert all(r.mime_type == "application/json" and r.title for r in data)
        assert all(r.mime_type == "text/html;profile=mcp-app" for uri, r in listed.items() if str(uri).startswith("ui://"))
        templates = {t.uri_template: t for t in (await client.list_resource_templates()).resource_templates}
        assert {"uponai://calls/{call_id}", "uponai://calls/{call_id}/events"} <= set(templates)
        caps = client.server_capabilities.resources
        assert caps.subscribe and caps.list_changed
    async with embedded(tmp_path, mode="legacy") as legacy:
        caps = legacy.server_capabilities.resources
        assert caps.subscribe and caps.list_changed  # resources/subscribe handler + advertised list_changed
    tools = None
    async with embedded(tmp_path) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    wait_tool = tools["wait_for_call"]
    ann = wait_tool.annotations
    assert wait_tool.title and ann.read_only_hint and ann.idempotent_hint and not ann.destructive_hint
    props = wait_tool.input_schema["properties"]
    assert props["until"]["enum"] == ["ended", "analyzed"] and props["timeout_s"]["maximum"] == 600


async def test_a_call_placed_in_sandbox_mode_is_followed_through_resources(tmp_path):
    async with embedded(tmp_path) as client:
        call_id = await place(client, retell_llm_dynamic_variables={"customer_name": SNEAKY})
        progress: list = []
        waited = await wait(client, call_id, "analyzed", progress=progress)
        assert waited["reached"] and waited["analyzed"] and waited["call_status"] == "ended"
        assert waited["until"] == "analyzed" and 0 < waited["waited_s"] < 30
        assert progress and [p[0] for p in progress] == sorted(p[0] for p in progress)
        assert len({p[0] for p in progress}) == len(progress)  # strictly increasing
        assert all(p[1] == 30.0 and call_id in p[2] for p in progress)
        assert "analyzed" in progress[-1][2]
        assert "AdaLovelace" in waited["untrusted"]["transcript"]
        assert "\u202e" not in json.dumps(waited, ensure_ascii=False)

        call = await read_json(client, f"uponai://calls/{call_id}")
        assert call["call_id"] == call_id and call["analyzed"] and call["call_status"] == "ended"
        assert call["events_uri"] == f"uponai://calls/{call_id}/events"
        assert call["untrusted"]["transcript"] and call["untrusted"]["call_summary"]
        assert call["recording_url"] and call["duration_ms"] > 0 and call["cost_cents"] is not None
        assert "\u202e" not in json.dumps(call, ensure_ascii=False)
        assert "\u200b" not in json.dumps(call, ensure_ascii=False)

        log = await read_json(client, f"uponai://calls/{call_id}/events")
        names = [e["event"] for e in log["events"]]
        assert names == ["call_started", "call_ended", "call_analyzed"]
        assert [e["seq"] for e in log["events"]] == sorted(e["seq"] for e in log["events"])
        assert {e["source"] for e in log["events"]} == {"webhook"}
        assert "\u202e" not in json.dumps(log, ensure_ascii=False)
        assert log["events"][1]["call"]["untrusted"]["transcript"]

        recent = (await read_json(client, "uponai://events/recent"))["events"]
        assert [e["event"] for e in recent[:3]] == ["call_analyzed", "call_ended", "call_started"]
        assert recent[0]["resource_uri"] == f"uponai://calls/{call_id}" and "call" not in recent[0]

        listed = {r.uri for r in (await client.list_resources()).resources}
        assert f"uponai://calls/{call_id}" in listed

        audit = (await read_json(client, "uponai://audit"))["entries"]
        assert any(e["decision"] == "placed" and e["details"].get("call_id") == call_id for e in audit)
        assert audit == sorted(audit, key=lambda e: -e["id"])


async def test_unknown_calls_are_not_found(tmp_path):
    async with embedded(tmp_path) as client:
        for uri in ("uponai://calls/call_doesnotexist", "uponai://calls/call_doesnotexist/events"):
            with pytest.raises(MCPError) as info:
                await client.read_resource(uri)
            assert info.value.error.code == -32602, uri
        r = await client.call_tool("wait_for_call", {"call_id": "call_doesnotexist", "timeout_s": 1})
        assert r.is_error and "not_found" in r.content[0].text


async def test_wait_for_call_timeout_returns_the_current_state(tmp_path):
    async with embedded(tmp_path, speed=0.5) as client:  # a call rings for seconds
        call_id = await place(client)
        progress: list = []
        waited = await wait(client, call_id, "ended", timeout_s=0.6, progress=progress)
        assert waited["reached"] is False and waited["call_id"] == call_id
        assert waited["call_status"] in ("registered", "ongoing")
        assert 0.5 <= waited["waited_s"] < 5 and "Timed out" in waited["note"]
        assert progress


async def test_wait_for_call_until_ended_returns_before_the_analysis(tmp_path):
    async with embedded(tmp_path, speed=10) as client:
        call_id = await place(client)
        waited = await wait(client, call_id, "ended")
        assert waited["reached"] and waited["call_status"] == "ended"


async def test_policy_numbers_and_cps_resources(tmp_path):
    async with embedded(tmp_path) as client:
        policy = await read_json(client, "uponai://policy")
        assert policy["mode"] == "sandbox" and policy["read_only"] is False
        assert policy["confirmation"] == "never" and policy["calling_window"]["local_time"] == "off"
        assert policy["countries_by_provider"]["telnyx"] == ["CA", "IN", "US"]
        assert "US" in policy["countries_by_provider"]["twilio"] and "PREMIUM_RATE" in policy["blocked_number_types"]
        assert policy["budgets"]["max_calls_per_hour"] > 0
        assert policy["call_events"]["webhook_receiver"].endswith("/webhooks/uponai")
        numbers = (await read_json(client, "uponai://numbers"))["numbers"]
        assert TWILIO in {n["phone_number"] for n in numbers}
        cps = (await read_json(client, "uponai://cps"))["scopes"]
        assert {s["provider"] for s in cps} == {"twilio", "telnyx", "custom"}


async def test_modern_listen_gets_call_updates_and_list_changes(tmp_path):
    async with embedded(tmp_path) as client:
        got: list = []
        async with client.listen(resource_subscriptions=["uponai://events/recent"],
                                 resources_list_changed=True) as sub:
            call_id = await place(client)
            with anyio.fail_after(20):
                async for event in sub:
                    got.append(event)
                    if ResourcesListChanged() in got and ResourceUpdated("uponai://events/recent") in got:
                        break
            async with client.listen(resource_subscriptions=[f"uponai://calls/{call_id}/events"]) as call_sub:
                with anyio.fail_after(20):
                    async for event in call_sub:
                        assert event == ResourceUpdated(f"uponai://calls/{call_id}/events")
                        log = await read_json(client, event.uri)
                        if [e["event"] for e in log["events"]][-1:] == ["call_analyzed"]:
                            break


async def test_legacy_subscribe_gets_call_updates(tmp_path):
    received: list[str] = []
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if getattr(message, "method", None) == "notifications/resources/updated":
            received.append(str(message.params.uri))
            changed.set()

    async with embedded(tmp_path, mode="legacy", message_handler=on_message) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # subscribe_resource is deprecated for 2026 servers
            await client.subscribe_resource("uponai://events/recent")
            call_id = await place(client)
            await client.subscribe_resource(f"uponai://calls/{call_id}")
        with anyio.fail_after(20):
            while f"uponai://calls/{call_id}" not in received:
                changed = anyio.Event()
                await changed.wait()
        assert "uponai://events/recent" in received
        waited = await wait(client, call_id, "analyzed")  # progress works on the legacy era too
        assert waited["reached"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await client.unsubscribe_resource("uponai://events/recent")
            await client.unsubscribe_resource(f"uponai://calls/{call_id}")


async def _with_receiver(h) -> None:
    """Point the harness's external sandbox at the server's webhook receiver."""
    policy = json.loads((await h.client.read_resource("uponai://policy")).contents[0].text)
    url = policy["call_events"]["webhook_receiver"]
    assert url and policy["call_events"]["poller"].startswith("safety net")
    (await h.http.post("/_sandbox/config", json={"webhook_url": url})).raise_for_status()


@pytest.mark.parametrize("platform_sends_call_failed", [True, False])
async def test_a_never_connected_call_yields_exactly_one_call_failed(tmp_path, platform_sends_call_failed):
    config = SandboxConfig(speed=20, call_failed_events=platform_sends_call_failed)
    async with harness(tmp_path, sandbox=config, webhook_listen="127.0.0.1:0") as h:
        await _with_receiver(h)
        placed = await h.ok("create_phone_call", from_number=TWILIO, to_number=CALLEE,
                            metadata={"sandbox_outcome": "busy"})
        call_id = placed["call_id"]
        waited = await h.ok("wait_for_call", call_id=call_id, until="analyzed", timeout_s=30)
        assert waited["reached"] and waited["call_status"] == "not_connected"
        assert waited["disconnection_reason"] == "dial_busy"
        sandbox_events = [c for c in await h.sandbox_calls() if c["call_id"] == call_id][0]["webhook_events"]
        assert ("call_failed" in sandbox_events) is platform_sends_call_failed
        await anyio.sleep(0.2)  # let any late delivery land
        log = json.loads((await h.client.read_resource(f"uponai://calls/{call_id}/events")).contents[0].text)
        names = [e["event"] for e in log["events"]]
        assert names.count("call_failed") == 1, names
        assert "call_started" not in names and {"call_ended", "call_analyzed"} <= set(names)
        failed = next(e for e in log["events"] if e["event"] == "call_failed")
        assert failed["derived"] is True  # derived at call_ended; the platform's own was a duplicate


async def test_a_failed_create_is_recorded_as_a_call_failed_event(tmp_path):
    async with harness(tmp_path) as h:
        # the platform rejects the create outright (400): no call exists, so the call_failed is the attempt's
        r = await h.call("create_phone_call", from_number=TWILIO, to_number=CALLEE,
                         metadata={"sandbox_outcome": "no_such_outcome"})
        assert r.is_error and await h.sandbox_calls() == []
        recent = json.loads((await h.client.read_resource("uponai://events/recent")).contents[0].text)["events"]
        assert [e["event"] for e in recent] == ["call_failed"]
        call_id = recent[0]["call_id"]
        assert call_id.startswith("attempt:att_") and recent[0]["call_status"] == "error"
        call = json.loads((await h.client.read_resource(f"uponai://calls/{call_id}")).contents[0].text)
        assert call["call_status"] == "error" and "sandbox_outcome" in call["create_error"]["message"]
        log = json.loads((await h.client.read_resource(f"uponai://calls/{call_id}/events")).contents[0].text)
        assert [(e["event"], e["derived"]) for e in log["events"]] == [("call_failed", True)]
        waited = await h.ok("wait_for_call", call_id=call_id, until="ended", timeout_s=5)
        assert waited["reached"] and waited["waited_s"] < 1


async def test_webhook_on_the_mcp_app_custom_route(tmp_path):
    """The streamable HTTP app carries POST /webhooks/uponai too (signature-verified)."""
    from tests.webhook_helpers import body_of, call_object, signed

    server = create_server(Settings(sandbox=True, data_dir=tmp_path, sandbox_speed=20))
    app = server.streamable_http_app()
    transport = httpx.ASGITransport(app=app)
    async with Client(server) as client:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            body = body_of("call_started", call_object("call_custom_route"))
            assert (await http.post("/webhooks/uponai", content=body,
                                    headers=signed(body, key="sk_wrong"))).status_code == 401
            r = await http.post("/webhooks/uponai", content=body, headers=signed(body, key="sk_sandbox"))
            assert r.status_code == 204
        log = json.loads((await client.read_resource("uponai://calls/call_custom_route/events")).contents[0].text)
        assert [e["event"] for e in log["events"]] == ["call_started"]
