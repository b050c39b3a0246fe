"""Batches survive their replica: two servers on one PostgreSQL database; kill -9 the one running a batch and
the other takes it over (its lease expired) within 30 s and finishes it, exactly one platform call per task."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters

from tests.server_harness import TELNYX
from uponai_mcp.sandbox import SandboxConfig, running_sandbox
from uponai_mcp.sandbox.seed import ACCOUNT_SID

pytestmark = pytest.mark.anyio

TASKS = 40
LAUNCH = ("import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); "
          "os.execv(sys.executable, [sys.executable, '-m', 'uponai_mcp', 'serve'])")


@pytest.fixture
def anyio_backend():
    return "asyncio"


def replica(url: str, db_url: str, data_dir: Path, pid_file: Path) -> StdioServerParameters:
    env = {**os.environ, "UPONAI_API_KEY": "sk_sandbox", "UPONAI_BASE_URL": url, "UPONAI_WORKSPACE_ID": "1",
           "UPONAI_ACCOUNT_SID": ACCOUNT_SID, "UPONAI_DATA_DIR": str(data_dir), "UPONAI_CONFIRM": "never",
           "UPONAI_CALLING_WINDOW": "off", "UPONAI_MAX_ATTEMPTS_PER_DESTINATION": "5",
           "UPONAI_MAX_CALLS_PER_HOUR": "10000", "UPONAI_MAX_CALLS_PER_DAY": "10000",
           "UPONAI_DATABASE_URL": db_url}
    env.pop("UPONAI_SANDBOX", None)
    return StdioServerParameters(command=sys.executable, args=["-c", LAUNCH, str(pid_file)], env=env)


async def test_kill_9_the_replica_running_a_batch_and_another_finishes_it(tmp_path, pg_url):
    numbers = [f"+1415555{3000 + i:04d}" for i in range(TASKS)]
    async with (
        running_sandbox(SandboxConfig(speed=200, cps={"telnyx": 16}, concurrency_limit=1000)) as sb,
        httpx.AsyncClient(base_url=sb.url, headers={"Authorization": "Bearer sk_sandbox"}) as http,
    ):
        async def sandbox_calls() -> list[dict]:
            return (await http.get("/_sandbox/calls")).json()["calls"]

        a = replica(sb.url, pg_url, tmp_path / "a", tmp_path / "a.pid")
        b = replica(sb.url, pg_url, tmp_path / "b", tmp_path / "b.pid")
        async with Client(b) as client_b:
            assert not (await client_b.call_tool("get_cps", {})).is_error  # b's services are up
            killed = False
            with anyio.fail_after(60):
                try:
                    async with Client(a) as client_a:
                        assert not (await client_a.call_tool("set_cps", {"provider": "telnyx", "cps": 4})).is_error
                        created = await client_a.call_tool("create_batch_call", {
                            "from_number": TELNYX, "name": "replicas",
                            "tasks": [{"to_number": n, "metadata": {"row": i}} for i, n in enumerate(numbers)]})
                        assert not created.is_error, created.content[0].text
                        batch_id = created.structured_content["batch_id"]
                        while True:
                            if len(await sandbox_calls()) >= 10:
                                break
                            await anyio.sleep(0.02)
                        os.kill(int((tmp_path / "a.pid").read_text()), signal.SIGKILL)
                        killed_at = time.monotonic()
                        killed = True
                        await anyio.sleep(0.3)
                except Exception:  # the transport dies with the server  # noqa: S110
                    if not killed:
                        raise
            assert killed
            before = len(await sandbox_calls())
            assert before < TASKS
            with anyio.fail_after(30):  # b takes the batch over once a's lease expired
                while True:
                    if len(await sandbox_calls()) > before:
                        break
                    await anyio.sleep(0.1)
            took_over_s = time.monotonic() - killed_at
            assert took_over_s < 30
            with anyio.fail_after(90):
                while True:
                    got = await client_b.call_tool("wait_for_batch", {"batch_id": batch_id, "timeout_s": 20})
                    assert not got.is_error, got.content[0].text
                    if got.structured_content["finished"]:
                        break
            view = (await client_b.call_tool("get_batch", {"batch_id": batch_id, "tasks_limit": 1000}))
            view = view.structured_content
        assert view["status"] == "completed" and view["counts"] == {"placed": TASKS}, view["counts"]
        calls = await sandbox_calls()
        rows = Counter(c["metadata"]["row"] for c in calls)
        assert len(calls) == TASKS and rows == Counter(range(TASKS)), rows  # exactly one call per task
        by_attempt = {c["metadata"]["uponai_attempt_id"]: c for c in calls}
        for t in view["tasks"]:
            assert by_attempt[t["attempt_id"]]["call_id"] == t["call_id"]
        stats = (await http.get("/_sandbox/stats")).json()
        assert stats["rate_limited_by_scope"]["telnyx"] == 0  # one schedule across the two replicas
