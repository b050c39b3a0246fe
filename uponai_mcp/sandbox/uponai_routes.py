"""UponAI's native API (camelCase bodies, workspaceId), exactly as docs/wire.md lays it out."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import rules, views
from .engine import Engine
from .errors import ApiError
from .parsing import is_int, query_int, read_json, req_str

Wrap = Callable[[Callable[[Request], Awaitable[Response]]], Callable[[Request], Awaitable[Response]]]

NATIVE_NAMES = {
    "from_number": "fromNumber", "to_number": "toNumber", "metadata": "metadata",
    "retell_llm_dynamic_variables": "uponai_dynamic_variables", "custom_sip_headers": "customSipHeaders",
    "ignore_e164_validation": "ignoreE164Validation", "override_agent_version": "overrideAgentVersion",
}
# agentOverride groups: UponAI names the Retell LLM group `llm`.
_OVERRIDE_GROUPS = {"agent": "agent", "llm": "retell_llm", "conversationFlow": "conversation_flow"}
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
STATUSES = ("registered", "not_connected", "ongoing", "ended", "error")


def _snake(key: str) -> str:
    return _CAMEL.sub("_", key).lower()


def native_override(v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ApiError(400, "agentOverride must be a JSON object {agent?, llm?, conversationFlow?}.")
    out = {}
    for key, group in v.items():
        if key not in _OVERRIDE_GROUPS:
            raise ApiError(400, f"agentOverride.{key} is not supported; use agent, llm or conversationFlow.")
        if not isinstance(group, dict):
            raise ApiError(400, f"agentOverride.{key} must be a JSON object.")
        out[_OVERRIDE_GROUPS[key]] = {_snake(k): value for k, value in group.items()}
    return rules.check_agent_override(out, "agentOverride")


def _date(raw: str | None, name: str, *, end_of_day: bool) -> int | None:
    if not raw:
        return None
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO-8601 date or date-time, got {raw[:40]!r}.") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    if end_of_day and len(raw) == 10:  # a bare date: inclusive means the whole day
        dt += timedelta(days=1, milliseconds=-1)
    return int(dt.timestamp() * 1000)


def routes(engine: Engine, wrap: Wrap) -> list[Route]:
    def workspace(raw: Any, *, required: bool) -> None:
        if raw is None or raw == "":
            if required:
                raise ApiError(400, "workspaceId is required (GET /api/workspaces lists yours).")
            return
        if isinstance(raw, str):
            try:
                raw = int(raw)
            except ValueError:
                raise ApiError(400, "workspaceId must be an integer.") from None
        if not is_int(raw):
            raise ApiError(400, "workspaceId must be an integer.")
        if raw != engine.workspace_id:
            raise ApiError(403, f"Workspace {raw} is not accessible with this API key.")

    def query_workspace(request: Request, *, required: bool) -> None:
        workspace(request.query_params.get("workspaceId"), required=required)

    def call_or_404(call_id: str) -> Any:
        rec = engine.calls.get(call_id)
        if rec is None:
            raise ApiError(404, f"Call {call_id} not found.")
        return rec

    @wrap
    async def initiate(request: Request) -> Response:
        body = await read_json(request)
        workspace(body.get("workspaceId"), required=True)
        agent_id = req_str(body, "agentId", max_len=128)
        spec = rules.parse_common(body, NATIVE_NAMES)
        spec.override_agent_id = agent_id
        spec.agent_override = native_override(body.get("agentOverride"))
        rec, _ = engine.create_call(spec, "uponai")
        return JSONResponse({"success": True, "call_sid": rec.call_id,
                             "call": {"success": True, "call": views.native_call(rec)}})

    @wrap
    async def get_call(request: Request) -> Response:
        query_workspace(request, required=False)
        return JSONResponse({"success": True, "call": views.native_call(call_or_404(request.path_params["callId"]))})

    @wrap
    async def list_calls(request: Request) -> Response:
        q = request.query_params
        query_workspace(request, required=False)
        page = query_int(request, "page", 1, 1) or 1
        limit = query_int(request, "limit", 20, 1, 100) or 20
        status = q.get("status")
        if status and status not in STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(STATUSES)}.")
        since = _date(q.get("fromDate"), "fromDate", end_of_day=False)
        until = _date(q.get("toDate"), "toDate", end_of_day=True)
        calls = [r for r in engine.calls.values()
                 if (not q.get("agentId") or r.data["agent_id"] == q["agentId"])
                 and (not status or r.status == status)
                 and (since is None or r.sort_ms >= since) and (until is None or r.sort_ms <= until)]
        calls.sort(key=lambda r: (r.created_at_ms, r.seq), reverse=True)
        chunk = calls[(page - 1) * limit: page * limit]
        return JSONResponse({"success": True, "calls": [views.native_call(r) for r in chunk],
                             "pagination": {"page": page, "limit": limit, "total": len(calls)}})

    @wrap
    async def list_numbers(request: Request) -> Response:
        query_workspace(request, required=True)
        if request.path_params["accountSid"] != engine.account_sid:
            raise ApiError(404, f"Account {request.path_params['accountSid']} not found.")
        numbers = sorted(engine.numbers.values(), key=lambda n: n.id)
        return JSONResponse({"success": True, "numbers": [
            views.native_number(n, engine.account_sid, engine.workspace_id) for n in numbers]})

    @wrap
    async def bind_agents(request: Request) -> Response:
        body = await read_json(request)
        workspace(body.get("workspaceId"), required=True)
        account_sid = req_str(body, "accountSid", max_len=64)
        if account_sid != engine.account_sid:
            raise ApiError(404, f"Account {account_sid} not found.")
        for single in ("outboundAgentId", "inboundAgentId"):
            if single in body:
                raise ApiError(400, f"{single} is not supported by the sandbox; send "
                                    f"{single[:-7]}Agents: [{{agent_id, agent_version, weight: 1}}].")
        number = engine.numbers.get(request.path_params["number"])
        if number is None:
            raise ApiError(404, f"Phone number {request.path_params['number']} not found.")
        changes = {f"{d}_agents": rules.parse_weighted(body[f"{d}Agents"], f"{d}Agents", d)
                   for d in ("inbound", "outbound") if f"{d}Agents" in body}
        engine.set_bindings(number, changes)
        record = views.native_number(number, engine.account_sid, engine.workspace_id)
        return JSONResponse({
            "success": True,
            "message": "Phone number agent assignment updated.",
            "numbers": [record],
            "assignment": {"account_sid": engine.account_sid, "workspace_id": engine.workspace_id,
                           "number": number.phone_number, "agent_id": record["agent_id"],
                           "inbound_agent_id": record["inbound_agent_id"],
                           "inbound_agents": record["inbound_agents"], "outbound_agents": record["outbound_agents"]},
        })

    @wrap
    async def list_agents(request: Request) -> Response:
        query_workspace(request, required=True)
        limit = query_int(request, "limit", 1000, 1, 1000) or 1000
        agents = sorted(engine.agents.values(), key=lambda a: a.agent_id)[:limit]
        return JSONResponse({"success": True, "agents": [views.native_agent(a, a.latest) for a in agents]})

    @wrap
    async def get_agent(request: Request) -> Response:
        query_workspace(request, required=True)
        agent = engine.agent_or_404(request.path_params["agentId"])
        version = query_int(request, "version", None, 1)
        av = agent.get(version)
        if av is None:
            raise ApiError(404, f"Agent {agent.agent_id} has no version {version}.")
        return JSONResponse({"success": True, "agent": views.native_agent(agent, av)})

    @wrap
    async def concurrency(request: Request) -> Response:
        query_workspace(request, required=True)
        limit = engine.config.concurrency_limit
        return JSONResponse({"maxConcurrent": limit, "currentUsage": engine.active_calls(),
                             "purchasedConcurrency": max(0, limit - 20), "concurrencyPurchaseLimit": max(100, limit)})

    return [
        Route("/api/v1/calls/initiate", initiate, methods=["POST"]),
        Route("/api/v1/calls/{callId}", get_call, methods=["GET"]),
        Route("/api/v1/calls", list_calls, methods=["GET"]),
        Route("/api/numbers/{accountSid}", list_numbers, methods=["GET"]),
        Route("/api/numbers/{number}/agent", bind_agents, methods=["PUT"]),
        Route("/api/agents", list_agents, methods=["GET"]),
        Route("/api/agents/{agentId}", get_agent, methods=["GET"]),
        Route("/api/concurrency", concurrency, methods=["GET"]),
    ]
