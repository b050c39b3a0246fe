"""Builds the long-lived services once per server (in the lifespan) and tears them down.

A bad setting does not stop the server: it is kept as the hub's `failure` and every tool that needs a
service reports it, so `tools/list` always works.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio

from uponai_mcp import guardrails
from uponai_mcp.api import UponAIClient
from uponai_mcp.batches import BatchService
from uponai_mcp.call_reader import CallReader
from uponai_mcp.config import SANDBOX_API_KEY, Settings
from uponai_mcp.dialer import Dialer
from uponai_mcp.directory import Directory
from uponai_mcp.errors import Refused
from uponai_mcp.evals.service import EvalService
from uponai_mcp.events.feed import Feed
from uponai_mcp.events.ingest import Ingest
from uponai_mcp.events.poller import Poller
from uponai_mcp.hub import ServiceHub
from uponai_mcp.models import BindingUpdate, PhoneNumber
from uponai_mcp.outreach import OutreachService
from uponai_mcp.pacing import CpsError, Pacer, ScopeState
from uponai_mcp.store import Store

log = logging.getLogger(__name__)

CPS_SETTING = "cps"
PACING_MARGIN = 0.05


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
    feed: Feed = field(default_factory=Feed)  # resource-change fan-out (both MCP eras) and call waiters
    ingest: Ingest = None  # type: ignore[assignment]  # store -> feed; built from store + feed when omitted
    webhook_url: str | None = None  # where the standalone receiver listens (None: no listener)
    poller: Poller | None = None
    batches: BatchService | None = None  # batch outreach; its runner runs for the server's lifetime
    evals: EvalService | None = None  # agent evaluations (run_eval); background runs live as long as the server
    outreach: OutreachService | None = None  # do-not-call, opt-outs, spend, scheduled calls and retries
    calls: CallReader = None  # type: ignore[assignment]  # reading and waiting for calls

    def __post_init__(self) -> None:
        if self.ingest is None:
            self.ingest = Ingest(self.store, self.feed)
        if self.calls is None:
            self.calls = CallReader(self.store, self.api, self.ingest, self.feed)

    def _now_ms(self) -> int:
        return int(self.wall().timestamp() * 1000)

    async def save_cps(self) -> None:
        await self.store.set_setting(CPS_SETTING, self.pacer.snapshot())
        await self.pacer.sync()  # on PostgreSQL: the change paces every replica from their next booking

    async def set_cps(self, provider: str, cps: int) -> ScopeState:
        """Configure a scope's CPS within the provider's maximum, persist it, and audit the change."""
        limit = (await self.api.get_concurrency()).concurrency_limit if provider == "custom" else None
        try:
            state = self.pacer.set_cps(provider, cps, concurrency_limit=limit)
        except CpsError as exc:
            code = "cps_above_provider_max" if exc.code == "cps_above_provider_max" else "invalid_argument"
            raise Refused(code, str(exc)) from exc
        await self.save_cps()
        await self.store.audit("set_cps", decision="changed", code=None, summary=f"{provider} CPS set to {cps:g}",
                               details={"provider": provider, "cps": cps}, now_ms=self._now_ms())
        return state

    async def bind(self, phone_number: str, update: BindingUpdate) -> tuple[PhoneNumber, PhoneNumber]:
        """Change a number's agent bindings and audit it; returns the number before and after."""
        before, after = await self.directory.bind(phone_number, update)
        await self.store.audit("bind_agent", decision="changed", code=None, summary=f"bindings of {phone_number} "
                               "changed", details=update.model_dump(mode="json", exclude_none=True),
                               now_ms=self._now_ms())
        return before, after

    def event_source(self) -> dict[str, object]:
        """How call events reach this server (for the policy resource and logs)."""
        poller = None
        if self.poller is not None:
            flowing = self.webhook_url is not None or self.ingest.webhooks_flowing()
            poller = "safety net (every 30 s)" if flowing else "primary"
        return {"webhook_receiver": self.webhook_url, "poller": poller}


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
    settings: Settings, *, wall: Callable[[], datetime] | None = None, pacer: Pacer | None = None,
    feed: Feed | None = None,
) -> AsyncIterator[ServiceHub]:
    problems = _problems(settings)
    if problems:
        message = "; ".join(problems) + "."
        log.error("uponai-mcp is not configured: %s", message)
        yield ServiceHub(failure=Refused("configuration_error", message))
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
        store = await Store.open(settings.database_url or db_path)  # PostgreSQL when UPONAI_DATABASE_URL is set
        stack.push_async_callback(store.close)
        api = await stack.enter_async_context(UponAIClient.from_settings(settings))
        wall = wall or (lambda: datetime.now(UTC))
        # 5 % spacing margin: N+1 calls span >= 1.05 s, so ~50 ms of network jitter (a cold connection,
        # a slow hop) still cannot put N+1 arrivals in one platform second.
        if pacer is None and store.dialect == "postgresql":  # one schedule for every replica
            from uponai_mcp.pacing import SharedPacer
            from uponai_mcp.store.pacer_state import PacerState

            pacer = SharedPacer(PacerState(store), wall=lambda: wall().timestamp(), margin=PACING_MARGIN)
        pacer = pacer or Pacer(wall=lambda: wall().timestamp(), margin=PACING_MARGIN)
        saved = await store.get_setting(CPS_SETTING)
        for problem in pacer.restore(saved) if saved else ():
            log.warning("saved CPS setting not restored: %s", problem)
        directory = Directory(api)
        feed = await stack.enter_async_context((feed or Feed()).running())
        if settings.database_url:  # several replicas: a change on any of them reaches every replica's subscribers
            from uponai_mcp.events.relay import PgRelay

            await stack.enter_async_context(PgRelay(settings.database_url, feed).running())
        ingest = Ingest(store, feed)
        dialer = Dialer(settings, api, store, pacer, directory, wall=wall, on_call=ingest.call_placed)
        services = Services(settings, api, store, pacer, directory, dialer, sandbox_url, wall, feed=feed,
                            ingest=ingest)
        await start_call_events(stack, services)
        warm_up_in_background()
        await dialer.reconcile_pending()
        if store.dialect == "postgresql":  # a replica can die without restarting: settle its orphans now and then
            orphans = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(orphans.cancel_scope.cancel)
            orphans.start_soon(settle_orphans, dialer)
            if hasattr(pacer, "follow"):  # get_cps here shows a set_cps made on another replica
                orphans.start_soon(pacer.follow)
        # After reconcile_pending: the runner resumes unfinished batches from the settled ledger.
        services.batches = await stack.enter_async_context(
            BatchService(settings, dialer, store, wall, publish=feed.resource_changed).running())
        services.outreach = (await stack.enter_async_context(OutreachService(
            settings, store, dialer, wall=wall, publish=feed.resource_changed).running())).attach(
            ingest, services.batches, services.calls)
        services.evals = await stack.enter_async_context(
            EvalService(settings, dialer, store, feed=feed, wall=wall, publish=feed.resource_changed).running())
        yield ServiceHub(services=services)


async def settle_orphans(dialer: Dialer, every_s: float = 60.0) -> None:
    """Several replicas: the open attempts of a replica that died are settled by the others (see
    `Dialer.reconcile_pending`), so they stop counting against budgets without anyone restarting."""
    while True:
        await anyio.sleep(every_s)
        try:
            await dialer.reconcile_pending()
        except Exception as exc:  # the next round tries again
            log.warning("settling other replicas' orphaned attempts failed: %s", exc)


_warm_up_started = False
WARM_UP_DELAY_S = 1.0


def warm_up_in_background() -> None:
    """Load phonenumbers' geodata (~19 MB of modules; seconds without a bytecode cache) in a daemon thread,
    once per process, so the server answers initialize and tools/list without waiting for it (bench/startup.py).
    It starts WARM_UP_DELAY_S after the services are up: a thread that imports holds the GIL half the time, and
    the host's handshake (initialize, tools/list) comes first. A destination check before that imports the
    data itself (or waits for the thread's import)."""
    global _warm_up_started
    if not _warm_up_started:
        _warm_up_started = True
        timer = threading.Timer(WARM_UP_DELAY_S, guardrails.warm_up)
        timer.name, timer.daemon = "uponai-mcp-warm-up", True
        timer.start()


async def start_call_events(stack: AsyncExitStack, services: Services) -> None:
    """Start the webhook receiver (where it can listen) and the poller; both stop with `stack`.

    Listener: UPONAI_WEBHOOK_LISTEN when set; in sandbox mode always (a free loopback port when unset), with
    the embedded sandbox pointed at it. Poller: the primary source without a listener; a 30 s safety net
    for lost webhooks with one.
    """
    from uponai_mcp.events import receiver

    settings = services.settings
    listen = settings.webhook_listen or ("127.0.0.1:0" if settings.sandbox else None)
    if listen:
        app = receiver.app(services.ingest, settings.effective_webhook_key)
        try:
            base = await stack.enter_async_context(receiver.serving(app, listen))
        except (OSError, ValueError) as exc:
            log.error("webhook receiver cannot listen on %s (%s); following calls by polling instead", listen, exc)
        else:
            services.webhook_url = base + receiver.WEBHOOK_PATH
            log.info("webhook receiver listening on %s", services.webhook_url)
    if settings.sandbox and services.sandbox_url and services.webhook_url:
        import httpx

        async with httpx.AsyncClient(base_url=services.sandbox_url, trust_env=False, timeout=5,
                                     headers={"Authorization": f"Bearer {settings.effective_api_key}"}) as http:
            (await http.post("/_sandbox/config", json={"webhook_url": services.webhook_url})).raise_for_status()
    services.poller = (Poller(services.api, services.ingest) if services.webhook_url is None
                       else Poller.safety_net(services.api, services.ingest))
    tg = await stack.enter_async_context(anyio.create_task_group())
    stack.callback(tg.cancel_scope.cancel)
    tg.start_soon(services.poller.run)
