"""The evaluation stage without an API key: `uponai-mcp sandbox` as a child process on a loopback port.

A child process, not a server in our event loop: the simulated platform (its call timers, its webhook deliveries)
then runs on its own core, as the real platform does, and cannot slow the runner it is being measured by."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import httpx

from uponai_mcp.config import SANDBOX_API_KEY
from uponai_mcp.sandbox import SandboxConfig

START_TIMEOUT_S = 30.0


@dataclass
class Stage:
    url: str
    config: SandboxConfig

    async def send_webhooks_to(self, webhook_url: str) -> None:
        async with httpx.AsyncClient(base_url=self.url, trust_env=False, timeout=5,
                                     headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"}) as http:
            (await http.post("/_sandbox/config", json={"webhook_url": webhook_url})).raise_for_status()


def _flags(config: SandboxConfig) -> list[str]:
    flags = ["--port", "0", "--speed", repr(config.speed), "--seed", str(config.seed), "--concurrency",
             str(config.concurrency_limit), "--cps", ",".join(f"{k}={v:g}" for k, v in config.cps.items()),
             "--log-level", "warning", "--api-key", SANDBOX_API_KEY]
    if config.fixture is not None:
        flags += ["--fixture", str(config.fixture)]
    if config.webhook_url is not None:
        flags += ["--webhook-url", config.webhook_url]
    return flags


@asynccontextmanager
async def sandbox_stage(config: SandboxConfig) -> AsyncIterator[Stage]:
    """Start the child, yield once it listens, stop it on exit (its stderr is drained to ours)."""
    proc = await anyio.open_process([sys.executable, "-m", "uponai_mcp", "sandbox", *_flags(config)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        seen = b""
        with anyio.fail_after(START_TIMEOUT_S):
            while (m := re.search(rb"listening on (http://\S+)", seen)) is None:
                try:
                    seen += await proc.stderr.receive()
                except anyio.EndOfStream:
                    raise RuntimeError("the sandbox stopped during start-up: "
                                       + seen.decode(errors="replace")[-500:]) from None
        async with anyio.create_task_group() as tg:
            tg.start_soon(_drain, proc.stderr)  # a full pipe would stall the child
            try:
                yield Stage(m.group(1).decode(), config)
            finally:
                tg.cancel_scope.cancel()
    finally:
        if proc.returncode is None:
            proc.terminate()
            with anyio.move_on_after(5, shield=True):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
        await proc.aclose()


async def _drain(stream: anyio.abc.ByteReceiveStream) -> None:
    async for chunk in stream:
        sys.stderr.write(chunk.decode(errors="replace"))
