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
    """The services, or why they could not be built."""

    services: Services | None = None
    config_error: str | None = None
    failure: Refused | None = None
    _ready: anyio.Event = field(default_factory=anyio.Event, repr=False)
    _wanted: anyio.Event = field(default_factory=anyio.Event, repr=False)

    def require(self) -> Services:
        if self.services is None:
            if self.failure is not None:
                raise self.failure
            raise Refused("configuration_error", self.config_error or "The server is not configured.")
        return self.services

    async def ready(self) -> None:
        """Wait until the services are built (or failed to be); starts the build if it is still waiting."""
        self._wanted.set()
        await self._ready.wait()


@asynccontextmanager
async def running_hub(build: Callable[[], AbstractAsyncContextManager[ServiceHub]], *,
                      grace_s: float = GRACE_S) -> AsyncIterator[ServiceHub]:
    hub = ServiceHub()
    stop = anyio.Event()

    async def run() -> None:
        with anyio.move_on_after(grace_s):
            await hub._wanted.wait()
        try:
            async with build() as built:
                hub.services, hub.config_error = built.services, built.config_error
                hub._ready.set()
                await stop.wait()
        except Exception as exc:  # kept and answered as a refusal: the server still lists its tools
            from uponai_mcp.store.errors import StoreUnavailable

            log.error("uponai-mcp services could not start: %s", exc, exc_info=True)
            code = "store_unavailable" if isinstance(exc, StoreUnavailable) else "configuration_error"
            hub.failure = Refused(code, f"The server could not start its services ({exc}); nothing can be done "
                                  "until an operator fixes that and restarts it.")
        finally:
            hub._ready.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        try:
            yield hub
        finally:
            stop.set()
            hub._wanted.set()  # a build still waiting for its grace ends now (and closes at once)
