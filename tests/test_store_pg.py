"""PostgreSQL as the shared home of several replicas: what only shows with more than one process.

Each "replica" here is its own Store (own connection pools) or its own MCP server on one database: budgets
hold across them (the reservation serializes on the attempts ledger's advisory lock), idempotency too,
replicas starting together migrate once, and the faults of issue 10 item 7: PostgreSQL unreachable at start
(tools still listed, stateful tools answer `store_unavailable`) and lost mid-run (nothing dials without its
attempt row; dialling resumes when it is back).
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tests.pg_harness import started_or_skip
from tests.server_harness import TELNYX, harness, refusal_code
from uponai_mcp.store import SCHEMA_VERSION, ReservationRefused, Store, StoreUnavailable

pytestmark = pytest.mark.anyio
TO = "+14155550123"


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def _reserve(store: Store, i: int, *, cap_day: int | None = None, cap_dest: int | None = None,
                   key: str | None = None, to: str = TO):
    def check(usage):
        if cap_dest is not None and usage.to_destination_24h >= cap_dest:
            return "destination cap"
        if cap_day is not None and usage.last_day >= cap_day:
            return "daily cap"
        return None

    return await store.create_attempt(f"a{i}-{to}", idempotency_key=key, params_hash="p",
                                      request_json=json.dumps({"to_number": to}), from_number=TELNYX,
                                      to_number=to, scope="telnyx", check=check)


async def _race(stores: list[Store], n: int, **kw) -> tuple[list, list]:
    made, refused = [], []

    async def one(i: int) -> None:
        try:
            made.append(await _reserve(stores[i % len(stores)], i, **kw))
        except ReservationRefused as exc:
            refused.append(exc.reason)

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return made, refused


async def test_three_replicas_cannot_pass_a_cap_of_one(pg_url):
    stores = [await Store.open(pg_url) for _ in range(3)]
    try:
        made, refused = await _race(stores, 20, cap_dest=1)
        assert len(made) == 1 and refused == ["destination cap"] * 19
        made, refused = await _race(stores, 30, cap_day=4, to="+14155550124")  # a daily cap of 4: 3 more
        assert len(made) == 3 and len(refused) == 27
        assert await stores[0].count_attempts(since_ms=0) == 4
    finally:
        for s in stores:
            await s.close()


async def test_one_idempotency_key_across_replicas_makes_one_attempt(pg_url):
    stores = [await Store.open(pg_url) for _ in range(3)]
    try:
        made, refused = await _race(stores, 30, key="same")
        assert not refused and len({a.attempt_id for a in made}) == 1 and sum(not a.replay for a in made) == 1
    finally:
        for s in stores:
            await s.close()


async def test_replicas_starting_together_migrate_once(pg_url):
    stores: list[Store] = []

    async def start() -> None:
        stores.append(await Store.open(pg_url))

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(start)
    try:
        from tests.test_store import pg_exec

        assert pg_exec(pg_url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
        await stores[0].audit("x", decision="allowed", summary="s")
        assert len(await stores[5].recent_audit()) == 1  # one database, seen by all
    finally:
        for s in stores:
            await s.close()


async def test_mcp_replicas_on_one_database_place_one_call_under_a_cap_of_one(pg_url, tmp_path: Path):
    async with harness(tmp_path / "r0", database_url=pg_url, max_attempts_per_destination_24h=1) as h0:
        async with harness(tmp_path / "r1", database_url=pg_url, max_attempts_per_destination_24h=1,
                           sandbox_url=h0.sandbox_url) as h1, \
                harness(tmp_path / "r2", database_url=pg_url, max_attempts_per_destination_24h=1,
                        sandbox_url=h0.sandbox_url) as h2:
            replicas = [h0, h1, h2]
            codes: list[str] = []

            async def one(i: int) -> None:
                result = await replicas[i % 3].call("create_phone_call", from_number=TELNYX, to_number=TO)
                codes.append("placed" if not result.is_error else refusal_code(result))

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i)
            assert sorted(codes) == ["budget_exceeded"] * 19 + ["placed"]
            assert len(await h0.sandbox_calls()) == 1


# --- faults (issue 10, item 7) -------------------------------------------------------------------------


async def test_unreachable_at_start_lists_tools_and_answers_store_unavailable(tmp_path: Path):
    async with harness(tmp_path, database_url="postgresql://postgres@127.0.0.1:1/nowhere") as h:
        tools = await h.client.list_tools()
        assert any(t.name == "create_phone_call" for t in tools.tools)
        result = await h.call("create_phone_call", from_number=TELNYX, to_number=TO)
        assert refusal_code(result) == "store_unavailable"
        assert "PostgreSQL" in result.content[0].text
        assert await h.sandbox_calls() == []


@pytest.fixture
def own_pg():
    """A server of its own: this test stops and restarts it."""
    yield from started_or_skip()


async def test_lost_mid_run_fails_closed_then_resumes(own_pg, tmp_path: Path):
    url = own_pg.create_database("app")
    async with harness(tmp_path, database_url=url, max_attempts_per_destination_24h=5) as h:
        await h.ok("create_phone_call", from_number=TELNYX, to_number=TO)
        own_pg.kill()
        try:
            for _ in range(3):
                result = await h.call("create_phone_call", from_number=TELNYX, to_number=TO)
                assert refusal_code(result) == "store_unavailable"
            assert len(await h.sandbox_calls()) == 1  # nothing dialled without its attempt row
        finally:
            own_pg.resume()
        with anyio.fail_after(20):
            while True:  # the pools reconnect on their own
                result = await h.call("create_phone_call", from_number=TELNYX, to_number=TO)
                if not result.is_error:
                    break
                assert refusal_code(result) == "store_unavailable"
                await anyio.sleep(0.2)
        assert len(await h.sandbox_calls()) == 2
    async with await Store.open(url) as store:
        placed = [a for a in await store.attempts_in_state("placed")]
        assert len(placed) == 2  # one attempt row per platform call, nothing doubled


async def test_store_unavailable_while_down_then_recovers(own_pg):
    url = own_pg.create_database("s")
    async with await Store.open(url, busy_timeout_ms=200) as store:
        await store.audit("x", decision="allowed", summary="before")
        own_pg.kill()
        try:
            with pytest.raises(StoreUnavailable):
                await store.audit("x", decision="allowed", summary="while down")
            with pytest.raises(StoreUnavailable):
                await store.recent_audit()
        finally:
            own_pg.resume()
        await store.audit("x", decision="allowed", summary="after")
        assert [e.summary for e in await store.recent_audit()] == ["after", "before"]


async def test_a_starting_replica_leaves_the_others_attempts_alone(pg_url, tmp_path: Path):
    import time

    now = int(time.time() * 1000)
    async with await Store.open(pg_url) as store:
        for attempt_id, at in (("att_live", now), ("att_orphan", now - 3_600_000)):
            await store.create_attempt(attempt_id, idempotency_key=None, params_hash="h", request_json="{}",
                                       from_number=TELNYX, to_number=TO, scope="telnyx", now_ms=at)
        await store.mark_attempt("att_live", "dialing", now_ms=now, send_at_ms=now + 20_000)  # waits for its slot
    async with harness(tmp_path, database_url=pg_url) as h:
        await h.ok("get_cps")  # the services are up: start-up reconciliation ran
    async with await Store.open(pg_url) as store:
        assert (await store.get_attempt("att_live")).state == "dialing"  # another replica's, in flight
        assert (await store.get_attempt("att_orphan")).state == "failed"  # its replica died long ago


async def test_orphans_are_settled_periodically_and_a_failure_does_not_stop_it():
    from uponai_mcp.services import settle_orphans

    class Dialer:
        calls = 0

        async def reconcile_pending(self):
            Dialer.calls += 1
            if Dialer.calls == 1:
                raise StoreUnavailable("PostgreSQL is unavailable: gone for a moment")

    with anyio.move_on_after(0.5):
        await settle_orphans(Dialer(), every_s=0.05)  # type: ignore[arg-type]
    assert Dialer.calls >= 3
