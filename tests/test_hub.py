"""hub.py: services built in the background; a storage outage at start is retried on the next request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from uponai_mcp import hub as hub_module
from uponai_mcp.errors import Refused
from uponai_mcp.hub import ServiceHub, running_hub
from uponai_mcp.store.errors import StoreUnavailable

pytestmark = pytest.mark.anyio


async def test_a_storage_outage_at_start_is_retried_on_the_next_request(monkeypatch) -> None:
    # The condition (a database that is down, then back) is played by the build function.
    monkeypatch.setattr(hub_module, "RETRY_FIRST_S", 0.05)
    attempts: list[int] = []
    sentinel = object()

    @asynccontextmanager
    async def build() -> AsyncIterator[ServiceHub]:
        attempts.append(1)
        if len(attempts) < 3:
            raise StoreUnavailable("connection refused")
        yield ServiceHub(services=sentinel)  # type: ignore[arg-type]

    async with running_hub(build, grace_s=10) as hub:
        with anyio.fail_after(5):
            await hub.ready()  # a request starts the build at once (no waiting for the grace)
        with pytest.raises(Refused) as refused:
            hub.require()
        assert refused.value.code == "store_unavailable" and len(attempts) == 1
        await hub.ready()  # within the backoff: answered at once, no new attempt
        assert len(attempts) == 1
        for expected in (2, 3):
            await anyio.sleep(0.06 * 2 ** (expected - 2))
            with anyio.fail_after(5):
                await hub.ready()
            assert len(attempts) == expected
        assert hub.require() is sentinel


async def test_a_configuration_failure_is_kept(monkeypatch) -> None:
    @asynccontextmanager
    async def build() -> AsyncIterator[ServiceHub]:
        raise RuntimeError("bad setting")
        yield ServiceHub()  # pragma: no cover

    async with running_hub(build, grace_s=0) as hub:
        await hub.ready()
        with pytest.raises(Refused) as refused:
            hub.require()
        assert refused.value.code == "configuration_error"


async def test_shutting_down_during_the_retry_backoff_does_not_hang(monkeypatch) -> None:
    monkeypatch.setattr(hub_module, "RETRY_FIRST_S", 0.2)

    @asynccontextmanager
    async def build() -> AsyncIterator[ServiceHub]:
        raise StoreUnavailable("connection refused")
        yield ServiceHub()  # pragma: no cover

    for linger in (0.0, 0.1, 0.3):  # inside the backoff, and after it (waiting for the next request)
        with anyio.fail_after(5):
            async with running_hub(build, grace_s=0) as hub:
                await hub.ready()
                await anyio.sleep(linger)
