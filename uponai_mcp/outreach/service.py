"""The outreach service: do-not-call list, opt-out detection, spend, scheduled calls and retries.

Opt-outs and retries hang off the one ingest path (`Ingest.on_ended`): whichever way an ended call arrives
(webhook, poller, a read), its cost is written onto its attempt, its transcript is checked for an opt-out, and a
retry is scheduled when its outcome and policy say so. Scheduled calls (and retries) are rows in the store; a
loop dials each when due through `Dialer.place` with an idempotency key of its own, so every check runs again at
dial time and a restart (even after kill -9) dials each once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import anyio

from uponai_mcp import guardrails, params
from uponai_mcp.config import Settings
from uponai_mcp.dialer import Dialer, Prepared
from uponai_mcp.errors import Refused
from uponai_mcp.guardrails import optout
from uponai_mcp.guardrails.spend import MILLICENTS, spend_cents
from uponai_mcp.models import CallRequest
from uponai_mcp.store import Store
from uponai_mcp.store.outreach import Cancelled, ScheduledCall

from .retry import policy_of
from .views import (
    DNC_URI,
    SCHEDULED_URI,
    SPEND_URI,
    DncChange,
    DncList,
    DncView,
    ScheduledView,
    SpendLine,
    SpendView,
    iso,
)

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often the scheduler looks at the clock (an injected clock is followed)
DIAL_CONCURRENCY = 4  # scheduled calls dialled at once (each still waits for its pacer slot)
MAX_SCHEDULE_AHEAD = timedelta(days=90)
MAX_IMPORT_ROWS = 100_000
HOURLY_HOLD = timedelta(minutes=1)


def outcome_of(call: dict[str, Any]) -> str:
    """answered, voicemail, busy, no_answer, invalid_destination or failed."""
    reason = str(call.get("disconnection_reason") or "")
    analysis = call.get("call_analysis") or {}
    if call.get("call_status") == "ended":
        in_voicemail = isinstance(analysis, dict) and analysis.get("in_voicemail") is True
        return "voicemail" if reason == "voicemail_reached" or in_voicemail else "answered"
    return {"dial_busy": "busy", "dial_no_answer": "no_answer",
            "invalid_destination": "invalid_destination"}.get(reason, "failed")


def _cost_mc(call: dict[str, Any]) -> int | None:
    cost = call.get("call_cost") or {}
    value = cost.get("combined_cost") if isinstance(cost, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(value * MILLICENTS)
    return 0 if call.get("call_status") in ("not_connected", "error") else None


class OutreachService:
    def __init__(self, settings: Settings, store: Store, dialer: Dialer, *, wall: Callable[[], datetime],
                 publish: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.dialer = dialer
        self.wall = wall
        self.publish = publish
        self.phrases = optout.Phrases.build(settings.opt_out_phrases)
        self.batches: Any = None  # BatchService, when running: cancelled tasks wake its batches
        self.ingest: Any = None  # Ingest: the opt-out event goes through the one ingest path
        self._wake = anyio.Event()
        self._busy: set[str] = set()

    def _now_ms(self) -> int:
        return int(self.wall().timestamp() * 1000)

    def _changed(self, *uris: str) -> None:
        if self.publish is not None:
            for uri in uris:
                self.publish(uri)

    async def _audit(self, decision: str, summary: str, *, code: str | None = None, **details: Any) -> None:
        await self.store.audit("do_not_call" if decision != "retry" else "retry", decision=decision, code=code,
                               summary=summary, details=details, now_ms=self._now_ms())

    # --- do-not-call ----------------------------------------------------------------------------

    @staticmethod
    def e164(number: str, default_region: str | None = None) -> str:
        found = guardrails.normalize_loose(number, default_region)
        if found is None:
            raise Refused("invalid_number", f"{number[:40]!r} is not a phone number; write it in E.164, e.g. "
                          "+14155552671.", field="phone_number")
        return found

    async def _after_cancel(self, cancelled: Cancelled) -> int:
        if self.batches is not None:
            for batch_id in {b for b, _ in cancelled.batch_tasks}:
                self.batches.touch(batch_id)
        if cancelled.scheduled:
            self._changed(SCHEDULED_URI)
        return len(cancelled.batch_tasks) + len(cancelled.scheduled)

    async def add(self, number: str, reason: str, *, added_by: str = "assistant") -> DncChange:
        e164 = self.e164(number)
        entry, created, cancelled = await self.store.add_do_not_call(
            e164, reason=reason.strip() or "no reason given", source="manual", added_by=added_by,
            now_ms=self._now_ms())
        n = await self._after_cancel(cancelled)
        if created:
            await self._audit("added", f"{e164} added to the do-not-call list: {entry.reason}", e164=e164,
                              source="manual", cancelled=n)
            self._changed(DNC_URI)
        return DncChange(entry=DncView.of(entry), changed=created, cancelled_tasks=n)

    async def remove(self, number: str) -> DncChange:
        e164 = self.e164(number)
        entry = await self.store.remove_do_not_call(e164)
        if entry is None:
            return DncChange(entry=None, changed=False)
        await self._audit("removed", f"{e164} removed from the do-not-call list (was: {entry.reason})", e164=e164,
                          source=entry.source, call_id=entry.call_id)
        self._changed(DNC_URI)
        return DncChange(entry=DncView.of(entry), changed=True)

    async def list(self, *, limit: int = 100, offset: int = 0, source: str | None = None,
                   as_csv: bool = False) -> DncList:
        if as_csv:
            entries, total = await self.store.list_do_not_call(limit=10_000_000, source=source)
            return DncList(entries=[], total=total, csv=export_csv(entries))
        entries, total = await self.store.list_do_not_call(limit=limit, offset=offset, source=source)
        return DncList(entries=[DncView.of(e) for e in entries], total=total)

    async def import_csv(self, text: str, *, reason: str, default_region: str | None) -> DncChange:
        rows, invalid = parse_dnc_csv(text, reason=reason, default_region=default_region)
        if len(rows) > MAX_IMPORT_ROWS:
            raise Refused("invalid_argument", f"At most {MAX_IMPORT_ROWS:,} rows per import; split the file.")
        first: dict[str, str] = {}
        for e164, why in rows:  # a number listed twice keeps its first row's reason
            first.setdefault(e164, why)
        unique = list(first.items())
        added, cancelled = await self.store.add_do_not_call_many(unique, source="csv", added_by="csv_import",
                                                                 now_ms=self._now_ms())
        n = await self._after_cancel(cancelled)
        await self._audit("imported", f"{added} number(s) added to the do-not-call list from CSV "
                          f"({len(unique) - added} already listed, {len(invalid)} invalid rows)", added=added,
                          cancelled=n)
        if added:
            self._changed(DNC_URI)
        return DncChange(changed=added > 0, added=added, already_listed=len(unique) - added, invalid=invalid[:20],
                         cancelled_tasks=n)

    # --- ended calls: cost, opt-out, retry ------------------------------------------------------

    async def call_ended(self, call: dict[str, Any]) -> None:
        """The ingest hook, for every change of a terminal call."""
        call_id = str(call.get("call_id") or "")
        if not call_id or call_id.startswith("attempt:"):
            return
        cost = _cost_mc(call)
        if await self.store.record_call_cost(call_id, cost_mc=cost, agent_id=call.get("agent_id")):
            self._changed(SPEND_URI)
        opted = await self._opt_out(call) if self.settings.opt_out_detection else False
        if not opted:
            await self._maybe_retry(call)

    async def _opt_out(self, call: dict[str, Any]) -> bool:
        found = optout.detect(call, self.phrases)
        if found is None:
            return False
        e164 = guardrails.normalize_loose(str(found.to_number or ""))
        if e164 is None:
            return False
        entry, created, cancelled = await self.store.add_do_not_call(
            e164, reason=f"opt-out in call {found.call_id}", source="opt_out", added_by=f"opt_out:{found.evidence}",
            call_id=found.call_id, now_ms=self._now_ms())
        n = await self._after_cancel(cancelled)
        if created:
            await self._audit("opt_out", f"{e164} asked not to be called again in call {found.call_id}; added to the "
                              f"do-not-call list, {n} pending call(s) to it cancelled", e164=e164,
                              call_id=found.call_id, evidence=found.evidence, phrase=found.phrase, cancelled=n)
            if self.ingest is not None:
                await self.ingest.event({"event": "opt_out", "call": call}, source="outreach")
            self._changed(DNC_URI)
        return True

    async def _maybe_retry(self, call: dict[str, Any]) -> None:
        """Schedule the next attempt when the call's request carries a retry policy (metadata RETRY_KEY) and its
        outcome is one to retry. One retry per call (its id names the schedule)."""
        attempt = await self.store.get_attempt_by_call(str(call["call_id"]))
        if attempt is None:
            return
        policy = policy_of(attempt.request_json)
        if policy is None:
            return
        batch_id: str | None = None
        idx: int | None = None
        tries = 1
        if attempt.source.startswith("batch:"):
            from uponai_mcp.batches.runner import task_of_attempt

            where = task_of_attempt(attempt)
            if where is not None:
                batch_id, idx = where
        elif attempt.source.startswith("scheduled:"):
            row = await self.store.get_scheduled(attempt.source.removeprefix("scheduled:"))
            if row is not None:
                tries, batch_id, idx = row.tries, row.batch_id, row.task_idx
        outcome = outcome_of(call)
        if outcome not in policy.on or tries >= policy.max_attempts:
            return
        if await self.store.get_do_not_call(attempt.to_number) is not None:
            return
        schedule_id = "retry_" + hashlib.sha256(str(call["call_id"]).encode()).hexdigest()[:20]
        if await self.store.get_scheduled(schedule_id) is not None:
            return
        due = self.wall() + timedelta(minutes=policy.delay_minutes)
        row = await self.store.create_scheduled(
            schedule_id, to_number=attempt.to_number, from_number=attempt.from_number,
            request_json=attempt.request_json, idempotency_key=f"key_{schedule_id}",
            due_at_ms=int(due.timestamp() * 1000), tries=tries + 1, batch_id=batch_id, task_idx=idx,
            retry_of=str(call["call_id"]), now_ms=self._now_ms())
        await self._audit("retry", f"call {call['call_id']} to {attempt.to_number} ended {outcome}: attempt "
                          f"{tries + 1} of {policy.max_attempts} at {iso(row.due_at_ms)}", schedule_id=schedule_id,
                          call_id=call["call_id"], outcome=outcome, batch_id=batch_id)
        if batch_id is not None and self.batches is not None:
            self.batches.touch(batch_id)
        self._changed(SCHEDULED_URI)
        self.kick()

    # --- spend ----------------------------------------------------------------------------------

    async def spend(self) -> SpendView:
        now = self.wall()
        rows = await self.store.spend_breakdown(now_ms=self._now_ms())
        est = self.settings.spend_estimate_cents

        def line(key: tuple[str | None, str | None], group: list[Any]) -> SpendLine:
            reported = sum(r.reported_mc for r in group)
            flying = sum(r.in_flight for r in group)
            return SpendLine(from_number=key[0], agent_id=key[1], calls=sum(r.calls for r in group),
                             reported_cents=round(reported / MILLICENTS, 4), in_flight=flying,
                             spend_cents=round(spend_cents(reported, flying, est), 4))

        by_number: dict[tuple[str | None, str | None], list[Any]] = {}
        by_agent: dict[tuple[str | None, str | None], list[Any]] = {}
        for r in rows:
            by_number.setdefault((r.from_number, None), []).append(r)
            by_agent.setdefault((None, r.agent_id), []).append(r)
        reported = sum(r.reported_mc for r in rows)
        flying = sum(r.in_flight for r in rows)
        total = spend_cents(reported, flying, est)
        cap = self.settings.max_spend_per_day_cents
        return SpendView(
            day=guardrails.day_start(now).date().isoformat(), cap_cents=cap, estimate_cents=est,
            spend_cents=round(total, 4), reported_cents=round(reported / MILLICENTS, 4), in_flight=flying,
            remaining_cents=None if cap is None else round(cap - total, 4),
            by_number=[line(k, g) for k, g in by_number.items()], by_agent=[line(k, g) for k, g in by_agent.items()])

    # --- scheduled calls ------------------------------------------------------------------------

    def parse_when(self, scheduled_at: str) -> datetime:
        try:
            when = datetime.fromisoformat(scheduled_at.strip())
        except ValueError as exc:
            raise Refused("invalid_argument", f"scheduled_at {scheduled_at[:40]!r} is not an ISO 8601 time such as "
                          "2026-11-23T09:00:00-05:00.", field="scheduled_at") from exc
        if when.tzinfo is None or when.utcoffset() is None:
            raise Refused("invalid_argument", "scheduled_at needs a UTC offset or Z, e.g. 2026-11-23T09:00:00-05:00.",
                          field="scheduled_at")
        now = self.wall()
        if when <= now:
            raise Refused("invalid_argument", "scheduled_at is in the past; leave it out to call now.",
                          field="scheduled_at")
        if when - now > MAX_SCHEDULE_AHEAD:
            raise Refused("invalid_argument", f"scheduled_at is more than {MAX_SCHEDULE_AHEAD.days} days ahead.",
                          field="scheduled_at")
        return when

    async def schedule_call(self, request: CallRequest, scheduled_at: str, *, idempotency_key: str | None,
                            token: str | None, confirmed: bool, prepared: Prepared | None) -> ScheduledView:
        """create_phone_call with scheduled_at: every check now (the calling window at the scheduled time), the
        confirmation now (elicitation, or a `schedule` token for create_phone_call), then stored for the
        scheduler, which checks again at dial time."""
        when = self.parse_when(scheduled_at)
        if idempotency_key is not None:  # the key names the schedule: a repeat returns it, asking nothing again
            existing = await self.store.get_scheduled(_schedule_id(idempotency_key))
            if existing is not None:
                if existing.request_json != _request_json(request) or existing.due_at_ms != _ms(when):
                    raise Refused("idempotency_conflict", f"Idempotency key {idempotency_key!r} was already used "
                                  "with different parameters; use a new key for a new call.")
                return scheduled_view(existing)
        if prepared is None or prepared.decision is None or prepared.params_hash != params.params_hash(request):
            prepared = await self.dialer.prepare(request, idempotency_key, at=when)
        assert prepared.decision is not None
        bound = f"{prepared.params_hash}@{_ms(when)}@{idempotency_key or ''}"
        if token:
            await self.dialer.confirmations.redeem("schedule", token, params_hash=bound)
            confirmed = True
        if prepared.decision.needs_confirmation and not confirmed:
            summary = f"{prepared.decision.summary}, at {iso(_ms(when))}"
            issued = await self.dialer.confirmations.issue(
                "schedule", params_hash=bound, request_json=params.canonical_json(request), summary=summary,
                idempotency_key=idempotency_key)
            raise Refused("confirmation_required", f"{summary}. Show this to the user; if they approve, call "
                          f"create_phone_call again with the same arguments and confirmation_token {issued.token} "
                          f"(single use, expires {issued.expires_at.strftime('%H:%M:%S')} UTC).", **issued.details())
        return await self.schedule(prepared, when)

    async def schedule(self, prepared: Prepared, when: datetime) -> ScheduledView:
        """Store a checked (and, where the policy wants it, confirmed) call to dial at `when`. The idempotency key
        names the schedule: the same request and key again returns the same scheduled call."""
        pf = prepared.decision
        assert pf is not None
        key = prepared.idempotency_key
        schedule_id = _schedule_id(key) if key else "sch_" + uuid.uuid4().hex[:20]
        existing = await self.store.get_scheduled(schedule_id)
        if existing is not None:
            if existing.request_json != _request_json(prepared.request) or existing.due_at_ms != _ms(when):
                raise Refused("idempotency_conflict", f"Idempotency key {key!r} was already used with different "
                              "parameters; use a new key for a new call.")
            return scheduled_view(existing)
        row = await self.store.create_scheduled(
            schedule_id, to_number=pf.destination.e164, from_number=prepared.request.from_number,
            request_json=_request_json(prepared.request), idempotency_key=f"key_{schedule_id}", due_at_ms=_ms(when),
            now_ms=self._now_ms())
        await self._audit("scheduled", f"{pf.summary}, scheduled for {iso(row.due_at_ms)}", schedule_id=schedule_id,
                          to_number=pf.destination.e164)
        self._changed(SCHEDULED_URI)
        self.kick()
        return scheduled_view(row)

    async def list_scheduled(self, *, state: str | None = None, limit: int = 50) -> list[ScheduledView]:
        rows = await self.store.list_scheduled(states=(state,) if state else (), limit=limit)
        return [scheduled_view(r) for r in rows]

    async def cancel_scheduled(self, schedule_id: str) -> ScheduledView:
        row = await self.store.get_scheduled(schedule_id)
        if row is None:
            raise Refused("not_found", f"There is no scheduled call {schedule_id}; list_scheduled_calls shows them.")
        done = await self.store.mark_scheduled(schedule_id, "cancelled", code="cancelled", expect="scheduled",
                                               now_ms=self._now_ms())
        if done is None:
            raise Refused("invalid_argument", f"Scheduled call {schedule_id} is {row.state} and can no longer be "
                          "cancelled.", state=row.state)
        await self._audit("cancelled", f"scheduled call {schedule_id} to {row.to_number} cancelled",
                          schedule_id=schedule_id)
        self._changed(SCHEDULED_URI)
        return scheduled_view(done)

    def attach(self, ingest: Any, batches: Any, calls: Any = None) -> OutreachService:
        """Hook into the one ingest path (ended calls), the batch service (cancellations wake batches) and the call
        reader (stale calls are looked up on the platform through it)."""
        self.ingest, self.batches, self.calls = ingest, batches, calls
        ingest.on_ended.append(self.call_ended)
        return self

    def kick(self) -> None:
        self._wake.set()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[OutreachService]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._scheduler)
            tg.start_soon(self._stale_sweeper)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def _scheduler(self) -> None:
        first = True
        while True:
            try:
                await self._run_due(resume=first)
                first = False
            except Exception:
                log.exception("scheduled calls: a pass failed; trying again")
            with anyio.move_on_after(POLL_S):
                await self._wake.wait()
            self._wake = anyio.Event()

    # --- stale calls ----------------------------------------------------------------------------

    async def _stale_sweeper(self) -> None:
        interval = min(60.0, max(0.2, self.settings.stale_grace_s / 4))
        while True:
            await anyio.sleep(interval)
            try:
                await self.sweep_stale()
            except Exception:
                log.exception("stale calls: a sweep failed; trying again")

    async def sweep_stale(self) -> list[str]:
        """Every placed call with no terminal event `stale_grace_s` after its maximum duration: read it from the
        platform (through the one read path, which stores what it learns); if it still is not over, mark it stale
        (status error, an event `call_stale`, a derived call_failed) so no wait goes on forever. Returns the ids
        marked stale."""
        if self.calls is None or self.ingest is None:
            return []
        now = self._now_ms()
        grace_ms = int(self.settings.stale_grace_s * 1000)
        shortest = 60_000  # agent_override.agent.max_call_duration_ms is at least a minute
        default_ms = int(self.settings.max_call_duration_s * 1000)
        marked: list[str] = []
        cutoff = now - grace_ms - min(shortest, default_ms)
        for call_id, request_json, created in await self.store.open_calls(created_before_ms=cutoff):
            if now - created < _max_duration_ms(request_json, default_ms) + grace_ms:
                continue
            try:
                await self.calls.snapshot(call_id)
            except Exception as exc:  # the platform may be down: we still stop waiting
                log.info("stale check: reading %s failed: %s", call_id, exc)
            record = await self.store.get_call_record(call_id)
            if record is not None and record.terminal:
                continue
            call = dict(record.call) if record is not None else {"call_id": call_id}
            call.update(call_status="error", disconnection_reason="stale", stale=True)
            await self.ingest.event({"event": "call_stale", "call": call}, source="outreach")
            await self.store.audit("stale", decision="stale", code=None,
                                   summary=f"call {call_id} had no terminal event {self.settings.stale_grace_s:g} s "
                                   "after its maximum duration and the platform did not know it ended; marked stale",
                                   details={"call_id": call_id}, now_ms=now)
            marked.append(call_id)
        return marked

    async def _run_due(self, *, resume: bool) -> None:
        """Dial what is due (at start also what a crash left dialing), up to DIAL_CONCURRENCY at once."""
        now = self._now_ms()
        states = ("scheduled", "dialing") if resume else ("scheduled",)
        slots = anyio.Semaphore(DIAL_CONCURRENCY)

        async def one(row: ScheduledCall) -> None:
            try:
                await self._dial(row)
            except Exception:
                log.exception("scheduled call %s: dialling failed; it is looked at again", row.schedule_id)
            finally:
                self._busy.discard(row.schedule_id)
                slots.release()

        async with anyio.create_task_group() as tg:
            for row in await self.store.list_scheduled(states=states, limit=500):
                if row.state == "scheduled" and row.due_at_ms > now:
                    continue
                if row.schedule_id not in self._busy:
                    self._busy.add(row.schedule_id)
                    await slots.acquire()
                    tg.start_soon(one, row)

    async def _dial(self, row: ScheduledCall) -> None:
        sid = row.schedule_id
        if row.batch_id is not None and self.batches is not None:
            batch = await self.store.get_batch(row.batch_id)
            if batch is None or batch.status == "cancelled":
                if row.state == "scheduled":
                    await self.store.mark_scheduled(sid, "cancelled", code="cancelled", now_ms=self._now_ms())
                return
            if batch.window:
                from uponai_mcp.batches import CallTimeWindow

                window = CallTimeWindow.model_validate(batch.window)
                if not window.is_open(self.wall()):
                    nxt = window.next_open(self.wall()) or self.wall() + timedelta(minutes=5)
                    await self._wait_until(row, nxt)
                    return
        if row.state == "scheduled" and await self.store.mark_scheduled(
                sid, "dialing", expect="scheduled", now_ms=self._now_ms()) is None:
            return
        request = CallRequest.model_validate_json(row.request_json)
        try:
            placement = await self.dialer.place(request, idempotency_key=await self._key_for(row), confirmed=True,
                                                source=f"scheduled:{sid}")
        except Refused as refusal:
            details = refusal.details
            if refusal.code == guardrails.OUTSIDE_CALLING_WINDOW and details.get("next_allowed_at") \
                    and details.get("problem") == "outside_window":
                await self._wait_until(row, datetime.fromisoformat(details["next_allowed_at"]))
                return
            if refusal.code == "rate_limited" and details.get("retry_after_s") is not None:
                await self._wait_until(row, self.wall() + timedelta(seconds=float(details["retry_after_s"])))
                return
            if refusal.code == guardrails.BUDGET_EXCEEDED and set(details.get("exceeded") or ()) == {
                    guardrails.PER_HOUR}:
                await self._wait_until(row, self.wall() + HOURLY_HOLD)
                return
            state = "refused" if refusal.code in guardrails.CODES else "failed"
            await self.store.mark_scheduled(sid, state, code=refusal.code, message=refusal.message[:500],
                                            now_ms=self._now_ms())
            await self._audit("refused", f"scheduled call {sid} to {row.to_number}: {refusal.message}",
                              code=refusal.code, schedule_id=sid)
        else:
            await self.store.mark_scheduled(sid, "placed", attempt_id=placement.attempt_id,
                                            call_id=placement.call.call_id, now_ms=self._now_ms())
        if row.batch_id is not None and self.batches is not None:
            self.batches.touch(row.batch_id)
        self._changed(SCHEDULED_URI)

    async def _key_for(self, row: ScheduledCall) -> str:
        """The idempotency key of this dial: the schedule's own, unless an earlier try under it provably never
        left (a crash between writing the attempt and sending it, or a full pacer): then the next one. A try that
        may have reached the platform keeps its key, so it is replayed (or reconciled), never dialled again."""
        key = row.idempotency_key
        for n in range(1, 20):
            earlier = await self.store.get_attempt_by_key(key)
            if earlier is None or not (earlier.state == "failed" and earlier.dialed_at_ms is None):
                return key
            key = f"{row.idempotency_key}:{n}"
        return key

    async def _wait_until(self, row: ScheduledCall, when: datetime) -> None:
        if row.state == "dialing" or (await self.store.get_scheduled(row.schedule_id) or row).state == "dialing":
            await self.store.mark_scheduled(row.schedule_id, "scheduled", now_ms=self._now_ms())
        await self.store.set_due(row.schedule_id, max(_ms(when), self._now_ms() + 1000), now_ms=self._now_ms())


def _max_duration_ms(request_json: str, default_ms: int) -> int:
    try:
        agent = ((json.loads(request_json).get("agent_override") or {}).get("agent") or {})
    except (ValueError, AttributeError):
        return default_ms
    value = agent.get("max_call_duration_ms")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default_ms


def _schedule_id(idempotency_key: str) -> str:
    return "sch_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _request_json(request: CallRequest) -> str:
    return params.canonical_json(request)


def scheduled_view(r: ScheduledCall) -> ScheduledView:
    return ScheduledView(schedule_id=r.schedule_id, to_number=r.to_number, from_number=r.from_number,
                         scheduled_at=iso(r.due_at_ms), state=r.state, code=r.code, message=r.message,
                         call_id=r.call_id, attempt=r.tries, batch_id=r.batch_id, task_index=r.task_idx,
                         retry_of=r.retry_of)


# --- CSV ------------------------------------------------------------------------------------------

_NUMBER_COLUMNS = ("phone_number", "number", "to_number", "e164", "phone")


def parse_dnc_csv(text: str, *, reason: str, default_region: str | None) -> tuple[list[tuple[str, str]], list[str]]:
    """(e164, reason) pairs and the invalid rows. A header naming phone_number (or number, to_number, e164,
    phone) and optionally reason; without one, the first column holds the numbers."""
    reader = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    reader = [r for r in reader if any(c.strip() for c in r)]
    if not reader:
        raise Refused("invalid_argument", "The CSV is empty.", field="csv")
    head = [c.strip().lower() for c in reader[0]]
    col, why = 0, None
    body = reader
    if any(h in _NUMBER_COLUMNS for h in head):
        col = next(i for i, h in enumerate(head) if h in _NUMBER_COLUMNS)
        why = head.index("reason") if "reason" in head else None
        body = reader[1:]
    out: list[tuple[str, str]] = []
    invalid: list[str] = []
    for i, r in enumerate(body, start=2 if body is not reader else 1):
        raw = r[col] if col < len(r) else ""
        e164 = guardrails.normalize_loose(raw, default_region)
        if e164 is None:
            invalid.append(f"row {i}: {raw[:40]!r}")
            continue
        row_reason = (r[why].strip() if why is not None and why < len(r) else "") or reason
        out.append((e164, row_reason[:500]))
    return out, invalid


def export_csv(entries: list[Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["phone_number", "reason", "source", "added_by", "call_id", "added_at"])
    for e in entries:
        w.writerow([e.e164, e.reason, e.source, e.added_by, e.call_id or "", iso(e.created_at_ms)])
    return buf.getvalue()

