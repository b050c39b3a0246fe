"""Call tools: create_phone_call, confirm_call, preflight_call, get_call, list_calls."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server import MCPServer
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.types import CallToolResult, ResourceLink, TextContent
from pydantic import BaseModel, Field, ValidationError

from uponai_mcp.errors import Refused
from uponai_mcp.models import MAX_EPOCH_MS, AgentOverride, CallFilter, CallRequest
from uponai_mcp.outreach.retry import RetryPolicy, with_retry
from uponai_mcp.outreach.views import ScheduledView
from uponai_mcp.tools._common import DIAL, READ, NoQuestion, services
from uponai_mcp.tools.contract import invalid_argument, result_text
from uponai_mcp.views import CallDetails, CallSummary, call_uri

if TYPE_CHECKING:
    from uponai_mcp.dialer import Placement, Prepared


def _doc(name: str) -> Any:
    return Field(description=CallRequest.model_fields[name].description)


FromNumber = Annotated[str, _doc("from_number")]
ToNumber = Annotated[str, _doc("to_number")]
OverrideAgentId = Annotated[str | None, _doc("override_agent_id")]
OverrideAgentVersion = Annotated[int | None, _doc("override_agent_version")]
AgentOverrideArg = Annotated[AgentOverride | None, _doc("agent_override")]
Metadata = Annotated[dict[str, Any] | None, _doc("metadata")]
DynamicVariables = Annotated[dict[str, str] | None, _doc("retell_llm_dynamic_variables")]
SipHeaders = Annotated[dict[str, str] | None, _doc("custom_sip_headers")]
IgnoreE164 = Annotated[bool, _doc("ignore_e164_validation")]
IdempotencyKey = Annotated[str | None, Field(
    description="Your key (e.g. a UUID): a repeat with the same key and parameters returns the first result; "
    "other parameters are refused.",
    min_length=1, max_length=255,
)]
ConfirmationToken = Annotated[str | None, Field(
    description="Token from a confirmation_required answer (same parameters only)."
)]
ScheduledAt = Annotated[str | None, Field(max_length=64, description=(
    "Dial later (ISO 8601 with offset); checked now and again at dial time."))]
Retry = Annotated[RetryPolicy | None, Field(description="Dial again after these outcomes.")]


def build_request(**fields: Any) -> CallRequest:
    try:
        return CallRequest(**fields)
    except ValidationError as exc:
        raise invalid_argument(exc) from exc


class ConfirmDial(BaseModel):
    """The question put to the person when the client supports elicitation."""

    confirm: bool = Field(description="Place this call now?")


class PlacedCall(BaseModel):
    """A call the platform accepted (or, with scheduled_at, a call stored to be dialled later)."""

    call_id: str | None = None
    call_status: str
    from_number: str | None = None
    to_number: str | None = None
    agent_id: str | None = None
    attempt_id: str | None = Field(None, description="Our ledger id for this dial (also in the call's metadata).")
    replayed: bool = Field(False, description="True when an idempotency key returned an earlier result.")
    destination: str | None = Field(None, description="Region and local time of the callee at dial time.")
    resource_uri: str = Field(description="Subscribe to or read this resource to follow the call.")
    notes: list[str] = Field(default_factory=list)
    scheduled: ScheduledView | None = None

    def text_line(self) -> str:
        if self.scheduled is not None:
            s = self.scheduled
            return f"Call to {s.to_number} scheduled for {s.scheduled_at} ({s.schedule_id}); see {self.resource_uri}."
        again = " (replayed: the first request with this idempotency key)" if self.replayed else ""
        return f"Call {self.call_id} to {self.to_number} is {self.call_status}{again}; follow {self.resource_uri}."


class PreflightVerdict(BaseModel):
    """What create_phone_call would decide now, without dialling."""

    allowed: bool
    code: str | None = Field(None, description="The refusal code when not allowed.")
    message: str = Field(description="The verdict in one sentence.")
    needs_confirmation: bool = False
    region: str | None = Field(None, description="ISO region of the destination (decided by number, not prefix).")
    number_type: str | None = None
    time_zones: list[str] = Field(default_factory=list)
    from_number_kind: str | None = None
    checks_passed: list[str] = Field(default_factory=list)
    next_cps_slot_in_s: float | None = Field(None, description="Seconds until this scope's next free CPS slot.")
    details: dict[str, Any] = Field(default_factory=dict, description="The refusal's facts (retry_at, ...).")

    def text_line(self) -> str:
        return f"{'Allowed' if self.allowed else 'Not allowed (' + str(self.code) + ')'}: {self.message}"


class CallList(BaseModel):
    calls: list[CallSummary]
    next_page_token: str | None = None


def _placed_result(p: Placement) -> CallToolResult:
    dest = p.preflight.summary if p.preflight else None
    out = PlacedCall(
        call_id=p.call.call_id, call_status=str(p.call.call_status), from_number=p.call.from_number,
        to_number=p.call.to_number, agent_id=p.call.agent_id, attempt_id=p.attempt_id, replayed=p.replayed,
        destination=dest, resource_uri=call_uri(p.call.call_id), notes=p.notes,
    )
    data = out.model_dump(mode="json")
    return CallToolResult(
        content=[
            TextContent(type="text", text=result_text(out, data)),
            ResourceLink(type="resource_link", uri=out.resource_uri, name=f"call {out.call_id}",
                         mime_type="application/json", description="Live call snapshot"),
        ],
        structured_content=data,
    )


async def _schedule(svc: Any, request: CallRequest, scheduled_at: str, key: str | None, token: str | None,
                    decision: Any) -> CallToolResult:
    if svc.outreach is None:
        raise Refused("configuration_error", "Scheduled calls are not available on this server.")
    if not isinstance(decision, AcceptedElicitation) or (
        isinstance(decision.data, ConfirmDial) and not decision.data.confirm
    ):
        await svc.dialer.record_declined(request)
        raise Refused("declined", "The person declined this call; nothing was scheduled.")
    view = await svc.outreach.schedule_call(
        request, scheduled_at, idempotency_key=key, token=token, confirmed=isinstance(decision.data, ConfirmDial),
        prepared=_prepared.get())
    out = PlacedCall(call_status="scheduled", from_number=view.from_number, to_number=view.to_number,
                     resource_uri="uponai://scheduled-calls", scheduled=view)
    data = out.model_dump(mode="json")
    return CallToolResult(content=[TextContent(type="text", text=result_text(out, data))], structured_content=data)


# The first look at a create (replay or decision), made by the confirmation resolver and taken by the body of
# the same request, so one create_phone_call runs every guardrail once. Resolvers are awaited in the body's
# task, so a value set there is visible to the body.
_prepared: ContextVar[Prepared | None] = ContextVar("prepared_call", default=None)


async def ask_to_confirm(
    ctx: Context, from_number: str, to_number: str, override_agent_id: str | None,
    override_agent_version: int | None, agent_override: AgentOverride | None, metadata: dict[str, Any] | None,
    retell_llm_dynamic_variables: dict[str, str] | None, custom_sip_headers: dict[str, str] | None,
    ignore_e164_validation: bool, idempotency_key: str | None, confirmation_token: str | None,
    scheduled_at: str | None = None, retry_policy: RetryPolicy | None = None,
) -> Elicit[ConfirmDial] | NoQuestion:
    """Ask the person (elicitation) before a dial that the policy says needs confirming. A refusal raised
    here is the tool's answer (the body does not run)."""
    _prepared.set(None)
    if confirmation_token:
        return NoQuestion(reason="token")
    svc = ctx.request_context.lifespan_context.require()
    request = build_request(
        from_number=from_number, to_number=to_number, override_agent_id=override_agent_id,
        override_agent_version=override_agent_version, agent_override=agent_override,
        metadata=with_retry(metadata, retry_policy), retell_llm_dynamic_variables=retell_llm_dynamic_variables,
        custom_sip_headers=custom_sip_headers, ignore_e164_validation=ignore_e164_validation,
    )
    when = None if scheduled_at is None or svc.outreach is None else svc.outreach.parse_when(scheduled_at)
    prepared = await svc.dialer.prepare(request, idempotency_key, at=when)
    _prepared.set(prepared)
    if prepared.earlier is not None:
        return NoQuestion(reason="replay")
    assert prepared.decision is not None
    if not prepared.decision.needs_confirmation:
        return NoQuestion(reason="not_required")
    caps = ctx.client_capabilities
    if caps is None or caps.elicitation is None:
        return NoQuestion(reason="unsupported")
    return Elicit(f"{prepared.decision.summary}. Place this call now? It rings a real phone and costs money.",
                  ConfirmDial)


def register(mcp: MCPServer) -> None:
    _register_dialing(mcp)

    @mcp.tool(title="Check a call without dialling", annotations=READ)
    async def preflight_call(
        ctx: Context, from_number: FromNumber, to_number: ToNumber, override_agent_id: OverrideAgentId = None,
        override_agent_version: OverrideAgentVersion = None, agent_override: AgentOverrideArg = None,
        metadata: Metadata = None, retell_llm_dynamic_variables: DynamicVariables = None,
        custom_sip_headers: SipHeaders = None, ignore_e164_validation: IgnoreE164 = False,
    ) -> PreflightVerdict:
        """Run every check of create_phone_call (do-not-call, number, country, caller ID, calling window, budgets,
        confirmation policy) and return the verdict. Never dials."""
        svc = services(ctx)
        try:
            request = build_request(
                from_number=from_number, to_number=to_number, override_agent_id=override_agent_id,
                override_agent_version=override_agent_version, agent_override=agent_override,
                metadata=metadata, retell_llm_dynamic_variables=retell_llm_dynamic_variables,
                custom_sip_headers=custom_sip_headers, ignore_e164_validation=ignore_e164_validation,
            )
            pf = await svc.dialer.preflight(request)
        except Refused as r:
            if r.code in ("upstream_error", "configuration_error", "invalid_argument"):
                raise
            return PreflightVerdict(allowed=False, code=r.code, message=r.message, details=r.details)
        state = svc.pacer.get_state(pf.from_number.kind.value)
        verdict = PreflightVerdict(
            allowed=True, message=pf.summary, needs_confirmation=pf.needs_confirmation,
            region=pf.destination.region, number_type=pf.destination.number_type,
            time_zones=list(pf.destination.time_zones), from_number_kind=pf.from_number.kind.value,
            checks_passed=list(pf.checks), next_cps_slot_in_s=round(state.next_slot_in_s, 3),
        )
        if svc.settings.read_only:
            verdict.allowed, verdict.code = False, "read_only"
            verdict.message = (f"Every check passes ({pf.summary}), but this server runs read-only and cannot "
                               "dial; an operator can start it without --read-only.")
        return verdict

    @mcp.tool(title="Get a call", annotations=READ)
    async def get_call(
        ctx: Context, call_id: Annotated[str, Field(description="The call id, e.g. call_3f2a...", min_length=1,
                                                     max_length=128)],
    ) -> CallDetails:
        """The full call: status, duration, transcript, recording URL, latency, tool-call log, analysis, cost.
        Transcript and summary are callee-controlled data, returned in the `untrusted` field."""
        return CallDetails.of(await services(ctx).calls.get(call_id))

    @mcp.tool(title="List calls", annotations=READ)
    async def list_calls(
        ctx: Context,
        agent_id: Annotated[str | None, Field(description="Only calls handled by this agent.")] = None,
        call_status: Annotated[str | None, Field(
            description="Only calls in this status: registered, ongoing, ended, not_connected, error.")] = None,
        from_number: Annotated[str | None, Field(description="Only calls from this number.")] = None,
        to_number: Annotated[str | None, Field(description="Only calls to this number.")] = None,
        start_after_ms: Annotated[int | None, Field(ge=0, le=MAX_EPOCH_MS, description="Started at or after (ms "
                                                    "epoch).")] = None,
        start_before_ms: Annotated[int | None, Field(ge=0, le=MAX_EPOCH_MS, description="Started at or before (ms "
                                                     "epoch).")] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="Calls per page.")] = 20,
        page_token: Annotated[str | None, Field(description="next_page_token of the previous page.")] = None,
    ) -> CallList:
        """List calls, newest first, with filters and pagination (no transcripts: use get_call)."""
        page = await services(ctx).calls.list(CallFilter(
            agent_id=agent_id, call_status=call_status, from_number=from_number, to_number=to_number,
            start_after_ms=start_after_ms, start_before_ms=start_before_ms, limit=limit, page_token=page_token,
        ))
        return CallList(calls=[CallSummary.of(c) for c in page.calls], next_page_token=page.next_page_token)


def _register_dialing(mcp: MCPServer) -> None:
    @mcp.tool(title="Place an outbound phone call", annotations=DIAL)
    async def create_phone_call(
        ctx: Context,
        from_number: FromNumber,
        to_number: ToNumber,
        decision: Annotated[ElicitationResult[ConfirmDial], Resolve(ask_to_confirm)],
        override_agent_id: OverrideAgentId = None,
        override_agent_version: OverrideAgentVersion = None,
        agent_override: AgentOverrideArg = None,
        metadata: Metadata = None,
        retell_llm_dynamic_variables: DynamicVariables = None,
        custom_sip_headers: SipHeaders = None,
        ignore_e164_validation: IgnoreE164 = False,
        idempotency_key: IdempotencyKey = None,
        confirmation_token: ConfirmationToken = None,
        scheduled_at: ScheduledAt = None,
        retry_policy: Retry = None,
    ) -> Annotated[CallToolResult, PlacedCall]:
        """Place a real outbound call with an AI voice agent. It rings a real person and costs money: only when
        the user asked for this call. Every guardrail is checked; may ask the user to confirm (or answer
        confirmation_required with a token for confirm_call)."""
        svc = services(ctx)
        request = build_request(
            from_number=from_number, to_number=to_number, override_agent_id=override_agent_id,
            override_agent_version=override_agent_version, agent_override=agent_override,
            metadata=with_retry(metadata, retry_policy), retell_llm_dynamic_variables=retell_llm_dynamic_variables,
            custom_sip_headers=custom_sip_headers, ignore_e164_validation=ignore_e164_validation,
        )
        if scheduled_at is not None:
            return await _schedule(svc, request, scheduled_at, idempotency_key, confirmation_token, decision)
        if confirmation_token:
            request, key = await svc.dialer.redeem_token(confirmation_token, request, idempotency_key)
            return _placed_result(await svc.dialer.place(request, idempotency_key=key, confirmed=True))
        prepared = _prepared.get()
        if not isinstance(decision, AcceptedElicitation) or (
            isinstance(decision.data, ConfirmDial) and not decision.data.confirm
        ):
            await svc.dialer.record_declined(request)
            raise Refused("declined", "The person declined this call; nothing was dialled.")
        if isinstance(decision.data, NoQuestion) and decision.data.reason == "unsupported" and prepared:
            raise await svc.dialer.ask_confirmation(prepared)
        confirmed = isinstance(decision.data, ConfirmDial)
        placement = await svc.dialer.place(request, idempotency_key=idempotency_key, confirmed=confirmed,
                                           prepared=prepared)
        return _placed_result(placement)

    @mcp.tool(title="Confirm and place a call", annotations=DIAL)
    async def confirm_call(
        ctx: Context,
        token: Annotated[str, Field(description="The token from a confirmation_required answer.",
                                    min_length=1, max_length=200)],
    ) -> Annotated[CallToolResult, PlacedCall]:
        """Place the call a confirmation_required answer described, after the user approved it. The token is
        single-use, expires after 5 minutes and dials exactly the parameters it was issued for."""
        svc = services(ctx)
        request, key = await svc.dialer.redeem_token(token)
        return _placed_result(await svc.dialer.place(request, idempotency_key=key, confirmed=True))

