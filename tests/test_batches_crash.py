"""kill -9 the server over stdio mid-batch, start it again: the batch resumes by itself and completes with exactly
one call per accepted task."""

from __future__ import annotations

import os
import signal
import sys
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
# Write our pid, then become the server: the pid is the server's, so the test kills exactly that process.
LAUNCH = ("import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); "
          "os.execv(sys.executable, [sys.executable, '-m', 'uponai_mcp', 'serve'])")


def params(url: str, data_dir: Path, pid_file: Path) -> StdioServerParameters:
    env = {**os.environ, "UPONAI_API_KEY": "sk_sandbox", "UPONAI_BASE_URL": url, "UPONAI_WORKSPACE_ID": "1",
           "UPONAI_ACCOUNT_SID": ACCOUNT_SID, "UPONAI_DATA_DIR": str(data_dir), "UPONAI_CONFIRM": "never",
           "UPONAI_CALLING_WINDOW": "off", "UPONAI_MAX_ATTEMPTS_PER_DESTINATION": "5",
           "UPONAI_MAX_CALLS_PER_HOUR": "10000", "UPONAI_MAX_CALLS_PER_DAY": "10000"}
    env.pop("UPONAI_SANDBOX", None)
    return StdioServerParameters(command=sys.executable, args=["-c", LAUNCH, str(pid_file)], env=env)


async def test_kill_9_mid_batch_then_restart_completes_with_one_call_per_task(tmp_path):
    numbers = [f"+1415555{2000 + i:04d}" for i in range(TASKS)]
    pid_file = tmp_path / "server.pid"
    async with (
        running_sandbox(SandboxConfig(speed=200, cps={"telnyx": 16}, concurrency_limit=1000)) as sb,
        httpx.AsyncClient(base_url=sb.url, headers={"Authorization": "Bearer sk_sandbox"}) as http,
    ):
        async def sandbox_calls() -> list[dict]:
            return (await http.get("/_sandbox/calls")).json()["calls"]

        server = params(sb.url, tmp_path / "data", pid_file)
        killed = False
        with anyio.fail_after(60):
            try:
                async with Client(server) as client:
                    assert not (await client.call_tool("set_cps", {"provider": "telnyx", "cps": 4})).is_error
                    created = await client.call_tool("create_batch_call", {
                        "from_number": TELNYX, "name": "crash",
                        "tasks": [{"to_number": n, "metadata": {"row": i}} for i, n in enumerate(numbers)]})
                    assert not created.is_error, created.content[0].text
                    batch_id = created.structured_content["batch_id"]
                    while True:
                        if len(await sandbox_calls()) >= 10:
                            break
                        await anyio.sleep(0.02)
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
                    killed = True
                    await anyio.sleep(0.5)
            except Exception:  # the transport dies with the server  # noqa: S110
                if not killed:
                    raise
        assert killed
        before = len(await sandbox_calls())
        assert 10 <= before < TASKS
        await anyio.sleep(1.0)
        assert len(await sandbox_calls()) == before  # nothing dials while the server is down

        with anyio.fail_after(90):
            async with Client(server) as client:  # restart: the batch resumes by itself
                while True:
                    got = await client.call_tool("wait_for_batch", {"batch_id": batch_id, "timeout_s": 30})
                    assert not got.is_error, got.content[0].text
                    if got.structured_content["finished"]:
                        break
                view = (await client.call_tool("get_batch", {"batch_id": batch_id, "tasks_limit": 1000}))
                view = view.structured_content

        assert view["status"] == "completed" and view["counts"] == {"placed": TASKS}, view["counts"]
        calls = await sandbox_calls()
        rows = Counter(c["metadata"]["row"] for c in calls)
        assert len(calls) == TASKS and rows == Counter(range(TASKS)), rows  # exactly one call per task
        by_attempt = {c["metadata"]["uponai_attempt_id"]: c for c in calls}
        for t in view["tasks"]:
            call = by_attempt[t["attempt_id"]]
            assert call["call_id"] == t["call_id"] and call["to_number"] == numbers[t["index"]]
        stats = (await http.get("/_sandbox/stats")).json()
        assert stats["rate_limited_by_scope"]["telnyx"] == 0
