"""Several `uponai-mcp serve --transport streamable-http` processes on one PostgreSQL database, against one
platform (a sandbox process), for the multi-replica tests and `bench/replicas.py`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from uponai_mcp.sandbox.seed import ACCOUNT_SID

ROOT = Path(__file__).resolve().parents[1]


def replica_env(sandbox_url: str, db_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPONAI_")}
    env.update({"UPONAI_API_KEY": "sk_sandbox", "UPONAI_BASE_URL": sandbox_url, "UPONAI_WORKSPACE_ID": "1",
                "UPONAI_ACCOUNT_SID": ACCOUNT_SID, "UPONAI_DATA_DIR": str(data_dir), "UPONAI_CONFIRM": "never",
                "UPONAI_CALLING_WINDOW": "off", "UPONAI_MAX_ATTEMPTS_PER_DESTINATION": "100",
                "UPONAI_MAX_CALLS_PER_HOUR": "100000", "UPONAI_MAX_CALLS_PER_DAY": "100000",
                "UPONAI_PACING_HORIZON_S": "600", "UPONAI_DATABASE_URL": db_url})
    env.update(extra)
    return env


@dataclass
class Replica:
    proc: anyio.abc.Process
    port: int
    stderr: bytearray = field(default_factory=bytearray)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """kill -9: no shutdown, no lease released, no connection closed politely."""
        self.proc.send_signal(signal.SIGKILL)


@asynccontextmanager
async def serve_replica(env: dict[str, str], tg: anyio.abc.TaskGroup) -> AsyncIterator[Replica]:
    cmd = [sys.executable, "-m", "uponai_mcp", "serve", "--transport", "streamable-http", "--port", "0"]
    proc = await anyio.open_process(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    buf = bytearray()
    try:
        with anyio.fail_after(60):
            while (m := re.search(rb"at http://127\.0\.0\.1:(\d+)/mcp", buf)) is None:
                buf += await proc.stderr.receive()
        replica = Replica(proc, int(m.group(1)), buf)

        async def drain() -> None:  # a full stderr pipe would block the server
            try:
                async for chunk in proc.stderr:
                    buf.extend(chunk[-4096:])
                    del buf[:-65536]
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass

        tg.start_soon(drain)
        yield replica
    finally:
        if proc.returncode is None:
            proc.terminate()
            with anyio.move_on_after(10, shield=True):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()


@asynccontextmanager
async def running_replicas(n: int, sandbox_url: str, db_url: str, root: Path, **extra: str
                           ) -> AsyncIterator[list[Replica]]:
    async with AsyncExitStack() as stack:
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)
        replicas: list[Replica] = []

        async def start(i: int) -> None:
            env = replica_env(sandbox_url, db_url, root / f"replica{i}", **extra)
            replicas.append(await stack.enter_async_context(serve_replica(env, tg)))

        for i in range(n):  # one after the other: a fair test of migrations is elsewhere, this keeps stderr clear
            await start(i)
        yield replicas


def mcp_client(replica: Replica) -> Client:
    return Client(streamable_http_client(replica.url, http_client=httpx2.AsyncClient(timeout=120)))
