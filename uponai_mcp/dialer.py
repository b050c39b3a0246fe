"""The place-a-call pipeline: guard -> confirm -> ledger -> pace -> API -> record.

Nothing here knows MCP. Every refusal is a `Refused` with a stable code; every decision is
audited; every attempt is committed to the ledger before its request leaves, so an ambiguous
failure is reconciled by looking the call up, never by dialling again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from uponai_mcp import guardrails, params
from uponai_mcp.api import UponAIClient
from uponai_mcp.api import errors as api_errors
from uponai_mcp.api.dialects import pick_weighted
from uponai_mcp.config import Settings
from uponai_mcp.confirmations import Confirmations
from uponai_mcp.directory import Directory
from uponai_mcp.errors import Refused, from_api_error
from uponai_mcp.models import Call, CallRequest, PhoneNumber
from uponai_mcp.pacing import Pacer, RateLimitedLater, Slot
from uponai_mcp.store import Attempt, IdempotencyConflict, ReservationRefused, Store
from uponai_mcp.store.attempts import Usage as StoreUsage

log = logging.getLogger(__name__)

MAX_PLATFORM_429_RETRIES = 5
# How long a duplicate request with the same idempotency key waits for the first one to finish.
IN_FLIGHT_WAIT_S = 30.0
ORPHAN_AFTER_S = 180.0  # several replicas: an open attempt untouched this long belongs to a replica that died


@dataclass(frozen=True)
class Preflight:
    """The decision about one call: everything the checks learned, and the agent that will take it.

    `agent_id`/`agent_version`: the override, or the from-number's outbound agent (drawn by weight for an
    A/B split), handed to the client so the create needs no lookup of its own."""

    request: CallRequest
    destination: guardrails.Destination
    from_number: PhoneNumber
    needs_confirmation: bool
    summary: str
    agent_id: str | None
    checks: tuple[str, ...]
    agent_version: int | None = None


@dataclass
class Prepared:
    """A create request after the first look: an earlier attempt with its idempotency key (to replay), or
    the decision. Made once per request and shared by the confirmation question and the tool body."""

    request: CallRequest
    idempotency_key: str | None
    params_hash: str
    earlier: Attempt | None = None
    decision: Preflight | None = None


@dataclass
class Placement:
    call: Call
    attempt_id: str
    replayed: bool = False
    preflight: Preflight | None = None
    notes: list[str] = field(default_factory=list)


class Dialer:
    def __init__(
        self,
        settings: Settings,
        api: UponAIClient,
        store: Store,
        pacer: Pacer,
        directory: Directory,
        *,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_call: Callable[[str], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.api = api
        self.store = store
        self.pacer = pacer
        self.directory = directory
        self.wall = wall
        self.on_call = on_call  # notified with a call id when a call is placed (events, resources)
        self.countries = guardrails.CountryPolicy.from_settings(settings)
        self.window = guardrails.CallingWindow.parse(settings.effective_calling_window)
        self.budgets = guardrails.Budgets.from_settings(settings)
        self.spend = guardrails.SpendCap(settings.max_spend_per_day_cents, settings.spend_estimate_cents)
        self.confirmations = Confirmations(store, wall)

    def _now_ms(self) -> int:
        return int(self.wall().timestamp() * 1000)

    async def _audit(self, decision: str, request: CallRequest | None, *, code: str | None = None,
                     summary: str = "", **details: Any) -> None:
        if request is not None:
            details.setdefault("to_number", request.to_number)
            details.setdefault("from_number", request.from_number)
        await self.store.audit(
            "create_phone_call", decision=decision, code=code, summary=summary, details=details, now_ms=self._now_ms()
        )

    # --- the decision ---------------------------------------------------------------------------

    async def preflight(self, request: CallRequest, *, at: datetime | None = None) -> Preflight:
        """Run every check of a dial without dialling; raises `Refused` on the first failure (audited)."""
        try:
            return await self.evaluate(request, at=at)
        except Refused as refusal:
            await self._audit("refused", request, code=refusal.code, summary=refusal.message)
            raise

    async def evaluate(self, request: CallRequest, *, at: datetime | None = None) -> Preflight:
        """The decision, without an audit entry: `guardrails.evaluate` (every guardrail, once) over the
        account's numbers, the do-not-call list and the ledger's usage, then the agent. Budgets are read here
        for the verdict; the binding check is the reservation in `reserve`. `at`: judge the calling window at
        that time instead of now (a scheduled call)."""
        listed = await self.do_not_call_entry(request.to_number)
        numbers = await self.directory.numbers()
        now = at or self.wall()
        verdict = guardrails.evaluate(
            to_number=request.to_number, from_number=request.from_number, numbers=numbers,
            policy=self.countries, window=self.window, now=now, budgets=self.budgets,
            usage=await self._usage(request.to_number),
            override_agent_id=request.override_agent_id, ignore_e164_validation=request.ignore_e164_validation,
            listed=listed, do_not_call_checked=True, spend=self.spend,
        )
        if verdict.refusal is not None:
            r = verdict.refusal
            raise Refused(r.code, r.message, **r.details)
        dest, number = verdict.destination, verdict.from_number
        assert dest is not None and number is not None
        agent_id, version = request.override_agent_id, request.override_agent_version
        if agent_id is not None:
            await self.directory.require_agent(agent_id, version)
            agent_label = agent_id
        elif number.outbound_agents:
            chosen = pick_weighted(number.outbound_agents, self.api.rng)
            agent_id = chosen.agent_id
            version = version if version is not None else chosen.agent_version
            agent_label = agent_id if len(number.outbound_agents) == 1 else \
                f"{agent_id} (drawn from the number's weighted outbound agents)"
        else:  # custom numbers without an agent are refused by the from-number check
            agent_label = "the number's outbound agent"
        policy = self.settings.effective_confirm
        international = dest.region != _region_of(number.phone_number)
        needs = policy == "always" or (policy == "international" and international)
        summary = (f"Call {guardrails.describe_destination(dest, now)} from {number.phone_number} "
                   f"({number.kind.value} number) with agent {agent_label}")
        return Preflight(request, dest, number, needs, summary, agent_id, tuple(verdict.checks) + ("agent",),
                         version)

    async def _usage(self, to_number: str) -> guardrails.Usage:
        dest = guardrails.check_destination(to_number)
        e164 = to_number if isinstance(dest, guardrails.Refusal) else dest.e164
        u = await self.store.usage(e164, now_ms=self._now_ms())
        return guardrails.Usage(u.to_destination_24h, u.last_hour, u.last_day, spent_mc=u.spent_today_mc,
                                in_flight_today=u.in_flight_today)

    async def do_not_call_entry(self, to_number: str) -> guardrails.Listed | None:
        """The do-not-call entry of a destination written any way (compared in E.164), or None."""
        e164 = guardrails.normalize_loose(to_number)
        entry = None if e164 is None else await self.store.get_do_not_call(e164)
        return None if entry is None else guardrails.Listed(entry.e164, entry.reason, entry.source, entry.call_id)

    def budget_check(self, to_number: str = "") -> Callable[[StoreUsage], guardrails.Refusal | None]:
        """The binding rules, run by the store inside the reservation's transaction: the do-not-call list (a
        number listed since the decision), the budgets, and the spend cap (concurrent callers cannot pass it)."""
        def check(u: StoreUsage) -> guardrails.Refusal | None:
            if u.do_not_call is not None:
                reason, source, call_id = u.do_not_call
                return guardrails.check_do_not_call(to_number, guardrails.Listed(to_number, reason, source, call_id))
            return guardrails.check_budgets(
                self.budgets, attempts_to_destination_24h=u.to_destination_24h, calls_last_hour=u.last_hour,
                calls_last_day=u.last_day) or guardrails.check_spend(
                self.spend, spent_mc=u.spent_today_mc, in_flight=u.in_flight_today, now=self.wall())

        return check

    async def record_declined(self, request: CallRequest) -> None:
        await self._audit("declined", request, code="declined", summary="the person declined the call")

    # --- confirmation ---------------------------------------------------------------------------

    async def ask_confirmation(self, prepared: Prepared) -> Refused:
        """A single-use token bound to the parameters and the idempotency key, as the refusal to answer."""
        decision = prepared.decision
        assert decision is not None
        issued = await self.confirmations.issue(
            "call", params_hash=prepared.params_hash, request_json=params.canonical_json(prepared.request),
            summary=decision.summary, idempotency_key=prepared.idempotency_key)
        await self._audit("confirmation_issued", prepared.request, summary=decision.summary)
        return Refused(
            "confirmation_required",
            f"{decision.summary}. Show this to the user; if they approve, call confirm_call with token "
            f"{issued.token} (single use, expires {issued.expires_at.strftime('%H:%M:%S')} UTC).",
            **issued.details(),
        )

    async def redeem_token(self, token: str, request: CallRequest | None = None,
                           idempotency_key: str | None = None) -> tuple[CallRequest, str | None]:
        """Consume a call token once: the confirmed request and the idempotency key bound to it. `request`,
        when given, must be exactly the confirmed one, and a key given with it must be the bound one."""
        try:
            conf = await self.confirmations.redeem(
                "call", token, params_hash=None if request is None else params.params_hash(request))
        except Refused as refusal:
            await self._audit("confirmation_rejected", request, code=refusal.code, summary=refusal.message)
            raise
        if idempotency_key is not None and conf.idempotency_key not in (None, idempotency_key):
            await self._audit("confirmation_rejected", request, code="confirmation_invalid",
                              summary="idempotency key differs from the confirmed one")
            raise Refused("confirmation_invalid", "That token was issued for another idempotency_key; the token is "
                          "now spent, ask for a new confirmation.")
        confirmed = params.from_json(conf.request_json)
        await self._audit("confirmed", confirmed, summary=conf.summary)
        return confirmed, conf.idempotency_key or idempotency_key

    # --- dialling -------------------------------------------------------------------------------

    async def prepare(self, request: CallRequest, idempotency_key: str | None = None, *,
                      at: datetime | None = None) -> Prepared:
        """The first look at a create: the earlier attempt with this key, else the decision (audited
        refusals are raised). `at`: a scheduled call, judged (calling window) at that time; no replay."""
        prepared = Prepared(request, idempotency_key, params.params_hash(request))
        if idempotency_key is not None and at is None:
            prepared.earlier = await self.store.get_attempt_by_key(idempotency_key)
        if prepared.earlier is None:
            prepared.decision = await self.preflight(request, at=at)
        return prepared

    async def place(
        self, request: CallRequest, *, idempotency_key: str | None = None, confirmed: bool = False,
        source: str = "tool", prepared: Prepared | None = None,
    ) -> Placement:
        """Place one call. `confirmed` says a person approved it (elicitation or token); `prepared` is the
        first look when the caller already made it (it is not made twice)."""
        if prepared is None or prepared.params_hash != params.params_hash(request) \
                or prepared.idempotency_key != idempotency_key:
            prepared = await self.prepare(request, idempotency_key)
        if prepared.earlier is not None:
            return await self._replay(prepared.earlier, prepared.params_hash, idempotency_key)
        pf = prepared.decision
        assert pf is not None
        if pf.needs_confirmation and not confirmed:
            raise Refused("confirmation_required", pf.summary)
        attempt_id = "att_" + uuid.uuid4().hex
        attempt = await self.reserve(attempt_id, pf, idempotency_key=idempotency_key, source=source)
        if attempt.attempt_id != attempt_id:  # lost a race for the same key
            return await self._replay(attempt, prepared.params_hash, idempotency_key)
        await self._audit("allowed", request, summary=pf.summary, attempt_id=attempt_id, checks=list(pf.checks))
        placement = await self._dial(request, attempt_id, pf.from_number.kind.value,
                                     agent=None if pf.agent_id is None else (pf.agent_id, pf.agent_version))
        placement.preflight = pf
        return placement

    async def reserve(self, attempt_id: str, pf: Preflight, *, idempotency_key: str | None = None,
                      source: str = "tool") -> Attempt:
        """Write the attempt row with the budgets checked in the same transaction (never a count read
        earlier). Returns the earlier attempt instead when the key was used with the same parameters."""
        request = pf.request
        try:
            return await self.store.create_attempt(
                attempt_id, idempotency_key=idempotency_key, params_hash=params.params_hash(request),
                request_json=params.canonical_json(request), from_number=request.from_number,
                to_number=pf.destination.e164, scope=pf.from_number.kind.value, source=source,
                now_ms=self._now_ms(), check=self.budget_check(pf.destination.e164),
            )
        except IdempotencyConflict as exc:
            raise _conflict(idempotency_key) from exc
        except ReservationRefused as exc:
            r = exc.reason
            assert isinstance(r, guardrails.Refusal)
            await self._audit("refused", request, code=r.code, summary=r.message)
            raise Refused(r.code, r.message, **r.details) from exc

    async def dial_attempt(self, request: CallRequest, attempt_id: str, scope: str, *,
                           slot: Slot | None = None) -> Placement:
        """Dial a request that was already checked, whose attempt row is committed (batches): the same
        pace -> API -> record pipeline as `place`. `slot`: a pacer slot the caller already waited for, used
        for the first try (a platform 429 queues the retry through the pacer as usual)."""
        return await self._dial(request, attempt_id, scope, first_slot=slot)

    async def _dial(self, request: CallRequest, attempt_id: str, scope: str, *,
                    first_slot: Slot | None = None, agent: tuple[str, int | None] | None = None) -> Placement:
        async def take_slot() -> None:
            # Awaited by the client right before the create request leaves (after any lookups), so the
            # pacer times the request itself. A batch may hand in the slot it already waited for.
            # The ledger row is committed while the slot is pending, so nothing sits between the slot
            # opening and the request leaving (a commit there would jitter the spacing the platform sees).
            nonlocal first_slot, waited_s
            slot, first_slot = first_slot, None
            if slot is None:
                slot = await self.pacer.reserve(scope, horizon_s=self.settings.pacing_horizon_s)
                send_at_ms = self._now_ms() + int(max(0.0, slot.start - slot.reserved_at) * 1000)
                try:
                    await self.store.mark_attempt(attempt_id, "dialing", now_ms=self._now_ms(), send_at_ms=send_at_ms)
                except BaseException:
                    self.pacer.release(slot)
                    raise
                slot = await self.pacer.wait(slot)
            else:
                await self.store.mark_attempt(attempt_id, "dialing", now_ms=self._now_ms())
            waited_s += slot.waited_s

        waited_s = 0.0

        for _ in range(MAX_PLATFORM_429_RETRIES + 1):
            try:
                call = await self.api.create_call(request, attempt_id=attempt_id, retry_rate_limited=False,
                                                  before_send=take_slot, agent=agent)
            except RateLimitedLater as exc:
                await self.store.mark_attempt(attempt_id, "failed", error_code="rate_limited",
                                              error_message=str(exc), now_ms=self._now_ms())
                await self._audit("refused", request, code="rate_limited", summary=str(exc), attempt_id=attempt_id)
                raise Refused(
                    "rate_limited",
                    f"The {scope} CPS schedule is full for the next {self.settings.pacing_horizon_s:.0f} s; "
                    f"retry at {exc.retry_at_wall.isoformat()} (in {exc.retry_after_s:.1f} s).",
                    retry_after_s=exc.retry_after_s,
                ) from exc
            except api_errors.RateLimited as exc:
                # The platform counted differently than we did: push the whole scope back and retry in line.
                self.pacer.penalize(scope, exc.retry_after)
                await self._audit("paced", request, code="rate_limited",
                                  summary=f"platform 429, scope paused {exc.retry_after:.2f} s", attempt_id=attempt_id)
                continue
            except api_errors.OutcomeUnknown as exc:
                await self.store.mark_attempt(attempt_id, "unknown", error_code="outcome_unknown",
                                              error_message=exc.cause, now_ms=self._now_ms())
                found = await self.reconcile(attempt_id)
                if found is not None:
                    return Placement(found, attempt_id, notes=["reconciled after an ambiguous create"])
                await self._audit("unknown", request, code="outcome_unknown", summary=exc.cause, attempt_id=attempt_id)
                raise from_api_error(exc) from exc
            except api_errors.ApiError as exc:
                refusal = from_api_error(exc, what="The call")
                await self.store.mark_attempt(attempt_id, "failed", error_code=refusal.code,
                                              error_message=refusal.message, now_ms=self._now_ms())
                await self.store.record_failed_create(
                    attempt_id, request_json=params.canonical_json(request), error=refusal.message,
                    now_ms=self._now_ms(),
                )
                await self._audit("failed", request, code=refusal.code, summary=refusal.message, attempt_id=attempt_id)
                raise refusal from exc
            if waited_s > 0.05:
                await self._audit("paced", request, summary=f"waited {waited_s:.2f} s for a {scope} slot",
                                  attempt_id=attempt_id)
            await self._record_placed(attempt_id, call, request)
            return Placement(call, attempt_id)
        await self.store.mark_attempt(attempt_id, "failed", error_code="rate_limited",
                                      error_message="platform kept answering 429", now_ms=self._now_ms())
        raise Refused("rate_limited", "The platform kept rejecting the call for its CPS limit; try again later.")

    async def _record_placed(self, attempt_id: str, call: Call, request: CallRequest | None) -> None:
        await self.store.mark_attempt(attempt_id, "placed", call_id=call.call_id,
                                      result_json=call.model_dump_json(exclude_none=True), now_ms=self._now_ms())
        await self.store.upsert_call_from_api(call.model_dump(mode="json", exclude_none=True), now_ms=self._now_ms())
        await self._audit("placed", request, summary=f"call {call.call_id}", attempt_id=attempt_id,
                          call_id=call.call_id)
        if self.on_call is not None:
            await self.on_call(call.call_id)

    async def _replay(self, attempt, p_hash: str, key: str | None) -> Placement:
        if attempt.params_hash != p_hash:
            raise _conflict(key)
        with anyio.move_on_after(IN_FLIGHT_WAIT_S):
            while attempt.state in ("pending", "dialing"):
                await anyio.sleep(0.05)
                attempt = await self.store.get_attempt(attempt.attempt_id)
        if attempt.state == "unknown":
            found = await self.reconcile(attempt.attempt_id)
            if found is not None:
                return Placement(found, attempt.attempt_id, replayed=True)
        if attempt.state == "placed":
            return Placement(Call.model_validate_json(attempt.result_json), attempt.attempt_id, replayed=True)
        code = attempt.error_code if attempt.error_code in {"rate_limited", "outcome_unknown", "not_found"} \
            else "upstream_error"
        raise Refused(
            code,
            f"The first request with this idempotency key ended as {attempt.state}"
            f"{': ' + attempt.error_message if attempt.error_message else ''}; use a new key to try again.",
            attempt_id=attempt.attempt_id,
        )

    async def reconcile(self, attempt_id: str, *, tries: int = 3, delay_s: float = 0.5) -> Call | None:
        """Find the call of an ambiguous attempt by its tag; never dials."""
        attempt = await self.store.get_attempt(attempt_id)
        for i in range(tries):
            try:
                call = await self.api.find_call_by_attempt(
                    attempt_id, since_ms=attempt.created_at_ms - 60_000, to_number=attempt.to_number
                )
            except api_errors.ApiError as exc:
                log.warning("reconciling %s failed: %s", attempt_id, exc)
                call = None
            if call is not None:
                await self._record_placed(attempt_id, call, None)
                return call
            if i + 1 < tries:
                await anyio.sleep(delay_s)
        return None

    async def reconcile_pending(self) -> int:
        """At start-up: settle the attempts a crash left open; returns how many calls were found.

        The previous process is gone, so whatever it sent has reached the platform by now: an attempt whose
        call the platform does not know failed. One still waiting for its pacer slot (its send time is in the
        future) never left at all, and stops counting against budgets.

        On PostgreSQL other replicas are alive and have attempts in flight: only attempts nobody touched for
        ORPHAN_AFTER_S (their replica died) are settled here."""
        found = 0
        quiet_ms = int(ORPHAN_AFTER_S * 1000) if getattr(self.store, "dialect", "sqlite") == "postgresql" else None

        def orphaned(a) -> bool:
            return quiet_ms is None or max(a.updated_at_ms, a.dialed_at_ms or 0) < self._now_ms() - quiet_ms

        for attempt in await self.store.attempts_in_state("dialing", "unknown"):
            if not orphaned(attempt):
                continue
            if attempt.state == "dialing" and (attempt.dialed_at_ms or 0) > self._now_ms():
                await self.store.mark_attempt(attempt.attempt_id, "failed", error_code="upstream_error",
                                              error_message="interrupted while waiting for a pacer slot; never sent",
                                              now_ms=self._now_ms(), unsent=True)
            elif await self.reconcile(attempt.attempt_id, tries=1) is not None:
                found += 1
            else:
                await self.store.mark_attempt(attempt.attempt_id, "failed", error_code="outcome_unknown",
                                              error_message="never found on the platform", now_ms=self._now_ms())
        for attempt in await self.store.attempts_in_state("pending"):
            if not orphaned(attempt):
                continue
            # Never sent: a crash before the request left. Safe to close; the caller may try again.
            await self.store.mark_attempt(attempt.attempt_id, "failed", error_code="upstream_error",
                                          error_message="interrupted before dialling", now_ms=self._now_ms())
        return found


def _region_of(number: str) -> str | None:
    dest = guardrails.check_destination(number)
    return None if isinstance(dest, guardrails.Refusal) else dest.region


def _conflict(key: str | None) -> Refused:
    return Refused(
        "idempotency_conflict",
        f"Idempotency key {key!r} was already used with different parameters; use a new key for a new call.",
    )
