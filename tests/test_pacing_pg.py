"""One pacer for the deployment: replicas book their CPS slots on one schedule in PostgreSQL (database clock).

Each "replica" is its own Store (own connections) with its own SharedPacer; dispatch times are taken on this
process's monotonic clock, so they are comparable across the three.
"""

from __future__ import annotations

import time

import anyio
import pytest

from uponai_mcp.pacing import RateLimitedLater, SharedPacer
from uponai_mcp.store import Store
from uponai_mcp.store.pacer_state import PacerState

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
async def replicas(pg_url):
    stores = [await Store.open(pg_url) for _ in range(3)]
    pacers = [SharedPacer(PacerState(s), margin=0.03) for s in stores]
    yield pacers
    for s in stores:
        await s.close()


def max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


async def test_three_replicas_share_one_cps(replicas):
    for p in replicas:
        p.set_cps("telnyx", 16)
    await replicas[0].sync()
    sent: list[float] = []

    async def one(i: int) -> None:
        await replicas[i % 3].acquire("telnyx", horizon_s=30)
        sent.append(time.monotonic())

    async with anyio.create_task_group() as tg:
        for i in range(48):
            tg.start_soon(one, i)
    assert max_in_window(sent) <= 16
    rate = (len(sent) - 1) / (max(sent) - min(sent))
    assert rate >= 16 * 0.9, rate  # 3 replicas together, not 3 x 16 and not 16 / 3


async def test_set_cps_on_one_replica_applies_on_all(replicas):
    a, b, _ = replicas
    await b.reserve("telnyx")  # b seeds the scope at its default (1)
    a.set_cps("telnyx", 10)
    await a.sync()
    await b.reserve("telnyx")
    assert b.get_state("telnyx").effective_cps == 10
    b.set_cps("telnyx", 2)  # a cut on b
    await b.sync()
    await a.reserve("telnyx")
    assert a.get_state("telnyx").effective_cps == 2


async def test_a_429_on_one_replica_pauses_the_others(replicas):
    a, b, _ = replicas
    a.set_cps("telnyx", 16)
    await a.sync()
    a.penalize("telnyx", 1.5)
    await a.reserve("telnyx")  # publishes the pause with its booking
    t0 = time.monotonic()
    await b.acquire("telnyx", horizon_s=10)
    assert time.monotonic() - t0 >= 1.3


async def test_a_full_schedule_refuses_beyond_the_horizon_on_any_replica(replicas):
    a, b, _ = replicas  # CPS 1 (the default): each booking is ~1 s after the previous
    for _ in range(3):
        await a.reserve("twilio", horizon_s=5)
    with pytest.raises(RateLimitedLater) as info:
        await b.reserve("twilio", horizon_s=1.5)
    assert info.value.retry_after_s > 1.5


async def test_a_replica_shows_a_cps_set_elsewhere_without_booking(replicas):
    a, b, _ = replicas
    a.set_cps("telnyx", 12)
    await a.sync()
    await b.refresh()
    assert b.get_state("telnyx").effective_cps == 12 and b.get_state("telnyx").configured_cps == 12
