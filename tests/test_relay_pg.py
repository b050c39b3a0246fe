"""Cross-replica fan-out: a change announced on one replica's feed reaches the others (LISTEN/NOTIFY)."""

from __future__ import annotations

import anyio
import pytest
from mcp.server.subscriptions import ResourcesListChanged, ResourceUpdated

from uponai_mcp.events.feed import Feed, call_uri
from uponai_mcp.events.relay import MAX_PAYLOAD, PgRelay, _chunks

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


class RecordingBus:
    def __init__(self) -> None:
        self.events: list[object] = []

    async def publish(self, event: object) -> None:
        self.events.append(event)

    def subscribe(self, listener):  # pragma: no cover - not used here
        return lambda: None


async def _replica(stack, url):
    bus = RecordingBus()
    feed = await stack.enter_async_context(Feed(bus).running())
    relay = await stack.enter_async_context(PgRelay(url, feed).running())
    with anyio.fail_after(10):
        await relay.listening.wait()
    return feed, bus, relay


async def test_a_change_on_one_replica_wakes_waiters_and_subscribers_on_the_others(pg_url):
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        a, _, relay_a = await _replica(stack, pg_url)
        b, bus_b, _ = await _replica(stack, pg_url)
        c, bus_c, _ = await _replica(stack, pg_url)
        waiting_b, waiting_c = b.changed_event("call_1"), c.changed_event("call_1")
        a.call_changed("call_1")
        with anyio.fail_after(5):
            await waiting_b.wait()
            await waiting_c.wait()
            while True:
                if ResourceUpdated(uri=call_uri("call_1")) in bus_b.events:
                    break
                await anyio.sleep(0.01)
        assert ResourcesListChanged() in bus_b.events  # a new call: the list changed too
        a.resource_changed("uponai://batches/b1")
        with anyio.fail_after(5):
            while True:
                if ResourceUpdated(uri="uponai://batches/b1") in bus_c.events:
                    break
                await anyio.sleep(0.01)
        # nothing echoes back to the origin, and a replayed change is not relayed again
        await anyio.sleep(0.2)
        assert relay_a.received == 0


def test_payloads_stay_under_the_notify_limit():
    calls = [(f"call_{i:06d}" * 4, i % 2 == 0) for i in range(2000)]
    chunks = _chunks("o", calls, ["uponai://x"] * 3, True)
    assert len(chunks) > 1 and all(len(p) <= MAX_PAYLOAD for p in chunks)
    import json

    seen = [tuple(c) for p in chunks for c in json.loads(p)["c"]]
    assert seen == [(a, b) for a, b in calls]


async def test_one_replica_polls_a_call(pg_url, tmp_path):
    from tests.server_harness import TWILIO, settings_for
    from uponai_mcp.api import UponAIClient
    from uponai_mcp.events.ingest import Ingest
    from uponai_mcp.events.poller import Poller
    from uponai_mcp.models import CallRequest
    from uponai_mcp.sandbox import SandboxConfig, running_sandbox
    from uponai_mcp.store import Store

    stores = [await Store.open(pg_url) for _ in range(3)]
    try:
        async with (
            running_sandbox(SandboxConfig(speed=0.01)) as sb,  # the call rings for minutes of real time
            UponAIClient.from_settings(settings_for(sb.url, tmp_path)) as api,
        ):
            call = await api.create_call(CallRequest(from_number=TWILIO, to_number="+14155550999"),
                                         attempt_id="att_p")
            s = stores[0]
            await s.create_attempt("att_p", idempotency_key=None, params_hash="h", request_json="{}",
                                   from_number=TWILIO, to_number="+14155550999", scope="twilio")
            await s.mark_attempt("att_p", "dialing")
            await s.mark_attempt("att_p", "placed", call_id=call.call_id)
            clock = [0.0]
            pollers = [Poller(api, Ingest(st, Feed()), jitter=0.0, monotonic=lambda: clock[0]) for st in stores]
            for p in pollers:
                assert await p.sweep() == 0  # first seen: due in 1 s
            for _ in range(4):
                clock[0] = max(p._tracks[call.call_id].due for p in pollers)
                for p in pollers:
                    await p.sweep()
            assert sorted(p.polls for p in pollers) == [0, 0, 4]  # one replica polls it, every time
    finally:
        for st in stores:
            await st.close()


async def test_the_services_wire_every_shared_part_on_postgresql(pg_url, sandbox, tmp_path):
    """With UPONAI_DATABASE_URL the services build the shared pacer and the relay (a guard against losing the
    wiring in an unrelated edit); without it, neither."""
    from tests.server_harness import settings_for
    from uponai_mcp.pacing import SharedPacer
    from uponai_mcp.services import build_services

    async with build_services(settings_for(sandbox.url, tmp_path / "pg", database_url=pg_url)) as hub:
        svc = hub.require()
        assert svc.store.dialect == "postgresql" and isinstance(svc.pacer, SharedPacer)
        assert svc.feed.relay is not None
    async with build_services(settings_for(sandbox.url, tmp_path / "sqlite")) as hub:
        svc = hub.require()
        assert svc.store.dialect == "sqlite" and not isinstance(svc.pacer, SharedPacer)
        assert svc.feed.relay is None
