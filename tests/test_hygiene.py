"""Process hygiene: stdout carries only JSON-RPC, secrets never leak, `tools/list` needs no settings.

Real server processes (`python -m uponai_mcp serve`) over raw pipes, every byte of stdout read; an
in-process server with `caplog` at DEBUG; the real sandbox over loopback for the platform side.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from tests.server_harness import TWILIO, settings_for
from tests.stdio_helpers import StdioPeer, stdio_peer
from uponai_mcp.config import Settings
from uponai_mcp.sandbox import SandboxConfig, running_sandbox
from uponai_mcp.sandbox.seed import ACCOUNT_SID, WORKSPACE_ID
from uponai_mcp.server import create_server

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
SERVE = [sys.executable, "-m", "uponai_mcp", "serve"]
CALLEE = "+14155552671"
SECRET_API_KEY = "key_live_SECRETapi_9d8c7b6a5f4e3d2c"
SECRET_WEBHOOK_KEY = "whk_SECRETwebhook_1a2b3c4d5e6f7a8b"
SECRET_TOKEN = "mcp_SECRETtoken_0f1e2d3c4b5a6978"
WRONG_API_KEY = "key_live_SECRETwrong_5555666677778888"
SECRETS = (SECRET_API_KEY, SECRET_WEBHOOK_KEY, SECRET_TOKEN, WRONG_API_KEY)


def _env(**values: str) -> dict[str, str]:
    """The parent's environment without any UPONAI_* setting, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPONAI_")}
    env.update(values)
    return env


def _leaks(text: str | bytes) -> list[str]:
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8", errors="replace")
    # also catch a secret escaped into JSON or split by a repr: look for its distinctive middle part
    return [s for s in SECRETS if s in text or s.split("_")[2] in text]


# Tool calls that succeed, are refused, fail validation, or fail upstream.
TOOL_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("list_phone_numbers", {}),
    ("list_agents", {}),
    ("get_cps", {}),
    ("preflight_call", {"from_number": TWILIO, "to_number": CALLEE}),
    ("create_phone_call", {"from_number": TWILIO, "to_number": CALLEE, "metadata": {"ticket": "7"}}),
    ("create_phone_call", {"from_number": TWILIO, "to_number": "911"}),  # emergency_number
    ("create_phone_call", {"from_number": TWILIO, "to_number": "+19005550123"}),  # premium rate
    ("create_phone_call", {"from_number": "+15555555555", "to_number": CALLEE}),  # not our number
    ("create_phone_call", {"from_number": TWILIO}),  # missing argument: validation error
    ("confirm_call", {"token": "not-a-token"}),  # confirmation_invalid
    ("get_call", {"call_id": "call_doesnotexist"}),
    ("list_calls", {"limit": 5}),
    ("set_cps", {"provider": "twilio", "cps": 999}),  # cps_above_provider_max
    ("bind_agent", {"phone_number": "+15555555555", "outbound_agent_id": "agent_nope"}),
    ("get_batch", {"batch_id": "batch_nope"}),
    ("list_batches", {}),
    ("no_such_tool", {}),
]


async def _exercise_stdio(peer: StdioPeer) -> list[dict[str, Any]]:
    """initialize, every tool (ok and failing), every resource, prompts; returns all responses."""
    responses = [{"result": await peer.initialize()}]
    tools = await peer.request("tools/list")
    assert len(tools["result"]["tools"]) >= 10, tools
    responses.append(tools)
    call_id = None
    for name, args in TOOL_CALLS:
        response = await peer.call_tool(name, args)
        responses.append(response)
        structured = response.get("result", {}).get("structuredContent") or {}
        if name == "create_phone_call" and structured.get("call_id"):
            call_id = structured["call_id"]
    assert call_id, "the sandbox call was not placed"
    responses.append(await peer.call_tool("get_call", {"call_id": call_id}))
    listed = await peer.request("resources/list")
    responses.append(listed)
    uris = [r["uri"] for r in listed["result"]["resources"]]
    uris += [f"uponai://calls/{call_id}", f"uponai://calls/{call_id}/events", "uponai://calls/call_nope",
             "uponai://nope"]
    for uri in uris:
        responses.append(await peer.request("resources/read", {"uri": uri}))
    responses.append(await peer.request("resources/templates/list"))
    responses.append(await peer.request("prompts/list"))
    responses.append(await peer.request("ping"))
    responses.append(await peer.request("no/such/method"))
    return responses


async def test_stdio_writes_nothing_but_json_rpc_to_stdout(tmp_path):
    env = _env(UPONAI_SANDBOX="1", UPONAI_DATA_DIR=str(tmp_path), UPONAI_SANDBOX_SPEED="50",
               UPONAI_LOG_LEVEL="DEBUG", UPONAI_API_KEY=SECRET_API_KEY, UPONAI_WEBHOOK_KEY=SECRET_WEBHOOK_KEY,
               UPONAI_MCP_TOKENS=SECRET_TOKEN)
    async with stdio_peer(SERVE, env=env, cwd=ROOT) as peer:
        responses = await _exercise_stdio(peer)
    assert peer.proc.returncode == 0, bytes(peer.stderr)[-3000:]
    assert peer.bad_lines == [], peer.bad_lines[:5]
    assert peer.stdout.endswith(b"\n") and b"\n\n" not in peer.stdout
    lines = bytes(peer.stdout).split(b"\n")[:-1]
    assert len(lines) == len(peer.messages) >= len(responses)
    assert all(json.loads(line)["jsonrpc"] == "2.0" for line in lines)
    # every request got exactly one answer, in a message of its own
    answered = [m["id"] for m in peer.messages if "id" in m and "method" not in m]
    assert sorted(answered) == list(range(1, len(answered) + 1))
    assert any("error" in r for r in responses) and any(r.get("result", {}).get("isError") for r in responses)
    assert not _leaks(peer.stdout), "a secret reached stdout"
    assert not _leaks(peer.stderr), "a secret reached the log"
    assert b"embedded sandbox" in peer.stderr  # the log goes to stderr


async def test_secrets_never_reach_results_errors_or_logs_of_a_process(tmp_path):
    """A real platform configuration (the sandbox stands in), DEBUG logging, upstream failures."""
    async with running_sandbox(SandboxConfig(speed=100, api_key=SECRET_API_KEY)) as sb:
        env = _env(UPONAI_API_KEY=SECRET_API_KEY, UPONAI_BASE_URL=sb.url, UPONAI_WORKSPACE_ID=str(WORKSPACE_ID),
                   UPONAI_ACCOUNT_SID=ACCOUNT_SID, UPONAI_DATA_DIR=str(tmp_path), UPONAI_CONFIRM="never",
                   UPONAI_CALLING_WINDOW="off", UPONAI_LOG_LEVEL="DEBUG", UPONAI_WEBHOOK_KEY=SECRET_WEBHOOK_KEY,
                   UPONAI_MCP_TOKENS=SECRET_TOKEN, UPONAI_WEBHOOK_LISTEN="127.0.0.1:0")
        async with (
            httpx.AsyncClient(base_url=sb.url, headers={"Authorization": f"Bearer {SECRET_API_KEY}"}) as control,
            stdio_peer(SERVE, env=env, cwd=ROOT) as peer,
        ):
            responses = await _exercise_stdio(peer)
            for kind in ("500", "429"):  # upstream failures, retries exhausted
                fault = {"kind": kind, "count": 20, "retry_after_s": 0}
                (await control.post("/_sandbox/faults", json=fault)).raise_for_status()
                responses.append(await peer.call_tool("list_agents"))
                responses.append(await peer.call_tool("get_call", {"call_id": "call_x"}))
                (await control.delete("/_sandbox/faults")).raise_for_status()
        assert peer.bad_lines == []
    assert any(r.get("result", {}).get("isError") for r in responses)
    captured = bytes(peer.stdout) + bytes(peer.stderr)
    assert not _leaks(captured), _leaks(captured)


async def test_secrets_never_reach_results_resources_or_caplog(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []

    async def exercise(client: Client) -> None:
        texts.append((await client.list_tools()).model_dump_json())
        for name, args in TOOL_CALLS:
            try:
                texts.append((await client.call_tool(name, args)).model_dump_json())
            except Exception as exc:  # unknown tool: a protocol error, also checked
                texts.append(repr(exc))
        resources = (await client.list_resources()).resources
        for uri in [str(r.uri) for r in resources] + ["uponai://calls/call_nope", "uponai://calls/call_nope/events"]:
            try:
                texts.append((await client.read_resource(uri)).model_dump_json())
            except Exception as exc:
                texts.append(repr(exc))

    async with running_sandbox(SandboxConfig(speed=100, api_key=SECRET_API_KEY)) as sb:
        good = settings_for(sb.url, tmp_path / "good", api_key=SECRET_API_KEY, webhook_key=SECRET_WEBHOOK_KEY,
                            mcp_tokens=(SECRET_TOKEN,))
        async with Client(create_server(good)) as client:
            await exercise(client)
        # the platform rejects the key: every upstream error path, with the key in every request
        wrong = settings_for(sb.url, tmp_path / "wrong", api_key=WRONG_API_KEY, webhook_key=SECRET_WEBHOOK_KEY,
                             mcp_tokens=(SECRET_TOKEN,))
        async with Client(create_server(wrong)) as client:
            await exercise(client)
    assert any('"is_error":true' in t or '"isError":true' in t for t in texts)
    logged = caplog.text + "\n".join(
        str(r.args) + (r.exc_text or "") + str(getattr(r, "stack_info", "")) for r in caplog.records)
    assert not _leaks("\n".join(texts)), _leaks("\n".join(texts))
    assert not _leaks(logged), _leaks(logged)


def test_settings_repr_hides_secrets():
    settings = Settings(api_key=SECRET_API_KEY, webhook_key=SECRET_WEBHOOK_KEY, mcp_tokens=(SECRET_TOKEN,))
    assert not _leaks(repr(settings)) and not _leaks(str(settings))
    from_env = Settings.from_env({"UPONAI_API_KEY": SECRET_API_KEY, "UPONAI_WEBHOOK_KEY": SECRET_WEBHOOK_KEY,
                                  "UPONAI_MCP_TOKENS": SECRET_TOKEN, "UPONAI_SANDBOX": "maybe"})
    assert from_env.errors and not _leaks(repr(from_env)) and not _leaks(" ".join(from_env.errors))


async def test_tools_list_answers_with_no_settings_at_all(tmp_path):
    # What a host that passes no env gives us (HOME kept so the data dir lands in the tmp dir).
    async with stdio_peer(SERVE, env={"HOME": str(tmp_path)}, cwd=tmp_path) as peer:
        info = await peer.initialize()
        tools = await peer.request("tools/list")
    assert info["serverInfo"]["name"] == "uponai-mcp"
    assert {"create_phone_call", "get_call", "preflight_call"} <= {t["name"] for t in tools["result"]["tools"]}
    assert peer.bad_lines == [] and peer.proc.returncode == 0
