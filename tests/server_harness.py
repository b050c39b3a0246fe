"""A real MCP server wired to a real sandbox over loopback, for the server tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client

from uponai_mcp.config import TOOLSETS, Settings
from uponai_mcp.errors import CODES, ERROR_META_KEY
from uponai_mcp.sandbox import SandboxConfig, running_sandbox
from uponai_mcp.sandbox.seed import ACCOUNT_SID, WORKSPACE_ID
from uponai_mcp.server import create_server

TWILIO = "+14155550100"
TELNYX = "+14155550101"
CUSTOM = "+14155550102"


class WallClock:
    """An injectable wall clock for calling windows and token expiry."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)
        self.frozen = now is not None

    def __call__(self) -> datetime:
        return self.now if self.frozen else datetime.now(UTC)


@dataclass
class Harness:
    client: Client
    sandbox_url: str
    http: httpx.AsyncClient
    wall: WallClock

    async def call(self, tool: str, **args: Any):
        return await self.client.call_tool(tool, args)

    async def ok(self, tool: str, **args: Any) -> dict:
        result = await self.call(tool, **args)
        assert not result.is_error, result.content[0].text
        return result.structured_content

    async def refused(self, tool: str, **args: Any) -> str:
        """The refusal code of a tool call that must fail."""
        result = await self.call(tool, **args)
        assert result.is_error, f"expected a refusal, got {result.structured_content}"
        return refusal_code(result)

    async def sandbox_calls(self) -> list[dict]:
        return (await self.http.get("/_sandbox/calls")).json()["calls"]

    async def fault(self, **body: Any) -> None:
        (await self.http.post("/_sandbox/faults", json=body)).raise_for_status()


@asynccontextmanager
async def sandbox_process(*args: str) -> AsyncIterator[str]:
    """The sandbox as its own process (like the real platform): its clock and event loop are not ours.
    Yields its URL; `args` are `uponai-mcp sandbox` flags."""
    import re
    import subprocess
    import sys

    proc = await anyio.open_process([sys.executable, "-m", "uponai_mcp", "sandbox", "--port", "0", *args],
                                    stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    async def drain() -> None:  # a full stderr pipe would freeze the sandbox on a long run
        async for _ in proc.stderr:
            pass

    try:
        seen = b""
        with anyio.fail_after(30):
            while (m := re.search(rb"listening on (http://\S+)", seen)) is None:
                seen += await proc.stderr.receive()
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            try:
                yield m.group(1).decode()
            finally:
                tg.cancel_scope.cancel()
    finally:
        proc.terminate()
        with anyio.move_on_after(5, shield=True):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()


def refusal_code(result: Any) -> str:
    """The code of an error result, after checking the contract: text `<code>: <sentence>`, the same as data
    under `_meta["io.uponai/error"]`, a code from errors.CODES, and no structuredContent."""
    text = result.content[0].text
    code, _, sentence = text.partition(": ")
    assert code in CODES and len(sentence) > 10, text
    data = (result.meta or {}).get(ERROR_META_KEY)
    assert data is not None and data["code"] == code and data["message"] == sentence, (text, result.meta)
    assert isinstance(data["details"], dict)
    assert result.structured_content is None, result.structured_content
    return code


def settings_for(url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        api_key="sk_sandbox", base_url=url, sandbox=False, dialect="uponai", workspace_id=WORKSPACE_ID,
        account_sid=ACCOUNT_SID, data_dir=data_dir, confirm="never", calling_window="off",
        read_timeout_s=5.0, create_timeout_s=5.0, toolsets=TOOLSETS,
    )
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def harness(
    data_dir: Path, *, sandbox: SandboxConfig | None = None, wall: WallClock | None = None,
    client_kwargs: dict[str, Any] | None = None, sandbox_url: str | None = None, **overrides: Any,
) -> AsyncIterator[Harness]:
    """A server against an in-process sandbox, or against the sandbox at `sandbox_url`."""
    wall = wall or WallClock()
    async with AsyncExitStack() as stack:
        if sandbox_url is None:
            sandbox_url = (await stack.enter_async_context(running_sandbox(sandbox or SandboxConfig(speed=100)))).url
        server = create_server(settings_for(sandbox_url, data_dir, **overrides), wall=wall)
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=sandbox_url, headers={"Authorization": "Bearer sk_sandbox"}))
        client = await stack.enter_async_context(Client(server, **(client_kwargs or {})))
        yield Harness(client, sandbox_url, http, wall)
