"""Retell's API surface (snake_case), as Retell's SDKs call it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import filters, rules, views
from .engine import Engine
from .errors import ApiError
from .parsing import is_int, opt_str, query_int, read_json

Wrap = Callable[[Callable[[Request], Awaitable[Response]]], Callable[[Request], Awaitable[Response]]]

RETELL_NAMES = {k: k for k in ("from_number", "to_number", "metadata", "retell_llm_dynamic_variables",
                               "custom_sip_headers", "ignore_e164_validation", "override_agent_version")}
_DEPRECATED_BINDINGS = ("inbound_agent_id", "outbound_agent_id", "inbound_agent_version", "outbound_agent_version")


def _country_list(body: dict[str, Any], key: str) -> list[str] | None:
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(c, str) and len(c) == 2 and c.isupper() for c in v):
        raise ApiError(400, f"{key} must be a list of ISO 3166-1 alpha-2 codes like 'US' (or null).")
    return v or None


def routes(engine: Engine, wrap: Wrap) -> list[Route]:
    def number_or_404(number: str) -> Any:
        rec = engine.numbers.get(number)
        if rec is None:
            raise ApiError(404, f"Phone number {number} not found.")
        return rec

    @wrap
    async def create_phone_call(request: Request) -> Response:
        body = await read_json(request)
        spec = rules.parse_common(body, RETELL_NAMES)
        spec.override_agent_id = opt_str(body, "override_agent_id", max_len=128)
        spec.agent_override = rules.check_agent_override(body.get("agent_override"), "agent_override")
        spec.idempotency_key = rules.check_idempotency_key(body)
        rec, replayed = engine.create_call(spec, "retell")
        return JSONResponse(rec.data, status_code=201, headers={"x-idempotent-replayed": "true"} if replayed else None)

    @wrap
    async def get_call(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        rec = engine.calls.get(call_id)
        if rec is None:
            raise ApiError(404, f"Call {call_id} not found.")
        return JSONResponse(rec.data)

    def _list(body: dict[str, Any], *, v3: bool) -> tuple[list[Any], bool, int]:
        match = filters.retell_predicate(body.get("filter_criteria"))
        matching = [r for r in engine.calls.values() if match(r)]
        limit = filters.check_limit(body.get("limit"), 50, 1000)
        key = opt_str(body, "pagination_key", max_len=200)
        after = None
        if key and v3:
            after = filters.decode_key(key)
        elif key:  # v2: the last call id of the previous page
            anchor = engine.calls.get(key)
            if anchor is None:
                raise ApiError(400, f"pagination_key {key!r} is not a call id.")
            after = filters.sort_key(anchor)
        skip = body.get("skip", 0) if v3 else 0
        if not is_int(skip) or skip < 0:
            raise ApiError(400, "skip must be a non-negative integer.")
        items, has_more = filters.page(matching, limit=limit, after=after,
                                       sort_order=body.get("sort_order") or "descending", skip=skip)
        return items, has_more, len(matching)

    @wrap
    async def list_calls_v3(request: Request) -> Response:
        body = await read_json(request, required=False)
        items, has_more, total = _list(body, v3=True)
        out: dict[str, Any] = {"items": [r.data for r in items], "has_more": has_more}
        if has_more:
            out["pagination_key"] = filters.encode_key(items[-1])
        if body.get("include_total") is True:
            out["total"] = total
        return JSONResponse(out)

    @wrap
    async def list_calls_v2(request: Request) -> Response:
        body = await read_json(request, required=False)
        items, _, _ = _list(body, v3=False)
        return JSONResponse([r.data for r in items])

    def _numbers_page(request: Request) -> tuple[list[Any], bool]:
        limit = query_int(request, "limit", 50, 1, 1000) or 50
        order = request.query_params.get("sort_order", "descending")
        if order not in ("ascending", "descending"):
            raise ApiError(400, "sort_order must be 'ascending' or 'descending'.")
        numbers = sorted(engine.numbers.values(), key=lambda n: n.id, reverse=order == "descending")
        key = request.query_params.get("pagination_key")
        if key:
            ids = [n.phone_number for n in numbers]
            if key not in ids:
                raise ApiError(400, f"pagination_key {key!r} is not a phone number of this listing.")
            numbers = numbers[ids.index(key) + 1:]
        return numbers[:limit], len(numbers) > limit

    @wrap
    async def list_phone_numbers_v2(request: Request) -> Response:
        items, has_more = _numbers_page(request)
        out: dict[str, Any] = {"items": [views.retell_number(n) for n in items], "has_more": has_more}
        if has_more:
            out["pagination_key"] = items[-1].phone_number
        return JSONResponse(out)

    @wrap
    async def list_phone_numbers(request: Request) -> Response:
        return JSONResponse([views.retell_number(n) for n in sorted(engine.numbers.values(), key=lambda n: n.id)])

    @wrap
    async def get_phone_number(request: Request) -> Response:
        return JSONResponse(views.retell_number(number_or_404(request.path_params["phone_number"])))

    @wrap
    async def update_phone_number(request: Request) -> Response:
        number = number_or_404(request.path_params["phone_number"])
        body = await read_json(request)
        for old in _DEPRECATED_BINDINGS:
            if old in body:
                raise ApiError(400, f"{old} is no longer supported (removed 2026-03-31); use "
                                    f"{old.split('_')[0]}_agents: [{{agent_id, agent_version?, weight: 1}}].")
        changes = {key: rules.parse_weighted(body[key], key, key.split("_")[0])
                   for key in ("inbound_agents", "outbound_agents") if key in body}
        extras: dict[str, Any] = {}
        for key in ("nickname", "inbound_webhook_url"):
            if key in body:
                extras[key] = opt_str(body, key, max_len=2048)
        for key in ("allowed_inbound_country_list", "allowed_outbound_country_list"):
            if key in body:
                extras[key] = _country_list(body, key)
        engine.set_bindings(number, changes)
        for key, value in extras.items():
            setattr(number, key, value)
        return JSONResponse(views.retell_number(number))

    def _agents_sorted(order: str) -> list[Any]:
        if order not in ("ascending", "descending"):
            raise ApiError(400, "sort_order must be 'ascending' or 'descending'.")
        return sorted(engine.agents.values(), key=lambda a: a.agent_id, reverse=order == "descending")

    @wrap
    async def list_agents_v2(request: Request) -> Response:
        body = await read_json(request, required=False)
        limit = query_int(request, "limit", None, 1, 1000) or filters.check_limit(body.get("limit"), 1000, 1000)
        order = request.query_params.get("sort_order") or body.get("sort_order") or "descending"
        agents = _agents_sorted(order)
        criteria = body.get("filter_criteria") or {}
        if not isinstance(criteria, dict):
            raise ApiError(400, "filter_criteria must be a JSON object.")
        channel = criteria.get("channel")
        if channel is not None and filters.typed(channel, "channel")("voice") is False:
            agents = []
        query = criteria.get("query")
        if isinstance(query, str) and query:
            agents = [a for a in agents if query.lower() in (a.agent_id + " " + a.latest.agent_name).lower()]
        key = request.query_params.get("pagination_key") or body.get("pagination_key")
        if key:
            ids = [a.agent_id for a in agents]
            if key not in ids:
                raise ApiError(400, f"pagination_key {key!r} is not an agent id of this listing.")
            agents = agents[ids.index(key) + 1:]
        page, has_more = agents[:limit], len(agents) > limit
        out: dict[str, Any] = {"items": [views.retell_agent_item(a) for a in page], "has_more": has_more}
        if has_more:
            out["pagination_key"] = page[-1].agent_id
        return JSONResponse(out)

    @wrap
    async def list_agents(request: Request) -> Response:
        limit = query_int(request, "limit", 1000, 1, 1000) or 1000
        agents = _agents_sorted("ascending")
        key = request.query_params.get("pagination_key")
        if key:
            ids = [a.agent_id for a in agents]
            agents = agents[ids.index(key) + 1:] if key in ids else []
        return JSONResponse([views.retell_agent(a, a.latest) for a in agents[:limit]])

    @wrap
    async def get_agent(request: Request) -> Response:
        agent = engine.agent_or_404(request.path_params["agent_id"])
        tag = request.query_params.get("version") in ("latest", "latest_published")
        version = None if tag else query_int(request, "version", None, 0)
        av = agent.get(version)
        if av is None:
            raise ApiError(404, f"Agent {agent.agent_id} has no version {version}.")
        return JSONResponse(views.retell_agent(agent, av))

    @wrap
    async def get_agent_versions(request: Request) -> Response:
        agent = engine.agent_or_404(request.path_params["agent_id"])
        return JSONResponse([views.retell_agent(agent, agent.versions[v]) for v in sorted(agent.versions)])

    @wrap
    async def get_concurrency(request: Request) -> Response:
        limit = engine.config.concurrency_limit
        base = min(20, limit)
        return JSONResponse({
            "current_concurrency": engine.active_calls(),
            "concurrency_limit": limit,
            "base_concurrency": base,
            "purchased_concurrency": limit - base,
            "concurrency_purchase_limit": max(100, limit),
            "remaining_purchase_limit": max(100, limit) - (limit - base),
            "concurrency_burst_enabled": False,
            "concurrency_burst_limit": 0,
            "reserved_inbound_concurrency": 0,
        })

    return [
        Route("/v2/create-phone-call", create_phone_call, methods=["POST"]),
        Route("/v2/get-call/{call_id}", get_call, methods=["GET"]),
        Route("/v3/list-calls", list_calls_v3, methods=["POST"]),
        Route("/v2/list-calls", list_calls_v2, methods=["POST"]),
        Route("/v2/list-phone-numbers", list_phone_numbers_v2, methods=["GET"]),
        Route("/list-phone-numbers", list_phone_numbers, methods=["GET"]),
        Route("/get-phone-number/{phone_number}", get_phone_number, methods=["GET"]),
        Route("/update-phone-number/{phone_number}", update_phone_number, methods=["PATCH"]),
        Route("/v2/list-agents", list_agents_v2, methods=["POST"]),
        Route("/list-agents", list_agents, methods=["GET"]),
        Route("/get-agent/{agent_id}", get_agent, methods=["GET"]),
        Route("/get-agent-versions/{agent_id}", get_agent_versions, methods=["GET"]),
        Route("/get-concurrency", get_concurrency, methods=["GET"]),
    ]
