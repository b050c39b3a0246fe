"""Batch outreach: create (plan + confirm), follow, cancel and wait for batches; runs the background runner.

Nothing here knows MCP: `tools/batches.py` adapts it. Confirmation follows the single-call policy
(`settings.effective_confirm`) for the batch as a whole: `always`, `international` (any accepted task abroad of
the from-number), `never`. A batch awaiting a token is stored `paused` (the runner never starts paused batches) and
becomes `running` when `confirm` redeems the token; an unconfirmed batch is cancelled when its token expires.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import anyio

from uponai_mcp import guardrails, params
from uponai_mcp.config import Settings
from uponai_mcp.confirmations import Confirmations, Issued
from uponai_mcp.dialer import Dialer
from uponai_mcp.errors import Refused
from uponai_mcp.store import Batch, Store

from . import planning
from .planning import BatchPlan
from .runner import BatchRunner
from .views import DONE_STATES, AcceptedTask, BatchCreated, BatchView, RefusedTask, RetryView, batch_uri, iso
from .window import CallTimeWindow

log = logging.getLogger(__name__)

PLAN_CACHE_TTL_S = 120.0  # the confirmation question and the tool body share one plan
PLAN_CACHE_SIZE = 8
PUBLISH_INTERVAL_S = 0.25  # a batch's resource update is announced at most this often
PROGRESS_INTERVAL_S = 0.2
MAX_WAIT_S = 600.0
ACTIVE = ("pending", "running", "paused")


class Live:
    """A batch's in-memory state: the runner's wake-ups, cancellation, holds and change notifications."""

    def __init__(self) -> None:
        self.cancelled = False
        self.hold_until: datetime | None = None
        self.in_flight = 0
        self._wake = anyio.Event()
        self._changed = anyio.Event()

    def kick(self) -> None:
        self._wake.set()

    def changed_event(self) -> anyio.Event:
        """Set at the next change; take it before reading the store so no change is missed."""
        return self._changed

    def changed(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
        self.kick()

    async def sleep(self, until: datetime | None, wall: Callable[[], datetime], poll_s: float) -> None:
        """Until `until` on the wall clock (None: until kicked), waking early on a kick; looks at the wall
        clock at least every `poll_s` so an injected clock is followed."""
        timeout = poll_s if until is None else min(max((until - wall()).total_seconds(), 0.0), poll_s)
        event = self._wake
        with anyio.move_on_after(timeout):
            await event.wait()
        if event.is_set():
            self._wake = anyio.Event()


@dataclass
class _Cached:
    plan: BatchPlan
    at: float


@dataclass
class BatchService:
    settings: Settings
    dialer: Dialer
    store: Store
    wall: Callable[[], datetime]
    publish: Callable[[str], None] | None = None  # announce a changed resource URI (the events feed)
    _live: dict[str, Live] = field(default_factory=dict)
    _dirty: dict[str, None] = field(default_factory=dict)
    _dirty_event: anyio.Event = field(default_factory=anyio.Event)
    _plans: OrderedDict[str, _Cached] = field(default_factory=OrderedDict)
    runner: BatchRunner | None = None

    def _now_ms(self) -> int:
        return int(self.wall().timestamp() * 1000)

    @property
    def confirmations(self) -> Confirmations:
        return self.dialer.confirmations  # one token store for calls and batches

    def live(self, batch_id: str) -> Live:
        live = self._live.get(batch_id)
        if live is None:
            live = self._live[batch_id] = Live()
        return live

    def touch(self, batch_id: str) -> None:
        """Something about the batch changed: wake its waiters and driver, announce the resource soon."""
        self.live(batch_id).changed()
        self._dirty[batch_id] = None
        self._dirty_event.set()

    # --- lifecycle ------------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[BatchService]:
        """Run the batch runner (resuming unfinished batches) and the resource announcer."""
        await self._expire_confirmations()
        self.runner = BatchRunner(self)
        async with anyio.create_task_group() as tg:
            await tg.start(self.runner.run)
            tg.start_soon(self._announce)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def _announce(self) -> None:
        while True:
            await self._dirty_event.wait()
            self._dirty_event = anyio.Event()
            dirty, self._dirty = list(self._dirty), {}
            if self.publish is not None:
                for batch_id in dirty:
                    self.publish(batch_uri(batch_id))
            await anyio.sleep(PUBLISH_INTERVAL_S)

    # --- planning -------------------------------------------------------------------------------

    async def plan(self, *, from_number: str, tasks: Sequence[dict[str, Any]] | None, tasks_csv: str | None,
                   name: str | None, scheduled_at: str | None,
                   call_time_window: CallTimeWindow | None, consume: bool = False,
                   retry_policy: Any = None, from_numbers: Sequence[str] | None = None,
                   local_presence: bool = False) -> BatchPlan:
        """Parse and judge a batch. The confirmation question and the tool body share one plan: the question
        caches it briefly, the body (`consume=True`) takes it out, so a later identical request plans afresh.
        Raises Refused for malformed input or when the platform cannot be reached."""
        key = _args_key(from_number, tasks, tasks_csv, name, scheduled_at, call_time_window, retry_policy,
                        from_numbers, local_presence)
        cached = self._plans.pop(key, None) if consume else self._plans.get(key)
        if cached is not None and time.monotonic() - cached.at < PLAN_CACHE_TTL_S:
            return cached.plan
        specs = planning.task_specs(tasks, tasks_csv)
        if retry_policy is not None:  # every task's request carries it (outreach schedules the retries)
            from uponai_mcp.outreach.retry import with_retry

            specs = [(src, {**f, "metadata": with_retry(f.get("metadata"), retry_policy)}) for src, f in specs]
        when = planning.parse_schedule(scheduled_at, self.wall())
        plans = planning.build_requests(from_number, specs)
        pool = list(dict.fromkeys([from_number, *from_numbers])) if from_numbers else None
        if pool is not None:  # a caller-ID pool: each callee gets its (sticky) number before it is judged
            await self._assign_caller_ids(plans, pool, local_presence)
        await self._expire_confirmations()
        pending_elsewhere = sum(b.counts.get("pending", 0) for b in await self._active_batches())
        await planning.judge(self.dialer, plans, pending_elsewhere=pending_elsewhere)
        batch_name = (name or "").strip() or f"{len(plans)} calls from {from_number}"
        plan = BatchPlan(batch_name[:200], from_number, None, when, call_time_window, plans)
        plan.caller_pool = pool
        plan.counts_by_code.update(t.code for t in plan.refused if t.code)
        if plan.accepted:
            try:
                plan.scope = (await self.dialer.directory.number(from_number)).kind.value
            except Refused:
                plan.scope = None
        plan.needs_confirmation = self._needs_confirmation(plan)
        plan.fingerprint = planning.fingerprint(from_number, plan.name, when, call_time_window, plans)
        if not consume:
            self._plans[key] = _Cached(plan, time.monotonic())
            while len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        return plan

    async def _assign_caller_ids(self, plans: list[planning.TaskPlan], pool: list[str], local_presence: bool) -> None:
        from uponai_mcp.outreach import caller_id

        callees = {t.idx: guardrails.normalize_loose(t.request.to_number) or t.request.to_number for t in plans}
        sticky = await self.store.caller_ids(callees.values())
        for t in plans:
            chosen, why = caller_id.choose(callees[t.idx], pool, previous=sticky.get(callees[t.idx]),
                                           local_presence=local_presence)
            t.request = t.request.model_copy(update={"from_number": chosen})
            t.caller_id = f"{chosen} ({why})"

    def _needs_confirmation(self, plan: BatchPlan) -> bool:
        """The single-call policy, for the batch as a whole."""
        policy = self.settings.effective_confirm
        if policy == "never" or not plan.accepted:
            return False
        if policy == "always":
            return True
        origin = guardrails.check_destination(plan.from_number)
        home = None if isinstance(origin, guardrails.Refusal) else origin.region
        return any(t.region != home for t in plan.accepted)

    async def _active_batches(self) -> list[Batch]:
        out: list[Batch] = []
        for status in ACTIVE:
            out.extend(await self.store.list_batches(1000, status=status))
        return out

    # --- creating and confirming ----------------------------------------------------------------

    async def create(self, plan: BatchPlan, *, awaiting_confirmation: bool,
                     confirmed_by: str | None = None) -> tuple[Batch, Issued | None]:
        """Store the batch (refused tasks marked refused) and start it, or keep it paused for a token.
        Returns (batch, the token issued when awaiting confirmation)."""
        if not plan.accepted:
            raise Refused("invalid_argument", "No task of this batch can be called; nothing was created.")
        batch_id = "batch_" + uuid.uuid4().hex[:16]
        expires = self.wall() + self.confirmations.ttl if awaiting_confirmation else None
        confirm: dict[str, Any] = {"policy": self.settings.effective_confirm,
                                   "state": "awaiting" if awaiting_confirmation else (confirmed_by or "not_required")}
        if expires is not None:
            confirm["expires_at_ms"] = int(expires.timestamp() * 1000)
        batch = await self.store.create_batch(
            batch_id, name=plan.name, from_number=plan.from_number,
            tasks=[(t.e164 or t.request.to_number, params.canonical_json(t.request)) for t in plan.tasks],
            scheduled_at_ms=None if plan.scheduled_at is None else int(plan.scheduled_at.timestamp() * 1000),
            window=None if plan.window is None else plan.window.model_dump(mode="json"),
            confirm=confirm, status="paused" if awaiting_confirmation else "pending", now_ms=self._now_ms(),
        )
        if plan.caller_pool:  # sticky caller IDs: the next pool with this number gives the callee the same one
            await self.store.set_caller_ids(((t.e164, t.request.from_number) for t in plan.accepted if t.e164),
                                            now_ms=self._now_ms())
        # A crash before these marks land leaves those tasks pending; the runner's dial-time checks refuse
        # them again (guardrails and budgets count the ledger), so nothing the plan refused gets dialled.
        async with anyio.create_task_group() as tg:
            for t in plan.refused:
                tg.start_soon(self._mark_refused, batch_id, t.idx, t.code)
        await self.store.audit(
            "create_batch_call", decision="created", summary=plan.summary(),
            details={"batch_id": batch_id, "accepted": len(plan.accepted), "refused": len(plan.refused),
                     "confirmation": confirm["state"]}, now_ms=self._now_ms())
        issued = None
        if awaiting_confirmation:
            issued = await self.confirmations.issue("batch", params_hash=plan.fingerprint,
                                                    request_json=json.dumps({"batch_id": batch_id}),
                                                    summary=plan.summary())
            await self.store.audit("create_batch_call", decision="confirmation_issued", summary=plan.summary(),
                                   details={"batch_id": batch_id}, now_ms=self._now_ms())
        else:
            self._start(batch_id)
        batch = await self.store.get_batch(batch_id) or batch
        self.touch(batch_id)
        return batch, issued

    async def _mark_refused(self, batch_id: str, idx: int, code: str | None) -> None:
        await self.store.mark_task(batch_id, idx, "refused", refusal_code=code, now_ms=self._now_ms())

    def _start(self, batch_id: str) -> None:
        if self.runner is not None:
            self.runner.start(batch_id)

    async def record_declined(self, plan: BatchPlan) -> None:
        await self.store.audit("create_batch_call", decision="declined", code="declined",
                               summary=f"the person declined: {plan.summary()}", now_ms=self._now_ms())

    async def confirm(self, token: str) -> Batch:
        """Redeem a batch token once and start its batch."""
        try:
            conf = await self.confirmations.redeem("batch", token)
        except Refused as refusal:
            await self.store.audit("create_batch_call", decision="confirmation_rejected", code=refusal.code,
                                   summary=refusal.message, now_ms=self._now_ms())
            raise
        batch_id = _batch_of(conf.request_json)
        batch = None if batch_id is None else await self.store.get_batch(batch_id)
        if batch is None or batch.status != "paused":
            raise Refused("confirmation_invalid", "That token does not belong to a batch awaiting confirmation; "
                          "create the batch again.")
        batch = await self.store.set_batch_status(batch_id, "running", now_ms=self._now_ms())
        await self.store.audit("create_batch_call", decision="confirmed", summary=conf.summary,
                               details={"batch_id": batch_id}, now_ms=self._now_ms())
        self._start(batch_id)
        self.touch(batch_id)
        return batch

    async def _expire_confirmations(self) -> None:
        """Cancel paused batches whose confirmation token expired (they can never start)."""
        now = self._now_ms()
        for batch in await self.store.list_batches(1000, status="paused"):
            confirm = batch.confirm if isinstance(batch.confirm, dict) else {}
            if confirm.get("state") == "awaiting" and confirm.get("expires_at_ms", now + 1) <= now:
                await self.store.cancel_batch(batch.batch_id, now_ms=now)
                await self.store.audit("create_batch_call", decision="expired", code="confirmation_invalid",
                                       summary=f"batch {batch.batch_id} was never confirmed; cancelled",
                                       details={"batch_id": batch.batch_id}, now_ms=now)

    # --- reading, cancelling, waiting -----------------------------------------------------------

    async def require(self, batch_id: str) -> Batch:
        batch = await self.store.get_batch(batch_id)
        if batch is None:
            raise Refused("not_found", f"There is no batch {batch_id}; list_batches shows the batches.")
        return batch

    async def view(self, batch_id: str, *, with_tasks: bool = True, state: str | None = None, offset: int = 0,
                   limit: int | None = None) -> BatchView:
        await self._expire_confirmations()
        batch = await self.require(batch_id)
        if not with_tasks:
            return BatchView.of(batch, now=self.wall())
        tasks = await self.store.batch_tasks(batch_id)
        ended = sum(1 for t in tasks if t.final_status)
        if state is not None:
            tasks = [t for t in tasks if t.state == state]
        page = tasks[offset:] if limit is None else tasks[offset:offset + limit]
        retries: dict[int, list[RetryView]] = {}
        for r in await self.store.scheduled_of_batch(batch_id) if page else ():
            retries.setdefault(r.task_idx, []).append(RetryView(
                attempt=r.tries, state=r.state, scheduled_at=iso(r.due_at_ms), call_id=r.call_id, code=r.code))
        return BatchView.of(batch, now=self.wall(), tasks=page, offset=offset, ended=ended, retries=retries)

    async def list(self, *, status: str | None = None, limit: int = 20) -> list[BatchView]:
        await self._expire_confirmations()
        return [BatchView.of(b, now=self.wall()) for b in await self.store.list_batches(limit, status=status)]

    async def cancel(self, batch_id: str) -> tuple[Batch, int]:
        """Cancel every task not dialled yet (atomically); tasks in flight finish. Returns (batch, cancelled)."""
        batch = await self.require(batch_id)
        if batch.status in ("completed", "cancelled"):
            return batch, 0
        self.live(batch_id).cancelled = True
        cancelled = await self.store.cancel_batch(batch_id, now_ms=self._now_ms())
        cancelled += await self.store.cancel_scheduled_of_batch(batch_id, now_ms=self._now_ms())  # retries
        await self.store.audit("create_batch_call", decision="cancelled", summary=f"batch {batch_id}: "
                               f"{cancelled} task(s) cancelled before dialling", details={"batch_id": batch_id},
                               now_ms=self._now_ms())
        self.touch(batch_id)
        return await self.require(batch_id), cancelled

    async def wait(self, batch_id: str, timeout_s: float, *, until: Literal["dialled", "ended"] = "dialled",
                   report: Callable[[float, float, str], Awaitable[None]] | None = None) -> tuple[BatchView, bool]:
        """Wait until every task is dialled or settled (`until="ended"`: and every call ended), reporting
        progress as it moves. Returns (the batch, whether it got there before the timeout)."""
        deadline = anyio.current_time() + min(max(timeout_s, 0.0), MAX_WAIT_S)
        last = -1
        while True:
            changed = self.live(batch_id).changed_event()
            view = await self.view(batch_id, with_tasks=until == "ended", limit=0)
            done, finished = _progress(view, until)
            # Every task settled, but the runner marks the batch completed a moment later: wait for that too.
            finished = finished and view.status in ("completed", "cancelled")
            if done > last and report is not None:
                await report(done, view.total, f"{view.dialled} of {view.total} dialled, "
                             f"{view.counts.get('refused', 0)} refused, {view.counts.get('failed', 0)} failed"
                             + (f", {view.ended} ended" if view.ended is not None else ""))
            last = max(last, done)
            remaining = deadline - anyio.current_time()
            if finished or remaining <= 0:
                return view, finished
            with anyio.move_on_after(remaining):
                await changed.wait()
                await anyio.sleep(PROGRESS_INTERVAL_S)  # let a burst of changes land together

    def created_answer(self, plan: BatchPlan, batch: Batch | None, status: str) -> BatchCreated:
        return BatchCreated(
            batch_id=None if batch is None else batch.batch_id, status=status, summary=plan.summary(),
            accepted=[AcceptedTask(index=t.idx, source=t.source, to_number=t.request.to_number, region=t.region,
                                   note=t.note, caller_id=t.caller_id) for t in plan.accepted],
            refused=[RefusedTask(index=t.idx, source=t.source, to_number=t.request.to_number, code=t.code or "",
                                 message=t.message or "") for t in plan.refused],
            resource_uri=None if batch is None else batch_uri(batch.batch_id),
        )


def _progress(view: BatchView, until: str) -> tuple[int, bool]:
    """(tasks done, all done): settled tasks; with until="ended" a placed task counts once its call ended."""
    settled = sum(view.counts.get(s, 0) for s in DONE_STATES)
    done = settled - view.counts.get("placed", 0) + (view.ended or 0) if until == "ended" else settled
    return done, done >= view.total


def _batch_of(request_json: str) -> str | None:
    try:
        value = json.loads(request_json)
    except ValueError:
        return None
    return value.get("batch_id") if isinstance(value, dict) else None


def _args_key(*args: Any) -> str:
    def default(v: Any) -> Any:
        return v.model_dump(mode="json") if hasattr(v, "model_dump") else str(v)

    return hashlib.sha256(json.dumps(args, sort_keys=True, default=default).encode()).hexdigest()

