"""The running server's services, built in the background so the MCP handshake never waits for them.

`create_server`'s lifespan yields a `ServiceHub` at once; `running_hub` builds the services (store, platform
client, pacer, embedded sandbox, batch runner, ...) in a task, starting when a request first needs them or
after `grace_s`, whichever comes first. Tool calls and resource reads wait for `ready()` (ContractServer does
that in one place), so `initialize` and `tools/list` are answered by a server that has imported and built
nothing it does not need for them. A failure to build is kept and answered as a coded refusal.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from uponai_mcp.errors import Refused

if TYPE_CHECKING:
    from uponai_mcp.services import Services

log = logging.getLogger(__name__)

GRACE_S = 0.5  # the host's handshake (initialize, tools/list) comes first; a tool call starts the build at once


@dataclass
class ServiceHub:
    """The services, or why they could not be built (`failure`)."""

    services: Services | None = None
    failure: Refused | None = None
    _ready: anyio.Event = field(default_factory=anyio.Event, repr=False)
    _wanted: anyio.Event = field(default_factory=anyio.Event, repr=False)

    def require(self) -> Services:
        if self.services is None:
            raise self.failure or Refused("configuration_error", "The server is not configured.")
        return self.services

    async def ready(self) -> None:
        """Wait until the services are built (or failed to be); starts the build if it is still waiting."""
        self._wanted.set()
        await self._ready.wait()


RETRY_FIRST_S = 1.0  # after the storage failed at start: the first retry, doubling up to RETRY_MAX_S
RETRY_MAX_S = 30.0


@asynccontextmanager
async def running_hub(build: Callable[[], AbstractAsyncContextManager[ServiceHub]], *,
                      grace_s: float = GRACE_S) -> AsyncIterator[ServiceHub]:
    """Yields the hub at once and builds its services in a task. When the storage is unavailable (PostgreSQL
    down), requests are answered `store_unavailable` and the build is tried again on the next request after a
    backoff, so the server recovers without a restart; any other failure is kept."""
    hub = ServiceHub()
    stop = anyio.Event()

    async def run() -> None:
        from uponai_mcp.store.errors import StoreUnavailable

        with anyio.move_on_after(grace_s):
            await hub._wanted.wait()
        backoff = RETRY_FIRST_S
        while not stop.is_set():
            try:
                async with build() as built:
                    hub.services, hub.failure = built.services, built.failure
                    hub._ready.set()
                    await stop.wait()
                    return
            except Exception as exc:  # kept and answered as a refusal: the server still lists its tools
                log.error("uponai-mcp services could not start: %s", exc, exc_info=not isinstance(exc, StoreUnavailable))
                if isinstance(exc, StoreUnavailable):
                    hub.failure = Refused("store_unavailable", f"The server's database is unavailable ({exc}); "
                                          "nothing was done. It is tried again shortly: retry in a few seconds.")
                else:
                    hub.failure = Refused("configuration_error", f"The server could not start its services ({exc}); "
                                          "nothing can be done until an operator fixes that and restarts it.")
                hub._ready.set()
                if not isinstance(exc, StoreUnavailable):
                    return
            with anyio.move_on_after(backoff):
                await stop.wait()
            backoff = min(backoff * 2, RETRY_MAX_S)
            # From here the next request waits for the retry it triggers (shutdown also wakes this).
            hub._ready, hub._wanted = anyio.Event(), anyio.Event()
            if stop.is_set():  # checked after the new event exists: shutdown sets whichever is current
                break
            await hub._wanted.wait()
        hub._ready.set()  # shut down while waiting: nobody may hang on a build that will not come

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        try:
            yield hub
        finally:
            stop.set()
            hub._wanted.set()  # a build still waiting (grace, or a retry) ends now
