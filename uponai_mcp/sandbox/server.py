"""Run an ASGI app on a loopback port inside the current event loop (tests, demos) and stop it fast."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from uponai_mcp.tcp import bind_tcp

from .app import create_app
from .config import SandboxConfig
from .engine import Engine


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, handle_signals: bool, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._handle_signals = handle_signals
        self._on_shutdown = on_shutdown

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Embedded in someone else's loop (tests): leave Ctrl-C to the host program.
        if self._handle_signals:
            with super().capture_signals():
                yield
        else:
            yield

    async def main_loop(self) -> None:
        # uvicorn polls every 100 ms; 10 ms makes stopping a test server quick.
        counter = 0
        await self.on_tick(counter)
        while not self.should_exit:
            await asyncio.sleep(0.01)
            counter = (counter + 1) % 100
            if counter == 0:
                await self.on_tick(0)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_shutdown()  # wake hanging requests so their connections can finish
        state = getattr(self, "server_state", None)
        if state is None or not hasattr(self, "servers") or not hasattr(self, "lifespan"):
            await super().shutdown(sockets)
            return
        # uvicorn's own shutdown always sleeps 100 ms and polls every 100 ms; poll every 5 ms instead.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(state.connections):
            connection.shutdown()
        for _ in range(int((self.config.timeout_graceful_shutdown or 2) / 0.005)):
            if not (state.connections or state.tasks):
                break
            await asyncio.sleep(0.005)
        for task in list(state.tasks):
            task.cancel()
        await self.lifespan.shutdown()


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    # Bound to every interface: hand out a loopback URL (recording URLs must be fetchable).
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(app: ASGIApp, *, handle_signals: bool, on_shutdown: Callable[[], None] = lambda: None,
                log_level: str | None = None) -> _Server:
    # log_level None: embedded, leave the host's logging configuration alone.
    extra = {"log_level": log_level} if log_level else {"log_config": None}
    config = uvicorn.Config(app, lifespan="on", timeout_graceful_shutdown=2,
                            access_log=log_level in ("info", "debug"), **extra)
    return _Server(config, handle_signals=handle_signals, on_shutdown=on_shutdown)


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, host: str = "127.0.0.1", port: int = 0,
                  on_shutdown: Callable[[], None] = lambda: None) -> AsyncIterator[str]:
    """Serve `app` in a task of the running loop; yields its base URL; stops it cleanly on exit."""
    sock = bind_tcp(host, port, backlog=1024)
    url = url_of(sock)
    server = make_server(app, handle_signals=False, on_shutdown=on_shutdown)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():  # start-up failed (uvicorn raises SystemExit): surface it as an error
                reason = None if task.cancelled() else task.exception()
                raise RuntimeError(f"server stopped during start-up: {reason!r}")
            await asyncio.sleep(0.005)
        yield url
    finally:
        server.should_exit = True
        on_shutdown()
        try:
            await asyncio.shield(task)
        except (Exception, SystemExit):
            pass
        finally:
            sock.close()


@dataclass
class RunningSandbox:
    url: str
    config: SandboxConfig
    engine: Engine


@contextlib.asynccontextmanager
async def running_sandbox(config: SandboxConfig | None = None, host: str = "127.0.0.1",
                          port: int = 0) -> AsyncIterator[RunningSandbox]:
    """A sandbox on a loopback port (0 = a free one) for the duration of the block."""
    config = config or SandboxConfig()
    app = create_app(config)
    engine: Engine = app.state.engine
    async with serving(app, host, port, on_shutdown=engine.release_hangs) as url:
        engine.base_url = url
        try:
            yield RunningSandbox(url=url, config=config, engine=engine)
        finally:
            engine.release_hangs()
