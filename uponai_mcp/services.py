"""Builds the long-lived services once per server (in the lifespan) and tears them down.

A bad setting does not stop the server: it is kept as `config_error` and every tool that needs a
service reports it, so `tools/list` always works.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from uponai_mcp.api import UponAIClient
from uponai_mcp.config import SANDBOX_API_KEY, Settings
from uponai_mcp.dialer import Dialer
from uponai_mcp.directory import Directory
from uponai_mcp.errors import Refused
from uponai_mcp.pacing import Pacer
from uponai_mcp.store import Store

log = logging.getLogger(__name__)

CPS_SETTING = "cps"


@dataclass
class Services:
    settings: Settings
    api: UponAIClient
    store: Store
    pacer: Pacer
    directory: Directory
    dialer: Dialer
    sandbox_url: str | None = None
    wall: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    async def save_cps(self) -> None:
        await self.store.set_setting(CPS_SETTING, self.pacer.snapshot())


@dataclass
class ServiceHub:
    """What the lifespan yields: the services, or why they could not be built."""

    services: Services | None = None
    config_error: str | None = None

    def require(self) -> Services:
        if self.services is None:
            raise Refused("configuration_error", self.config_error or "The server is not configured.")
        return self.services


def _problems(settings: Settings) -> list[str]:
    problems = list(settings.errors)
    if not settings.sandbox and settings.dialect == "uponai":
        if settings.workspace_id is None:
            problems.append("UPONAI_WORKSPACE_ID is required with the uponai dialect (GET /api/workspaces lists yours)")
        if settings.account_sid is None:
            problems.append("UPONAI_ACCOUNT_SID is required with the uponai dialect to list phone numbers")
    return problems


@asynccontextmanager
async def build_services(
    settings: Settings, *, wall: Callable[[], datetime] | None = None, pacer: Pacer | None = None
) -> AsyncIterator[ServiceHub]:
    problems = _problems(settings)
    if problems:
        message = "; ".join(problems) + "."
        log.error("uponai-mcp is not configured: %s", message)
        yield ServiceHub(config_error=message)
        return
    async with AsyncExitStack() as stack:
        sandbox_url = None
        if settings.sandbox:
            from uponai_mcp.sandbox import SandboxConfig, running_sandbox
            from uponai_mcp.sandbox.seed import ACCOUNT_SID, WORKSPACE_ID

            sb = await stack.enter_async_context(
                running_sandbox(SandboxConfig(speed=settings.sandbox_speed, seed=settings.sandbox_seed))
            )
            sandbox_url = sb.url
            settings = settings.model_copy(update={
                "base_url": sb.url, "api_key": SANDBOX_API_KEY, "workspace_id": WORKSPACE_ID,
                "account_sid": ACCOUNT_SID,
            })
            print(f"uponai-mcp: no UPONAI_API_KEY (or UPONAI_SANDBOX=1): using the embedded sandbox at {sb.url}; "
                  "no real phone rings and nothing is spent.", file=sys.stderr)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db_path = settings.data_dir / ("sandbox.db" if settings.sandbox else "uponai.db")
        if settings.sandbox:
            # The embedded sandbox starts empty each run; a ledger of its previous calls would only
            # spend this run's budgets on calls that no longer exist.
            for suffix in ("", "-wal", "-shm"):
                db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
        store = await Store.open(db_path)
        stack.push_async_callback(store.close)
        api = await stack.enter_async_context(UponAIClient.from_settings(settings))
        pacer = pacer or Pacer()
        saved = await store.get_setting(CPS_SETTING)
        if saved:
            pacer.restore(saved)
        directory = Directory(api)
        wall = wall or (lambda: datetime.now(UTC))
        dialer = Dialer(settings, api, store, pacer, directory, wall=wall)
        services = Services(settings, api, store, pacer, directory, dialer, sandbox_url, wall)
        await dialer.reconcile_pending()
        yield ServiceHub(services=services)
