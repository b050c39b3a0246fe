"""MCP resources (application/json) and resource subscriptions for both protocol eras.

Resources:
  uponai://calls/{call_id}          the call: store snapshot (webhooks bring transcripts) merged with the API
  uponai://calls/{call_id}/events   the call's event log, in arrival order
  uponai://events/recent            the latest events across calls, newest first
  uponai://numbers                  the account's numbers and their agent bindings
  uponai://cps                      pacing state per provider scope
  uponai://policy                   the guardrail policy in force
  uponai://audit                    the decision log, newest first
`resources/list` also lists a concrete `uponai://calls/{id}` for each recent call; a new call announces
`resources/list_changed`.

Subscriptions: 2026-07-28 clients use `subscriptions/listen` (MCPServer serves it from the bus the
`Feed` publishes to); 2025-era clients use `resources/subscribe` / `resources/unsubscribe`, registered
here on the lowlevel server with our own session registry (`LegacySubscriptions`). Every stored event
announces `uponai://calls/{id}`, `uponai://calls/{id}/events` and `uponai://events/recent` on both.

Callee-controlled text (transcripts, summaries, tool-call logs) is sanitized and kept in the `untrusted`
fields, exactly as the tools return it (`views.CallDetails`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mcp.server import MCPServer, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.types import (
    EmptyResult,
    ListResourcesResult,
    PaginatedRequestParams,
    Resource,
    SubscribeRequestParams,
    UnsubscribeRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from uponai_mcp import guardrails
from uponai_mcp.api import errors as api_errors
from uponai_mcp.errors import Refused
from uponai_mcp.events.feed import RECENT_EVENTS_URI, LegacySubscriptions, call_events_uri
from uponai_mcp.models import Call, ProviderKind
from uponai_mcp.store import StoredEvent, StoreUnavailable
from uponai_mcp.tools.outreach import register_resources as outreach_resources
from uponai_mcp.tools.pacing import view as cps_view
from uponai_mcp.views import CallDetails, NumberView, call_uri

if TYPE_CHECKING:
    from uponai_mcp.services import Services

JSON = "application/json"
RECENT_EVENTS = 50
LISTED_CALLS = 50
AUDIT_ENTRIES = 100
MAX_TEXT = 2_000  # audit summaries and create errors are truncated to this many characters


def _services(ctx: Context) -> Services:
    return _require(ctx.request_context.lifespan_context)


def _require(hub: Any) -> Services:
    if hub is None:
        raise ResourceError("configuration_error: the server is not running yet.")
    try:
        return hub.require()
    except Refused as refusal:
        raise ResourceError(str(refusal)) from refusal


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _text(value: Any) -> str | None:
    return None if value is None else guardrails.sanitize_text(str(value), max_chars=MAX_TEXT)


def call_view(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A stored call object as the model reads it: CallDetails (untrusted text sanitized and labelled)."""
    try:
        details = CallDetails.of(Call.model_validate(snapshot))
    except ValidationError:  # a snapshot that no longer fits the model: show what is safe
        details = CallDetails.of(Call(call_id=str(snapshot.get("call_id")), call_status="error"))
    out = details.model_dump(mode="json")
    out["events_uri"] = call_events_uri(details.call_id)
    error = snapshot.get("create_error")
    if isinstance(error, dict):  # a create-call error recorded as a synthetic call
        out["create_error"] = {"code": _text(error.get("code")), "message": _text(error.get("message"))}
    return out


def event_view(e: StoredEvent, *, with_call: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "seq": e.seq, "event": e.event, "call_id": e.call_id, "source": e.source, "derived": e.derived,
        "received_at_ms": e.received_at_ms,
    }
    if with_call:
        out["call"] = call_view(e.call)
    else:
        out["call_status"] = _text(e.call.get("call_status"))
        out["disconnection_reason"] = _text(e.call.get("disconnection_reason"))
        out["resource_uri"] = call_uri(e.call_id)
    return out


def policy_view(svc: Services) -> dict[str, Any]:
    s = svc.settings
    dialer = svc.dialer
    countries = {kind.value: sorted(dialer.countries.allowed_for(kind)) for kind in ProviderKind}
    return {
        "mode": "sandbox" if s.sandbox else "live",
        "dialect": s.dialect,
        "read_only": s.read_only,
        "confirmation": s.effective_confirm,
        "countries_by_provider": countries,
        "operator_allowed_countries": None if s.allowed_countries is None else sorted(s.allowed_countries),
        "blocked_number_types": sorted(guardrails.DEFAULT_BLOCKED_TYPES),
        "emergency_numbers": "always refused",
        "calling_window": {"local_time": str(dialer.window), "enabled": dialer.window.enabled,
                           "applies_in": "every time zone of the callee's number"},
        "budgets": {
            "max_attempts_per_destination_24h": dialer.budgets.max_attempts_per_destination_24h,
            "max_calls_per_hour": dialer.budgets.max_calls_per_hour,
            "max_calls_per_day": dialer.budgets.max_calls_per_day,
        },
        "pacing_horizon_s": s.pacing_horizon_s,
        "outreach": {"do_not_call": "uponai://do-not-call (refused on every path)", "opt_out_detection":
                     s.opt_out_detection, "spend_cap_cents_per_day": s.max_spend_per_day_cents,
                     "spend_estimate_cents": s.spend_estimate_cents, "stale_grace_s": s.stale_grace_s},
        "call_events": svc.event_source(),
    }


def register(mcp: MCPServer, legacy: LegacySubscriptions, hub: Callable[[], Any]) -> None:
    """Register the resources, the concrete call listing and the legacy subscribe handlers.

    `hub()` returns the running ServiceHub: static resources get no request context in MCPServer.
    """

    @mcp.resource("uponai://calls/{call_id}", name="call", title="Call snapshot", mime_type=JSON,
                  description="A call: status, timing, recording, latency, analysis, cost, and the transcript "
                  "(callee-controlled data in `untrusted`). Subscribe to follow it live.")
    async def call_resource(call_id: str, ctx: Context) -> str:
        svc = _services(ctx)
        try:
            snapshot = await svc.calls.snapshot(call_id)
        except (api_errors.ApiError, StoreUnavailable) as exc:
            raise ResourceError(f"Cannot read call {call_id} now: {exc}") from exc
        if snapshot is None:
            raise ResourceNotFoundError(f"There is no call {call_id}.")
        return _json(call_view(snapshot))

    @mcp.resource("uponai://calls/{call_id}/events", name="call_events", title="Call event log",
                  mime_type=JSON, description="The call's webhook events (call_started, call_ended, "
                  "call_analyzed, call_failed) in arrival order, each with the call as it was then.")
    async def call_events_resource(call_id: str, ctx: Context) -> str:
        svc = _services(ctx)
        try:
            events = await svc.calls.events(call_id)
        except StoreUnavailable as exc:
            raise ResourceError(f"Cannot read the events of {call_id} now: {exc}") from exc
        if events is None:
            raise ResourceNotFoundError(f"There is no call {call_id} with events.")
        return _json({"call_id": call_id, "resource_uri": call_uri(call_id),
                      "events": [event_view(e, with_call=True) for e in events]})

    @mcp.resource(RECENT_EVENTS_URI, name="recent_events", title="Recent call events", mime_type=JSON,
                  description=f"The latest {RECENT_EVENTS} call events across all calls, newest first.")
    async def recent_events_resource() -> str:
        svc = _require(hub())
        try:
            events = await svc.calls.recent_events(RECENT_EVENTS)
        except StoreUnavailable as exc:
            raise ResourceError(f"Cannot read events now: {exc}") from exc
        return _json({"events": [event_view(e, with_call=False) for e in events]})

    @mcp.resource("uponai://numbers", name="numbers", title="Phone numbers and bindings", mime_type=JSON,
                  description="The account's numbers: provider (CPS scope) and inbound/outbound agents.")
    async def numbers_resource() -> str:
        svc = _require(hub())
        try:
            numbers = await svc.directory.numbers()
        except Refused as refusal:
            raise ResourceError(str(refusal)) from refusal
        return _json({"numbers": [NumberView.of(n).model_dump(mode="json") for n in numbers]})

    @mcp.resource("uponai://cps", name="cps", title="CPS pacing", mime_type=JSON,
                  description="Each provider scope's configured and effective calls per second and next slot.")
    async def cps_resource() -> str:
        svc = _require(hub())
        scopes = [cps_view(svc.pacer.get_state(k.value)).model_dump(mode="json") for k in ProviderKind]
        return _json({"scopes": scopes})

    @mcp.resource("uponai://policy", name="policy", title="Call policy", mime_type=JSON,
                  description="The guardrails in force: countries per provider, blocked number types, calling "
                  "window, budgets, confirmation mode, read-only.")
    async def policy_resource() -> str:
        return _json(policy_view(_require(hub())))

    @mcp.resource("uponai://audit", name="audit", title="Decision log", mime_type=JSON,
                  description=f"The latest {AUDIT_ENTRIES} decisions (allowed, refused, paced, confirmed, placed, "
                  "failed, ...), newest first.")
    async def audit_resource() -> str:
        svc = _require(hub())
        try:
            entries = await svc.calls.recent_audit(AUDIT_ENTRIES)
        except StoreUnavailable as exc:
            raise ResourceError(f"Cannot read the audit log now: {exc}") from exc
        return _json({"entries": [
            {"id": e.id, "at_ms": e.at_ms, "kind": e.kind, "decision": e.decision, "code": e.code,
             "summary": _text(e.summary), "details": e.details}
            for e in entries
        ]})

    outreach_resources(mcp, lambda: _require(hub()))  # do-not-call, spend, scheduled calls

    low = mcp._lowlevel_server

    async def list_resources(ctx: ServerRequestContext, params: PaginatedRequestParams) -> ListResourcesResult:
        if _is_legacy(ctx):
            legacy.seen(ctx.session)  # it lists resources: it wants resources/list_changed
        resources = await mcp.list_resources()
        hub = ctx.lifespan_context
        if getattr(hub, "services", None) is not None:
            try:
                records = await hub.services.calls.recent_calls(LISTED_CALLS)
            except StoreUnavailable:
                records = []
            for r in records:
                to = r.call.get("to_number") or "unknown number"
                resources.append(Resource(
                    uri=call_uri(r.call_id), name=f"call {r.call_id}", title=f"Call to {_text(to)}",
                    mime_type=JSON, description=f"{_text(r.status) or 'unknown'} call to {_text(to)}",
                ))
        return ListResourcesResult(resources=resources)

    async def subscribe(ctx: ServerRequestContext, params: SubscribeRequestParams) -> EmptyResult:
        legacy.subscribe(str(params.uri), ctx.session)
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext, params: UnsubscribeRequestParams) -> EmptyResult:
        legacy.unsubscribe(str(params.uri), ctx.session)
        return EmptyResult()

    low.add_request_handler("resources/list", PaginatedRequestParams, list_resources)
    low.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    low.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    _advertise_list_changed(mcp)


def _is_legacy(ctx: ServerRequestContext) -> bool:
    return ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS


def _advertise_list_changed(mcp: MCPServer) -> None:
    """2025-era sessions learn `resources.listChanged` from the initialize result, which the lowlevel
    server builds from NotificationOptions it defaults to all-False; we do send the notification, so
    advertise it. (2026-07-28 sessions derive it from `subscriptions/listen` being served.)"""
    low = mcp._lowlevel_server
    original = low.create_initialization_options

    def create_initialization_options(notification_options: NotificationOptions | None = None, *args: Any,
                                      **kwargs: Any):
        options = notification_options or NotificationOptions(resources_changed=True)
        return original(options, *args, **kwargs)

    low.create_initialization_options = create_initialization_options  # type: ignore[method-assign]
