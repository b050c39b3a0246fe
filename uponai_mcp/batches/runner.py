"""The background batch runner: dials each batch's tasks through the dialer's pipeline, paced, in its window.

One driver coroutine per active batch, with up to WORKERS_PER_BATCH tasks in flight. A task's life:

  check  `Dialer.evaluate` again at dial time (the callee's calling window, budgets, the from-number may have
         changed since creation): outside the callee's window -> wait for it; hourly cap -> the batch holds for
         a minute; anything else -> the task is refused (its message goes to the audit log).
  ledger an attempt row, committed (source="batch:<id>", so budgets and reconciliation see batch calls like
         any other). Attempt ids are deterministic per task and try, `att_<batch>_<idx>_<n>`, so after a crash
         the ledger alone tells what happened to a task.
  gate   one task per CPS scope at a time waits until the scope's next pacer slot starts within half an
         emission interval (it peeks; it books nothing).
  claim  pending -> dialing in the batch table; this is where `cancel_batch` (pending -> cancelled, atomic)
         wins or loses: a claimed task is in flight and finishes, an unclaimed one is never dialled.
  dial   `Dialer.dial_attempt`: the same pipeline as a single call (the client's lookups, then a pacer slot
         booked and waited for right before the request leaves, mark dialing, create-call, record placed;
         429 -> penalize the scope + retry).

Fairness with single calls: the pacer books slots first come, first served, so a batch that booked its whole
backlog would make a single call wait for all of it. The runner instead lets a task near the dialer only when the
scope's next slot is due within T/2, one task at a time per scope, so the batch holds at most a slot or two of
the future schedule: a single call placed mid-batch is booked within a couple of intervals of asking, and the
batch takes every slot nobody else wants (throughput stays at the CPS).

Crash safety: a task is `pending` until claimed, and its attempt row exists before its request can leave. On start
(`recover`), a claimed task (dialing / unknown) is settled from the ledger: its latest attempt placed -> placed;
never sent (pending, or failed before dialing) -> dial again; sent but outcome unknown -> `Dialer.reconcile`
(find the call by its attempt tag, a few tries) -> placed if found, else dialled again. A call the platform
created but still does not list after those lookups is the one case that can ring twice; a platform without
idempotency keys leaves no better option (reliability.md §5).

Final statuses come from the event log (webhooks and the poller both write it): the runner tails it and writes
each batch call's final status onto its task.

Several replicas (PostgreSQL): a batch is driven under a lease (`store.leases`, "batch:<id>", LEASE_TTL_S),
renewed every LEASE_RENEW_S. Every replica looks for running batches nobody drives every TAKEOVER_SCAN_S and
takes over the ones whose lease expired (its owner died: kill -9, a lost machine), settling claimed tasks from
the ledger exactly as after a restart. A driver that cannot renew its lease before it expires stops dialling
at once (another replica may own the batch by then): fail closed.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import anyio

from uponai_mcp import guardrails
from uponai_mcp.errors import Refused
from uponai_mcp.models import CallRequest
from uponai_mcp.store import Attempt, BatchTask, InvalidTransition, NotFound, StoreError

from .window import CallTimeWindow

if TYPE_CHECKING:
    from uponai_mcp.dialer import Preflight

    from .service import BatchService, Live

log = logging.getLogger(__name__)

WORKERS_PER_BATCH = 4  # tasks in flight per batch: checks and ledger writes overlap the previous dial
HORIZON_FRACTION = 0.5  # reserve a pacer slot only when it starts within this many emission intervals
WALL_POLL_S = 0.5  # how often waits on the wall clock (schedule, windows) look at the clock again
HOURLY_HOLD_S = 60.0  # the batch pauses this long when the hourly budget is reached
TRANSIENT_RETRY_S = 15.0  # the platform or the store failed at dial time: try the task again after this
RECONCILE_GRACE_S = 10.0  # an outcome-unknown task is looked up again after this, before any redial
RECONCILE_TRIES = 3
RECONCILE_DELAY_S = 1.0
MAX_TRIES = 4  # attempts per task (a redial after a never-sent try, a 429 storm, or a call not found)
MAX_WAITS = 30  # times one task may wait for its callee's window before it is refused
TERMINAL_EVENTS = frozenset({"call_ended", "call_failed"})
TERMINAL_STATUSES = frozenset({"ended", "not_connected", "error"})
TAIL_INTERVAL_S = 1.0
TAIL_PAGE = 500
_TRANSIENT = frozenset({"upstream_error", "configuration_error", "rate_limited"})
LEASE_TTL_S = 15.0  # a dead replica's batches are taken over within LEASE_TTL_S + TAKEOVER_SCAN_S
LEASE_RENEW_S = 4.0
TAKEOVER_SCAN_S = 5.0


def attempt_id_for(batch_id: str, idx: int, n: int) -> str:
    return f"att_{batch_id.removeprefix('batch_')}_{idx}_{n}"


def task_of_attempt(attempt: Attempt) -> tuple[str, int] | None:
    """(batch_id, idx) of a batch attempt, from its source and deterministic id."""
    if not attempt.source.startswith("batch:"):
        return None
    parts = attempt.attempt_id.split("_")
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return attempt.source.removeprefix("batch:"), int(parts[2])


class _Cancelled(Exception):
    pass


@dataclass(order=True)
class _Item:
    due: datetime
    idx: int
    task: BatchTask = field(compare=False)
    state: str = field(compare=False)  # the task's state in the table: pending | dialing | unknown
    next_try: int = field(default=0, compare=False)
    waits: int = field(default=0, compare=False)


class BatchRunner:
    def __init__(self, service: BatchService) -> None:
        self.svc = service
        self.dialer = service.dialer
        self.store = service.store
        self.wall: Callable[[], datetime] = service.wall
        self._tg: anyio.abc.TaskGroup | None = None
        self._driving: set[str] = set()
        self._admission = anyio.Lock()  # check budgets + write the attempt, one task at a time
        self._gates: dict[str, anyio.Lock] = {}  # per CPS scope: one batch task at a time nears its slot
        self._leases = None  # several replicas (PostgreSQL): batches are driven under a lease
        if getattr(self.store, "dialect", "sqlite") == "postgresql":
            from uponai_mcp.store.leases import Leases

            self._leases = Leases(self.store)
        self.owner = f"runner-{uuid.uuid4().hex[:12]}"

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tail_from = await self._event_head()
            for batch in await self.store.batches_to_resume():
                self.start(batch.batch_id)
            tg.start_soon(self._tail_final_statuses, tail_from)
            if self._leases is not None:
                tg.start_soon(self._take_over)
            task_status.started()
            await anyio.sleep_forever()

    async def _take_over(self) -> None:
        """Several replicas: start every unfinished batch this replica does not drive; `_drive` takes it only
        when its lease is free (its owner finished, released, or died and let it expire)."""
        while True:
            await anyio.sleep(TAKEOVER_SCAN_S)
            try:
                for batch in await self.store.batches_to_resume():
                    self.start(batch.batch_id)
            except StoreError as exc:
                log.warning("looking for batches to take over failed: %s", exc)

    def start(self, batch_id: str) -> None:
        """Drive a batch (idempotent); it runs until every task is settled or it is cancelled."""
        if self._tg is None or batch_id in self._driving:
            return
        self._driving.add(batch_id)
        self._tg.start_soon(self._drive, batch_id)

    def _now_ms(self) -> int:
        return int(self.wall().timestamp() * 1000)

    # --- one batch ------------------------------------------------------------------------------

    async def _drive(self, batch_id: str) -> None:
        live = self.svc.live(batch_id)
        try:
            if self._leases is None:
                await self._drive_batch(batch_id, live)
            else:
                await self._drive_leased(batch_id, live)
        except Exception:
            log.exception("batch %s stopped on an unexpected error; it resumes at the next start", batch_id)
        finally:
            self._driving.discard(batch_id)
            self.svc.touch(batch_id)

    async def _drive_leased(self, batch_id: str, live: Live) -> None:
        name = f"batch:{batch_id}"
        ttl_ms = int(LEASE_TTL_S * 1000)
        if not await self._leases.acquire(name, self.owner, ttl_ms, now_ms=self._now_ms()):
            return  # another replica drives it
        log.info("batch %s: driven here (%s)", batch_id, self.owner)
        lost = False
        async with anyio.create_task_group() as tg:
            async def keep() -> None:
                nonlocal lost
                held_until = anyio.current_time() + LEASE_TTL_S
                while True:
                    await anyio.sleep(LEASE_RENEW_S)
                    try:
                        if await self._leases.acquire(name, self.owner, ttl_ms, now_ms=self._now_ms()):
                            held_until = anyio.current_time() + LEASE_TTL_S
                            batch = await self.store.get_batch(batch_id)  # cancelled on another replica?
                            if batch is not None and batch.status == "cancelled" and not live.cancelled:
                                live.cancelled = True
                                live.kick()
                            continue
                    except StoreError as exc:
                        log.warning("batch %s: lease not renewed: %s", batch_id, exc)
                        if anyio.current_time() + LEASE_RENEW_S < held_until:
                            continue  # still ours for a while: try again
                    lost = True  # another replica may own it now: stop dialling at once
                    log.warning("batch %s: lease lost; this replica stops driving it", batch_id)
                    tg.cancel_scope.cancel()
                    return

            tg.start_soon(keep)
            await self._drive_batch(batch_id, live)
            tg.cancel_scope.cancel()
        if not lost:
            try:
                await self._leases.release(name, self.owner)
            except StoreError:
                pass  # it expires by itself

    async def _drive_batch(self, batch_id: str, live: Live) -> None:
        batch = await self.store.get_batch(batch_id)
        if batch is None or batch.status not in ("pending", "running"):
            return
        window = CallTimeWindow.model_validate(batch.window) if batch.window else None
        start_at = None if batch.scheduled_at_ms is None else datetime.fromtimestamp(
            batch.scheduled_at_ms / 1000, self.wall().tzinfo)
        now = self.wall()
        ready: list[_Item] = [_Item(now, t.idx, t, t.state) for t in await self.store.batch_tasks(batch_id)
                              if t.state in ("pending", "dialing", "unknown")]
        heapq.heapify(ready)
        slots = anyio.Semaphore(WORKERS_PER_BATCH)
        started = batch.status == "running"
        async with anyio.create_task_group() as tg:
            while True:
                if live.cancelled:  # cancel_batch cancelled every pending task; claimed ones still settle
                    ready[:] = [i for i in ready if i.state != "pending"]  # in place: workers push to it
                    heapq.heapify(ready)
                if not ready and live.in_flight == 0:
                    break
                now = self.wall()
                hold = None
                if not live.cancelled:
                    if start_at is not None and now < start_at:
                        hold = start_at
                    elif window is not None and not window.is_open(now):
                        hold = window.next_open(now) or now + timedelta(minutes=5)
                    elif live.hold_until is not None and now < live.hold_until:
                        hold = live.hold_until
                if hold is not None or not ready or ready[0].due > now:
                    await live.sleep(hold or (ready[0].due if ready else None), self.wall, WALL_POLL_S)
                    continue
                if not started:
                    await self.store.set_batch_status(batch_id, "running", now_ms=self._now_ms())
                    started = True
                    self.svc.touch(batch_id)
                await slots.acquire()
                item = heapq.heappop(ready)
                live.in_flight += 1
                tg.start_soon(self._work, batch_id, item, live, slots, ready)
        if live.cancelled:
            return
        final = await self.store.get_batch(batch_id)
        if final is not None and final.status in ("pending", "running") and not any(
                final.counts.get(s) for s in ("pending", "dialing", "unknown")):
            if final.status == "pending":
                await self.store.set_batch_status(batch_id, "running", now_ms=self._now_ms())
            await self.store.set_batch_status(batch_id, "completed", now_ms=self._now_ms())
            await self.store.audit("create_batch_call", decision="completed", summary=f"batch {batch_id} completed",
                                   details={"batch_id": batch_id, "counts": final.counts}, now_ms=self._now_ms())

    async def _work(self, batch_id: str, item: _Item, live: Live, slots: anyio.Semaphore,
                    ready: list[_Item]) -> None:
        retry_at: datetime | None = None
        try:
            retry_at = await self._run_task(batch_id, item, live)
        except Exception:
            log.exception("batch %s task %d failed unexpectedly; it is settled from the ledger later",
                          batch_id, item.idx)
            retry_at = self.wall() + timedelta(seconds=TRANSIENT_RETRY_S)
        finally:
            live.in_flight -= 1
            slots.release()
            if retry_at is not None:
                item.due = retry_at
                heapq.heappush(ready, item)
            self.svc.touch(batch_id)

    async def _run_task(self, batch_id: str, item: _Item, live: Live) -> datetime | None:
        """Take one task as far as it goes now; returns when to look at it again (None: settled)."""
        request = CallRequest.model_validate_json(item.task.request_json)
        if item.state != "pending":  # claimed earlier: settle it from the ledger before any new dial
            if not await self._recover(batch_id, item, live):
                return None
        async with self._admission:
            try:
                pf = await self.dialer.evaluate(request)
                attempt_id = await self._new_attempt(batch_id, item, pf)
            except Refused as refusal:
                return await self._refused_at_dial(batch_id, item, refusal, live)
        scope = pf.from_number.kind.value
        try:
            async with self._gate(scope):
                await self._near_slot(scope, live, cancellable=item.state == "pending")
                if item.state == "pending":
                    try:
                        await self.store.mark_task(batch_id, item.idx, "dialing", attempt_id=attempt_id,
                                                   now_ms=self._now_ms())
                    except InvalidTransition:  # cancel_batch got there first
                        raise _Cancelled from None
                    item.state = "dialing"
        except _Cancelled:
            await self._drop_attempt(attempt_id, "the batch was cancelled before this task was dialled")
            return None
        self.svc.touch(batch_id)
        try:
            # The dialer takes the pacer slot right before the request leaves (after the client's lookups).
            placement = await self.dialer.dial_attempt(request, attempt_id, scope)
        except Refused as refusal:
            if refusal.code == "outcome_unknown":
                if item.state == "dialing":
                    await self._mark(batch_id, item.idx, "unknown", attempt_id=attempt_id)
                    item.state = "unknown"
                return self.wall() + timedelta(seconds=RECONCILE_GRACE_S)
            if refusal.code == "rate_limited" and item.next_try < MAX_TRIES:
                return self.wall()  # the platform kept answering 429: the attempt failed unsent, dial again
            await self._mark(batch_id, item.idx, "failed", refusal_code=refusal.code, attempt_id=attempt_id)
            return None
        await self._mark(batch_id, item.idx, "placed", attempt_id=attempt_id, call_id=placement.call.call_id)
        return None

    async def _refused_at_dial(self, batch_id: str, item: _Item, refusal: Refused, live: Live) -> datetime | None:
        details = refusal.details
        now = self.wall()
        if refusal.code == guardrails.OUTSIDE_CALLING_WINDOW and details.get("next_allowed_at") \
                and details.get("problem") == "outside_window" and item.waits < MAX_WAITS:
            item.waits += 1
            return max(datetime.fromisoformat(details["next_allowed_at"]), now + timedelta(seconds=1))
        if refusal.code == guardrails.BUDGET_EXCEEDED and set(details.get("exceeded") or ()) == {guardrails.PER_HOUR}:
            live.hold_until = now + timedelta(seconds=HOURLY_HOLD_S)
            return live.hold_until
        if refusal.code in _TRANSIENT and item.waits < MAX_WAITS:
            item.waits += 1
            return now + timedelta(seconds=TRANSIENT_RETRY_S)
        # Refused for good: pending -> refused; a claimed task can only fail.
        await self._mark(batch_id, item.idx, "refused" if item.state == "pending" else "failed",
                         refusal_code=refusal.code)
        await self.store.audit(
            "create_batch_call", decision="refused", code=refusal.code, summary=refusal.message,
            details={"batch_id": batch_id, "index": item.idx, "to_number": item.task.to_number},
            now_ms=self._now_ms())
        return None

    async def _new_attempt(self, batch_id: str, item: _Item, pf: Preflight) -> str:
        """Reserve the next try's attempt row (pending; budgets checked in the same transaction) and return
        its id. Raises the budget refusal."""
        while True:
            attempt_id = attempt_id_for(batch_id, item.idx, item.next_try)
            item.next_try += 1
            try:
                attempt = await self.dialer.reserve(attempt_id, pf, source=f"batch:{batch_id}")
            except Refused as refusal:
                if refusal.code == "idempotency_conflict":  # the id is taken by other parameters: the next one
                    continue
                raise
            if not attempt.replay:  # an earlier process wrote this try already: use the next one
                return attempt_id

    async def _drop_attempt(self, attempt_id: str, why: str) -> None:
        await self.store.mark_attempt(attempt_id, "failed", error_code="cancelled", error_message=why,
                                      now_ms=self._now_ms())

    def _gate(self, scope: str) -> anyio.Lock:
        gate = self._gates.get(scope)
        if gate is None:
            gate = self._gates[scope] = anyio.Lock()
        return gate

    async def _near_slot(self, scope: str, live: Live, *, cancellable: bool) -> None:
        """Wait (holding the scope's gate) until the scope's next pacer slot starts within HORIZON_FRACTION
        emission intervals, without booking it: the dialer books it right before the request leaves. So the
        batch never holds a queue of future slots that a single call would have to wait behind."""
        pacer = self.dialer.pacer
        while True:
            if cancellable and live.cancelled:
                raise _Cancelled
            state = pacer.get_state(scope)
            ahead = state.next_slot_in_s - state.spacing_s * HORIZON_FRACTION
            if ahead <= 0:
                return
            await pacer.clock.sleep(min(ahead + 0.001, WALL_POLL_S))

    async def _mark(self, batch_id: str, idx: int, state: str, **fields: object) -> None:
        try:
            await self.store.mark_task(batch_id, idx, state, now_ms=self._now_ms(), **fields)  # type: ignore[arg-type]
        except InvalidTransition as exc:
            log.warning("batch %s task %d: %s", batch_id, idx, exc)
        self.svc.touch(batch_id)

    # --- recovery -------------------------------------------------------------------------------

    async def _latest_attempt(self, batch_id: str, idx: int) -> tuple[int, Attempt | None]:
        latest, n = None, 0
        for n in itertools.count():
            attempt = await self.store.get_attempt(attempt_id_for(batch_id, idx, n))
            if attempt is None:
                break
            latest = attempt
        return n, latest

    async def _recover(self, batch_id: str, item: _Item, live: Live) -> bool:
        """Settle a claimed task from the ledger. True: it must be dialled (again); False: settled."""
        n, latest = await self._latest_attempt(batch_id, item.idx)
        item.next_try = max(item.next_try, n)
        if latest is not None and latest.state in ("dialing", "unknown", "pending"):
            if latest.state == "pending":  # written but never sent
                await self.store.mark_attempt(latest.attempt_id, "failed", error_code="upstream_error",
                                              error_message="interrupted before dialling", now_ms=self._now_ms())
            else:
                call = await self.dialer.reconcile(latest.attempt_id, tries=RECONCILE_TRIES,
                                                   delay_s=RECONCILE_DELAY_S)
                if call is not None:
                    await self._mark(batch_id, item.idx, "placed", attempt_id=latest.attempt_id, call_id=call.call_id)
                    return False
                await self.store.mark_attempt(
                    latest.attempt_id, "failed", error_code="outcome_unknown",
                    error_message="not found on the platform by its attempt tag; the task is dialled again",
                    now_ms=self._now_ms())
            latest = await self.store.get_attempt(latest.attempt_id)
        if latest is not None and latest.state == "placed":
            await self._mark(batch_id, item.idx, "placed", attempt_id=latest.attempt_id, call_id=latest.call_id)
            return False
        # Dial again only what provably never reached the platform, or was not found there.
        redial = latest is None or latest.dialed_at_ms is None or latest.error_code in (
            "rate_limited", "outcome_unknown")
        if redial and item.next_try < MAX_TRIES and not live.cancelled:
            return True
        code = "cancelled" if redial and live.cancelled else (
            (latest.error_code if latest is not None else None) or "upstream_error")
        await self._mark(batch_id, item.idx, "failed", refusal_code=code)
        return False

    # --- final statuses -------------------------------------------------------------------------

    async def _event_head(self) -> int:
        recent = await self.store.recent_events(1)
        return recent[0].seq if recent else 0

    async def _tail_final_statuses(self, cursor: int) -> None:
        """Write each batch call's final status onto its task, from the event log."""
        await self._settle_unknown_finals()
        while True:
            try:
                events = await self.store.events_since(cursor, TAIL_PAGE)
                for e in events:
                    cursor = max(cursor, e.seq)
                    status = e.call.get("call_status")
                    if e.event in TERMINAL_EVENTS and status in TERMINAL_STATUSES:
                        await self._final_status(e.call_id, str(status))
            except StoreError as exc:
                log.warning("reading call events for batch statuses failed: %s", exc)
                events = []
            if len(events) < TAIL_PAGE:
                await anyio.sleep(TAIL_INTERVAL_S)

    async def _final_status(self, call_id: str, status: str) -> None:
        attempt = await self.store.get_attempt_by_call(call_id)
        where = None if attempt is None else task_of_attempt(attempt)
        if where is None:
            return
        batch_id, idx = where
        try:
            await self.store.mark_task(batch_id, idx, "placed", attempt_id=attempt.attempt_id, call_id=call_id,
                                       final_status=status, now_ms=self._now_ms())
        except (InvalidTransition, NotFound) as exc:
            log.warning("batch %s task %d: call %s ended but the task cannot record it: %s", batch_id, idx,
                        call_id, exc)
            return
        self.svc.touch(batch_id)

    async def _settle_unknown_finals(self) -> None:
        """At start: calls of recent batches that ended while this server was down."""
        for batch in await self.store.list_batches(20):
            for t in await self.store.batch_tasks(batch.batch_id):
                if t.state == "placed" and t.call_id and not t.final_status:
                    record = await self.store.get_call_record(t.call_id)
                    if record is not None and record.terminal and record.status in TERMINAL_STATUSES:
                        await self._final_status(t.call_id, record.status)
