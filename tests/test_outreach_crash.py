"""A scheduled call survives kill -9: the server is killed after scheduling, the call's time passes while it is
down, and the restarted server dials it exactly once; a second kill -9 right after it dialled and another restart
do not dial it again."""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters

from tests.server_harness import TWILIO
from uponai_mcp.sandbox import SandboxConfig, running_sandbox
from uponai_mcp.sandbox.seed import ACCOUNT_SID

pytestmark = pytest.mark.anyio

LAUNCH = ("import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); "
          "os.execv(sys.executable, [sys.executable, '-m', 'uponai_mcp', 'serve'])")
NUMBER = "+14155552693"


def params(url: str, data_dir: Path, pid_file: Path) -> StdioServerParameters:
    env = {**os.environ, "UPONAI_API_KEY": "sk_sandbox", "UPONAI_BASE_URL": url, "UPONAI_WORKSPACE_ID": "1",
           "UPONAI_ACCOUNT_SID": ACCOUNT_SID, "UPONAI_DATA_DIR": str(data_dir), "UPONAI_CONFIRM": "never",
           "UPONAI_CALLING_WINDOW": "off", "UPONAI_DIALECT": "uponai"}
    env.pop("UPONAI_SANDBOX", None)
    return StdioServerParameters(command=sys.executable, args=["-c", LAUNCH, str(pid_file)], env=env)


async def _killed(server: StdioServerParameters, pid_file: Path, body) -> None:
    """Run `body(client)` against a fresh server process, then kill -9 it."""
    killed = False
    try:
        async with Client(server) as client:
            await body(client)
            os.kill(int(pid_file.read_text()), signal.SIGKILL)  # noqa: ASYNC240  (a few bytes, once)
            killed = True
            await anyio.sleep(0.3)
    except Exception:  # the transport dies with the server  # noqa: S110
        if not killed:
            raise
    assert killed


async def test_scheduled_call_survives_kill_9_and_restart_and_dials_once(tmp_path):
    pid_file = tmp_path / "server.pid"
    async with (
        running_sandbox(SandboxConfig(speed=50)) as sb,
        httpx.AsyncClient(base_url=sb.url, headers={"Authorization": "Bearer sk_sandbox"}) as http,
    ):
        async def calls() -> list[dict]:
            return [c for c in (await http.get("/_sandbox/calls")).json()["calls"] if c["to_number"] == NUMBER]

        server = params(sb.url, tmp_path / "data", pid_file)
        due = datetime.now(UTC) + timedelta(seconds=4)
        schedule: dict = {}

        async def create(client: Client) -> None:
            got = await client.call_tool("create_phone_call", {
                "from_number": TWILIO, "to_number": NUMBER, "scheduled_at": due.isoformat()})
            assert not got.is_error, got.content[0].text
            schedule.update(got.structured_content["scheduled"])

        with anyio.fail_after(60):
            await _killed(server, pid_file, create)
        assert schedule["state"] == "scheduled"
        await anyio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 1.0)
        assert await calls() == []  # its time passed while the server was down

        placed: dict = {}

        async def until_placed(client: Client) -> None:
            while True:
                got = await client.call_tool("list_scheduled_calls", {})
                assert not got.is_error, got.content[0].text
                row = next(s for s in got.structured_content["scheduled"] if s["schedule_id"] == schedule["schedule_id"])
                if row["state"] == "placed":
                    placed.update(row)
                    return
                assert row["state"] in ("scheduled", "dialing"), row
                await anyio.sleep(0.1)

        with anyio.fail_after(60):
            await _killed(server, pid_file, until_placed)  # restart: dialled late, once; then killed again
        found = await calls()
        assert [c["call_id"] for c in found] == [placed["call_id"]]

        with anyio.fail_after(60):
            async with Client(server) as client:  # a third start finds it placed and dials nothing
                await anyio.sleep(2.0)
                got = await client.call_tool("list_scheduled_calls", {"state": "placed"})
                assert [s["call_id"] for s in got.structured_content["scheduled"]] == [placed["call_id"]]
        assert len(await calls()) == 1


async def test_a_restart_settles_scheduled_calls_a_crash_left_dialing_from_the_ledger(tmp_path):
    """The states a kill -9 can leave, written into the database before the server starts: claimed but never
    written to the ledger, written but never sent, and already placed. Only the first two are dialled, once."""
    from tests.server_harness import harness
    from tests.test_outreach import eventually
    from uponai_mcp import params as call_params
    from uponai_mcp.models import CallRequest
    from uponai_mcp.store import Store

    numbers = {"claimed": "+14155552694", "unsent": "+14155552697", "placed": "+14155552698"}
    store = await Store.open(tmp_path / "uponai.db")
    now = int(datetime.now(UTC).timestamp() * 1000)
    for what, number in numbers.items():
        request = CallRequest(from_number=TWILIO, to_number=number)
        sid = f"sch_{what}"
        await store.create_scheduled(sid, to_number=number, from_number=TWILIO,
                                     request_json=call_params.canonical_json(request), idempotency_key=f"key_{sid}",
                                     due_at_ms=now - 1000, now_ms=now - 5000)
        await store.mark_scheduled(sid, "dialing", now_ms=now - 2000)
        if what != "claimed":
            await store.create_attempt(f"att_{what}", idempotency_key=f"key_{sid}",
                                       params_hash=call_params.params_hash(request),
                                       request_json=call_params.canonical_json(request), from_number=TWILIO,
                                       to_number=number, scope="twilio", source=f"scheduled:{sid}", now_ms=now - 2000)
        if what == "placed":
            await store.mark_attempt("att_placed", "dialing", now_ms=now - 1900)
            call = {"call_id": "call_placed_before_the_crash", "call_status": "registered", "to_number": number,
                    "from_number": TWILIO}
            await store.mark_attempt("att_placed", "placed", call_id=call["call_id"],
                                     result_json=json.dumps(call), now_ms=now - 1800)
    await store.close()

    async with harness(tmp_path, sandbox=SandboxConfig(speed=100)) as h:
        async def settled():
            rows = {s["schedule_id"]: s for s in (await h.ok("list_scheduled_calls"))["scheduled"]}
            return rows if all(r["state"] == "placed" for r in rows.values()) else None

        rows = await eventually(settled, within_s=30)
        await anyio.sleep(1.0)
        dialled = [c["to_number"] for c in await h.sandbox_calls()]
        assert sorted(dialled) == sorted([numbers["claimed"], numbers["unsent"]])
        assert rows["sch_placed"]["call_id"] == "call_placed_before_the_crash"
