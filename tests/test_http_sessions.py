"""Streamable HTTP for many clients: 2025-era sessions are bounded and expire when idle; 2026-07-28 clients keep
no session at all, so they are served whatever the session table holds (and by any replica)."""

from __future__ import annotations

import json

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.server_harness import settings_for
from uponai_mcp.config import Settings
from uponai_mcp.events import receiver
from uponai_mcp.http_app import HttpOptions, build_app
from uponai_mcp.sandbox import SandboxConfig, create_app

pytestmark = pytest.mark.anyio
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


def test_session_settings_from_the_environment():
    s = Settings.from_env({"UPONAI_MCP_SESSION_IDLE_S": "120", "UPONAI_MCP_MAX_SESSIONS": "50"})
    assert (s.mcp_session_idle_s, s.mcp_max_sessions, s.errors) == (120.0, 50, ())
    assert Settings.from_env({"UPONAI_MCP_MAX_SESSIONS": "0"}).errors
    assert (Settings().mcp_session_idle_s, Settings().mcp_max_sessions) == (600.0, 1000)


async def test_legacy_sessions_are_bounded_and_expire_modern_clients_need_none(tmp_path):
    async with receiver.serving(create_app(SandboxConfig(speed=100)), lifespan=True) as sandbox_url:
        settings = settings_for(sandbox_url, tmp_path, mcp_max_sessions=2, mcp_session_idle_s=1.0)
        app = build_app(settings, HttpOptions(host="127.0.0.1", port=0))
        async with (
            receiver.serving(app, lifespan=True) as base,
            httpx.AsyncClient(base_url=base, timeout=30, trust_env=False) as http,
        ):
            ids = []
            for _ in range(2):
                r = await http.post("/mcp", content=json.dumps(INIT), headers=HEADERS)
                assert r.status_code == 200
                ids.append(r.headers["mcp-session-id"])
            r = await http.post("/mcp", content=json.dumps(INIT), headers=HEADERS)
            assert r.status_code == 503  # the table is full: a third 2025-era session waits for room

            transport = streamable_http_client(base + "/mcp", http_client=httpx2.AsyncClient(timeout=30))
            async with Client(transport) as client:  # 2026-07-28: no session, served anyway
                assert (await client.list_tools()).tools

            await anyio.sleep(2.5)  # idle past the timeout: both sessions are closed and forgotten
            ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
            r = await http.post("/mcp", content=json.dumps(ping),
                                headers={**HEADERS, "mcp-session-id": ids[0], "mcp-protocol-version": "2025-11-25"})
            assert r.status_code == 404
            r = await http.post("/mcp", content=json.dumps(INIT), headers=HEADERS)
            assert r.status_code == 200
