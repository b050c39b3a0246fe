"""The place-a-call pipeline: guard -> confirm -> ledger -> pace -> API -> record.

Nothing here knows MCP. Every refusal is a `Refused` with a stable code; every decision is
audited; every attempt is committed to the ledger before its request leaves, so an ambiguous
failure is reconciled by looking the call up, never by dialling again.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from uponai_mcp import guardrails, params
from uponai_mcp.api import UponAIClient
from uponai_mcp.api import errors as api_errors
from uponai_mcp.config import Settings
from uponai_mcp.directory import Directory
from uponai_mcp.errors import Refused, from_api_error
from uponai_mcp.models import Call, CallRequest, PhoneNumber
from uponai_mcp.pacing import Pacer, RateLimitedLater, Slot
from uponai_mcp.store import IdempotencyConflict, Store

log = logging.getLogger(__name__)

CONFIRM_TTL = timedelta(minutes=5)
MAX_PLATFORM_429_RETRIES = 5
# How long a duplicate request with the same idempotency key waits for the first one to finish.
IN_FLIGHT_WAIT_S = 30.0


@dataclass(frozen=True)
class Preflight:
    """Everything the checks learned; `needs_confirmation` follows the confirmation policy."""

    request: CallRequest
    destination: guardrails.Destination
    from_number: PhoneNumber
    needs_confirmation: bool
    summary: str
    agent_id: str | None
    checks: tuple[str, ...]


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

    # --- checks ---------------------------------------------------------------------------------

    async def preflight(self, request: CallRequest) -> Preflight:
        """Run every check of a dial without dialling; raises `Refused` on the first failure."""
        try:
            return await self.evaluate(request)
        except Refused as refusal:
            await self._audit("refused", request, code=refusal.code, summary=refusal.message)
            raise

    async def evaluate(self, request: CallRequest) -> Preflight:
        """`preflight` without the audit entry (used to phrase a confirmation question)."""
        checks: list[str] = []
        dest = _ok(guardrails.check_destination(request.to_number))
        checks.append("destination")
        numbers = await self.directory.numbers()
        _ok(guardrails.check_not_own_number(dest, numbers))
        checks.append("not_own_number")
        number = _ok(
            guardrails.check_from_number(
                request.from_number, numbers,
                override_agent_id=request.override_agent_id,
                ignore_e164_validation=request.ignore_e164_validation,
            )
        )
        checks.append("from_number")
        agent_id = request.override_agent_id
        if agent_id is not None:
            await self.directory.require_agent(agent_id, request.override_agent_version)
        elif number.outbound_agents:
            agent_id = number.outbound_agents[0].agent_id if len(number.outbound_agents) == 1 else None
        checks.append("agent")
        _ok(guardrails.check_country(dest, number.kind, self.countries, number.allowed_outbound_country_list))
        checks.append("country")
        now = self.wall()
        _ok(guardrails.check_calling_window(dest, self.window, now))
        checks.append("calling_window")
        now_ms = self._now_ms()
        _ok(
            guardrails.check_budgets(
                self.budgets,
                attempts_to_destination_24h=await self.store.count_attempts(
                    to_number=dest.e164, since_ms=now_ms - 86_400_000
                ),
                calls_last_hour=await self.store.count_attempts(since_ms=now_ms - 3_600_000),
                calls_last_day=await self.store.count_attempts(since_ms=now_ms - 86_400_000),
            )
        )
        checks.append("budgets")
        policy = self.settings.effective_confirm
        international = dest.region != _region_of(number.phone_number)
        needs = policy == "always" or (policy == "international" and international)
        agent = agent_id or "the number's outbound agents (weighted)"
        summary = (
            f"Call {guardrails.describe_destination(dest, now)} from {number.phone_number} "
            f"({number.kind.value} number) with agent {agent}"
        )
        return Preflight(request, dest, number, needs, summary, agent_id, tuple(checks))

    async def record_declined(self, request: CallRequest) -> None:
        await self._audit("declined", request, code="declined", summary="the person declined the call")

    # --- confirmation tokens --------------------------------------------------------------------

    async def issue_token(self, pf: Preflight) -> tuple[str, datetime]:
        """A single-use token bound to the exact parameters; only its hash is stored."""
        token = "cfm_" + secrets.token_urlsafe(18)
        expires = self.wall() + CONFIRM_TTL
        await self.store.create_confirmation(
            _token_hash(token), params.params_hash(pf.request), params.canonical_json(pf.request), pf.summary,
            int(expires.timestamp() * 1000), now_ms=self._now_ms(),
        )
        await self._audit("confirmation_issued", pf.request, summary=pf.summary)
        return token, expires

    async def redeem_token(self, token: str, request: CallRequest | None = None) -> CallRequest:
        """Consume a token once; `request`, when given, must be exactly the confirmed one."""
        problem = None
        try:
            conf = await self.store.consume_confirmation(_token_hash(token.strip()), now_ms=self._now_ms())
        except LookupError as exc:
            problem = str(exc) or "unknown, expired or already used"
            conf = None
        if conf is None:
            await self._audit("confirmation_rejected", request, code="confirmation_invalid", summary=problem or "")
            raise Refused(
                "confirmation_invalid",
                f"That confirmation token is {problem or 'not valid'}; call create_phone_call again for a new one.",
            )
        confirmed = params.from_json(conf.request_json)
        if request is not None and params.params_hash(request) != conf.params_hash:
            await self._audit("confirmation_rejected", request, code="confirmation_invalid",
                              summary="parameters differ from the confirmed ones")
            raise Refused(
                "confirmation_invalid",
                "The parameters differ from the ones confirmed; the token is now spent, ask for a new confirmation.",
            )
        await self._audit("confirmed", confirmed, summary=conf.summary)
        return confirmed

    # --- dialling -------------------------------------------------------------------------------

    async def place(
        self, request: CallRequest, *, idempotency_key: str | None = None, confirmed: bool = False,
        source: str = "tool",
    ) -> Placement:
        """Place one call. `confirmed` says a person approved it (elicitation or token)."""
        attempt_id = "att_" + uuid.uuid4().hex
        p_hash = params.params_hash(request)
        if idempotency_key is not None:
            existing = await self.store.get_attempt_by_key(idempotency_key)
            if existing is not None:
                return await self._replay(existing, p_hash, idempotency_key)
        pf = await self.preflight(request)
        if pf.needs_confirmation and not confirmed:
            raise Refused("confirmation_required", pf.summary)
        try:
            attempt = await self.store.create_attempt(
                attempt_id, idempotency_key=idempotency_key, params_hash=p_hash,
                request_json=params.canonical_json(request), from_number=request.from_number,
                to_number=pf.destination.e164, scope=pf.from_number.kind.value, source=source,
                now_ms=self._now_ms(),
            )
        except IdempotencyConflict as exc:
            raise _conflict(idempotency_key) from exc
        if attempt.attempt_id != attempt_id:  # lost a race for the same key
            return await self._replay(attempt, p_hash, idempotency_key)
        await self._audit("allowed", request, summary=pf.summary, attempt_id=attempt_id, checks=list(pf.checks))
        placement = await self._dial(request, attempt_id, pf.from_number.kind.value)
        placement.preflight = pf
        return placement

    async def dial_attempt(self, request: CallRequest, attempt_id: str, scope: str, *,
                           slot: Slot | None = None) -> Placement:
        """Dial a request that was already checked, whose attempt row is committed (batches): the same
        pace -> API -> record pipeline as `place`. `slot`: a pacer slot the caller already waited for, used
        for the first try (a platform 429 queues the retry through the pacer as usual)."""
        return await self._dial(request, attempt_id, scope, first_slot=slot)

    async def _dial(self, request: CallRequest, attempt_id: str, scope: str, *,
                    first_slot: Slot | None = None) -> Placement:
        async def take_slot() -> None:
            # Awaited by the client right before the create request leaves (after any lookups), so the
            # pacer times the request itself. A batch may hand in the slot it already waited for.
            # The ledger row is committed while the slot is pending, so nothing sits between the slot
            # opening and the request leaving (a commit there would jitter the spacing the platform sees).
            nonlocal first_slot, waited_s
            slot, first_slot = first_slot, None
            if slot is None:
                slot = await self.pacer.reserve(scope, horizon_s=self.settings.pacing_horizon_s)
                try:
                    await self.store.mark_attempt(attempt_id, "dialing", now_ms=self._now_ms())
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
                                                  before_send=take_slot)
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

    async def reconcile_pending(self, *, older_than_s: float = 0.0) -> int:
        """At start-up: settle attempts a crash left in dialing/unknown; returns how many were found."""
        found = 0
        for attempt in await self.store.attempts_in_state("dialing", "unknown"):
            if await self.reconcile(attempt.attempt_id, tries=1) is not None:
                found += 1
            elif self._now_ms() - attempt.created_at_ms > 3_600_000:
                await self.store.mark_attempt(attempt.attempt_id, "failed", error_code="outcome_unknown",
                                              error_message="never found on the platform", now_ms=self._now_ms())
        for attempt in await self.store.attempts_in_state("pending"):
            # Never sent: a crash before the request left. Safe to close; the caller may try again.
            await self.store.mark_attempt(attempt.attempt_id, "failed", error_code="upstream_error",
                                          error_message="interrupted before dialling", now_ms=self._now_ms())
        return found


def _ok(result):
    """Unwrap a guardrail result: a `Refusal` becomes a raised `Refused`."""
    if isinstance(result, guardrails.Refusal):
        raise Refused(result.code, result.message, **result.details)
    return result


def _region_of(number: str) -> str | None:
    dest = guardrails.check_destination(number)
    return None if isinstance(dest, guardrails.Refusal) else dest.region


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _conflict(key: str | None) -> Refused:
    return Refused(
        "idempotency_conflict",
        f"Idempotency key {key!r} was already used with different parameters; use a new key for a new call.",
    )
