"""Streamable HTTP: real uvicorn on loopback ports, a real sandbox, real MCP clients; one real CLI process.

Covers: auth only when configured (401 for a missing or wrong token), 421 for a bad Host and 403 for a bad
Origin (before auth), /healthz, the webhook receiver reachable without the MCP token, the client's token
never reaching the platform, and the CLI refusing a non-loopback bind without tokens (exit code 2).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.server_harness import TWILIO, settings_for
from tests.webhook_helpers import lifecycle_body, signed
from uponai_mcp.events import receiver
from uponai_mcp.http_app import HttpOptions, StartupRefused, build_app, is_loopback, transport_security
from uponai_mcp.sandbox import SandboxConfig, create_app

pytestmark = pytest.mark.anyio

CALLEE = "+14155552671"
TOKEN = "mcp-tok-7f3c9a1e5b2d4c6f8a0b"  # distinctive: grep for it in everything the platform received
OTHER_TOKEN = "mcp-tok-second-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[1]
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}
MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@dataclass
class Recorder:
    """ASGI wrapper around the real sandbox: keeps every request's method, path, headers and body."""

    app: Any
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        entry = {"method": scope["method"], "path": scope["path"], "query": scope.get("query_string", b""),
                 "headers": [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]], "body": b""}
        self.requests.append(entry)

        async def recording_receive():
            message = await receive()
            if message["type"] == "http.request":
                entry["body"] += message.get("body", b"")
            return message

        await self.app(scope, recording_receive, send)

    def everything(self) -> bytes:
        parts = []
        for r in self.requests:
            parts += [r["method"].encode(), r["path"].encode(), r["query"], r["body"]]
            parts += [f"{k}: {v}".encode() for k, v in r["headers"]]
        return b"\n".join(parts)


@dataclass
class Live:
    url: str  # the MCP endpoint
    base: str
    sandbox_url: str
    recorder: Recorder
    http: httpx.AsyncClient  # plain client on the MCP server's base URL

    def client(self, token: str | None = None, **kwargs: Any) -> Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = streamable_http_client(self.url, http_client=httpx2.AsyncClient(headers=headers, timeout=30))
        return Client(transport, **kwargs)


@asynccontextmanager
async def live_server(tmp_path: Path, *, tokens: tuple[str, ...] = (), options: HttpOptions | None = None,
                      **overrides: Any) -> AsyncIterator[Live]:
    recorder = Recorder(create_app(SandboxConfig(speed=100)))
    async with receiver.serving(recorder, lifespan=True) as sandbox_url:
        settings = settings_for(sandbox_url, tmp_path, mcp_tokens=tokens, **overrides)
        app = build_app(settings, options or HttpOptions(host="127.0.0.1", port=0))
        async with (
            receiver.serving(app, lifespan=True) as base,
            httpx.AsyncClient(base_url=base, timeout=30, trust_env=False) as http,
        ):
            yield Live(base + "/mcp", base, sandbox_url, recorder, http)


async def test_loopback_without_tokens_serves_both_eras_and_health(tmp_path):
    async with live_server(tmp_path) as live:
        health = await live.http.get("/healthz")
        assert health.status_code == 200 and health.headers["content-type"] == "application/json"
        body = health.json()
        assert body["status"] == "ok" and body["server"] == "uponai-mcp" and body["auth"] == "none"
        assert "sk_sandbox" not in health.text and str(tmp_path) not in health.text
        assert (await live.http.head("/healthz")).status_code == 200
        assert (await live.http.post("/healthz")).status_code == 405
        for mode in ("auto", "legacy"):
            async with live.client(mode=mode) as client:
                names = {t.name for t in (await client.list_tools()).tools}
                assert {"create_phone_call", "preflight_call", "get_call"} <= names
                verdict = await client.call_tool("preflight_call", {"from_number": TWILIO, "to_number": CALLEE})
                assert not verdict.is_error, verdict.content[0].text


async def test_tokens_are_required_when_configured(tmp_path):
    async with live_server(tmp_path, tokens=(TOKEN, OTHER_TOKEN)) as live:
        async def post(headers: dict[str, str]) -> httpx.Response:
            return await live.http.post("/mcp", content=json.dumps(INIT), headers={**MCP_HEADERS, **headers})

        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer wrong"},
                        {"Authorization": f"Bearer {TOKEN[:-1]}X"}, {"Authorization": f"Bearer {TOKEN}x"},
                        {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}):
            refused = await post(headers)
            assert refused.status_code == 401, (headers, refused.text)
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert TOKEN not in refused.text and OTHER_TOKEN not in refused.text
        for token in (TOKEN, OTHER_TOKEN):
            assert (await post({"Authorization": f"Bearer {token}"})).status_code == 200
        # health and discovery of auth stay open; nothing about the tokens is revealed
        health = await live.http.get("/healthz")
        assert health.status_code == 200 and health.json()["auth"] == "bearer" and TOKEN not in health.text
        async with live.client(TOKEN) as client:
            assert (await client.call_tool("preflight_call", {"from_number": TWILIO, "to_number": CALLEE})).is_error \
                is False
        with pytest.raises(Exception):  # noqa: B017 (the SDK's error type for a 401 is not public API)
            async with live.client("not-a-token") as client:
                await client.list_tools()


async def test_bad_host_is_421_and_bad_origin_is_403_before_auth(tmp_path):
    options = HttpOptions(host="127.0.0.1", port=0, allowed_hosts=("mcp.example.com",))
    async with live_server(tmp_path, tokens=(TOKEN,), options=options,
                           mcp_allowed_origins=("https://console.example.org",)) as live:
        async def status(headers: dict[str, str], token: str | None = TOKEN) -> int:
            auth = {"Authorization": f"Bearer {token}"} if token else {}
            r = await live.http.post("/mcp", content=json.dumps(INIT), headers={**MCP_HEADERS, **auth, **headers})
            return r.status_code

        for token in (TOKEN, None, "wrong"):  # the rebinding check comes first, token or not
            assert await status({"Host": "evil.example.com"}, token) == 421
            assert await status({"Host": "mcp.example.com.evil.com"}, token) == 421
            assert await status({"Origin": "http://evil.example.com"}, token) == 403
            assert await status({"Origin": "null"}, token) == 403
            # userinfo, a path, or a port that is not a number never passes the loopback wildcard
            for host in ("localhost:80@evil.com", "127.0.0.1:evil.com", "localhost:80/x", "[::1]:x", "a b"):
                assert await status({"Host": host}, token) == 421, host
            for origin in ("http://localhost:80@evil.com", "http://127.0.0.1:evil.com", "http://localhost/x",
                           "http://user@localhost"):
                assert await status({"Origin": origin}, token) == 403, origin
        assert await status({"Host": "mcp.example.com"}) == 200
        assert await status({"Host": "mcp.example.com:8443", "Origin": "https://mcp.example.com:8443"}) == 200
        assert await status({"Origin": "https://console.example.org"}) == 200
        assert await status({"Origin": "http://localhost:6274"}) == 200  # e.g. the Inspector UI
        assert await status({"Host": "mcp.example.com"}, None) == 401
        # GET and DELETE on the endpoint get the same check
        r = await live.http.get("/mcp", headers={"Host": "evil.example.com", "Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 421
        # health checks come from load balancers with any Host
        assert (await live.http.get("/healthz", headers={"Host": "10.1.2.3:8000"})).status_code == 200


async def test_webhooks_reach_the_receiver_without_the_mcp_token(tmp_path):
    async with live_server(tmp_path, tokens=(TOKEN,)) as live:
        # 1. a signed event posted the way the platform does: no MCP token, public Host name
        body = lifecycle_body("call_started", "call_from_platform")
        headers = {**signed(body, key="sk_sandbox"), "Host": "hooks.example.com"}
        accepted = await live.http.post("/webhooks/uponai", content=body, headers=headers)
        assert accepted.status_code == 204, accepted.text
        unsigned = await live.http.post("/webhooks/uponai", content=body,
                                        headers={"content-type": "application/json"})
        assert unsigned.status_code == 401  # the receiver's own check, not the MCP token's
        wrong_key = await live.http.post("/webhooks/uponai", content=body, headers=signed(body, key=TOKEN))
        assert wrong_key.status_code == 401
        async with live.client(TOKEN) as client:
            events = await client.read_resource("uponai://calls/call_from_platform/events")
            assert "call_started" in events.contents[0].text
            # 2. the sandbox delivers a real call's webhooks to the same app
            async with httpx.AsyncClient(base_url=live.sandbox_url, headers={"Authorization": "Bearer sk_sandbox"}) as sb:
                (await sb.post("/_sandbox/config", json={"webhook_url": live.base + "/webhooks/uponai"})).raise_for_status()
                placed = await client.call_tool("create_phone_call", {"from_number": TWILIO, "to_number": CALLEE})
                assert not placed.is_error, placed.content[0].text
                call_id = placed.structured_content["call_id"]
                with anyio.fail_after(20):
                    while True:
                        log = [e for e in (await sb.get("/_sandbox/stats")).json()["webhook_log"]
                               if e["call_id"] == call_id]
                        if any(e["event"] == "call_ended" for e in log):
                            break
                        await anyio.sleep(0.05)
        assert log and all(e["outcome"] == "delivered" and e["status"] == 204 for e in log), log


async def test_the_platform_never_sees_the_mcp_token(tmp_path):
    async with live_server(tmp_path, tokens=(TOKEN,)) as live:
        async with live.client(TOKEN) as client:
            for name, args in [("list_phone_numbers", {}), ("list_agents", {}),
                               ("preflight_call", {"from_number": TWILIO, "to_number": CALLEE}),
                               ("create_phone_call", {"from_number": TWILIO, "to_number": CALLEE,
                                                      "metadata": {"note": "hello"}}),
                               ("get_call", {"call_id": "call_doesnotexist"}), ("get_cps", {})]:
                await client.call_tool(name, args)
            placed = [r for r in live.recorder.requests if r["method"] == "POST" and "calls" in r["path"]]
            assert placed, "the call never reached the sandbox"
    assert live.recorder.requests
    assert TOKEN.encode() not in live.recorder.everything()
    for request in live.recorder.requests:
        auth = dict(request["headers"]).get("authorization")
        assert auth == "Bearer sk_sandbox", (request["path"], auth)


def test_allowlists_and_loopback_detection():
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com"))
    sec = transport_security(HttpOptions(host="10.0.0.5", allowed_hosts=("mcp.example.com", "2001:db8::1")))
    assert sec.enable_dns_rebinding_protection
    assert {"10.0.0.5:*", "mcp.example.com", "mcp.example.com:*", "[2001:db8::1]:*", "localhost:*"} <= set(
        sec.allowed_hosts)
    assert "https://mcp.example.com" in sec.allowed_origins
    assert "0.0.0.0:*" not in transport_security(HttpOptions(host="0.0.0.0")).allowed_hosts
    for bad in ("https://mcp.example.com", "mcp.example.com/mcp", "a b"):
        with pytest.raises(StartupRefused):
            transport_security(HttpOptions(allowed_hosts=(bad,)))
    with pytest.raises(StartupRefused):
        transport_security(HttpOptions(allowed_origins=("console.example.org",)))


# --- the real CLI process -------------------------------------------------------------------------


def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPONAI_")}
    env.update(UPONAI_SANDBOX="1", UPONAI_DATA_DIR=str(tmp_path / "data"), UPONAI_SANDBOX_SPEED="50", **extra)
    return env


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.255.255.1"])
def test_cli_refuses_a_non_loopback_bind_without_tokens(tmp_path, host):
    proc = subprocess.run([sys.executable, "-m", "uponai_mcp", "serve", "--transport", "streamable-http",
                           "--host", host, "--port", "0"], env=_cli_env(tmp_path), capture_output=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == b""
    assert b"UPONAI_MCP_TOKENS" in proc.stderr and b"refusing" in proc.stderr


def test_cli_refuses_a_malformed_allowed_host(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "uponai_mcp", "serve", "--transport", "streamable-http",
                           "--port", "0", "--allowed-host", "https://mcp.example.com/"],
                          env=_cli_env(tmp_path), capture_output=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and b"not a host name" in proc.stderr


async def test_cli_serves_with_a_token_on_all_interfaces(tmp_path):
    env = _cli_env(tmp_path, UPONAI_MCP_TOKENS=f"{TOKEN},{OTHER_TOKEN}", UPONAI_MCP_ALLOWED_HOSTS="mcp.example.com")
    cmd = [sys.executable, "-m", "uponai_mcp", "serve", "--transport", "streamable-http", "--host", "0.0.0.0",
           "--port", "0"]
    proc = await anyio.open_process(cmd, env=env, cwd=ROOT)
    stderr = b""
    try:
        with anyio.fail_after(60):
            while (m := re.search(rb"at http://0\.0\.0\.0:(\d+)/mcp", stderr)) is None:
                chunk = await proc.stderr.receive()
                stderr += chunk
        port = int(m.group(1))
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=30) as http:
            assert (await http.get("/healthz")).json()["auth"] == "bearer"
            r = await http.post("/mcp", content=json.dumps(INIT), headers=MCP_HEADERS)
            assert r.status_code == 401
            r = await http.post("/mcp", content=json.dumps(INIT),
                                headers={**MCP_HEADERS, "Host": "mcp.example.com", "Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 200
        headers = {"Authorization": f"Bearer {OTHER_TOKEN}"}
        transport = streamable_http_client(base + "/mcp", http_client=httpx2.AsyncClient(headers=headers))
        async with Client(transport) as client:
            result = await client.call_tool("preflight_call", {"from_number": TWILIO, "to_number": CALLEE})
            assert not result.is_error
    finally:
        proc.terminate()
        with anyio.fail_after(20):
            await proc.wait()
        with anyio.fail_after(10):
            try:
                while True:
                    stderr += await proc.stderr.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                pass
    assert proc.returncode in (0, -15)
    assert TOKEN.encode() not in stderr and OTHER_TOKEN.encode() not in stderr
