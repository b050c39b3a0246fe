"""/_sandbox/*: steer the simulation (faults, CPS, settings, reset) and look inside it (calls, stats)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .config import SCOPES
from .engine import Engine
from .errors import ApiError, error_response
from .parsing import is_int, read_json
from .wav import make_wav

Wrap = Callable[[Callable[[Request], Awaitable[Response]]], Callable[[Request], Awaitable[Response]]]


def routes(engine: Engine, wrap: Wrap) -> list[Route]:
    def settings() -> dict[str, Any]:
        c = engine.config
        return {"speed": c.speed, "seed": c.seed, "webhook_url": c.webhook_url, "call_failed_events": c.call_failed_events,
                "concurrency_limit": c.concurrency_limit, "cps": dict(c.cps), "base_url": engine.base_url,
                "workspace_id": engine.workspace_id, "account_sid": engine.account_sid}

    @wrap
    async def faults(request: Request) -> Response:
        if request.method == "POST":
            engine.faults.add(await read_json(request))
        elif request.method == "DELETE":
            engine.faults.queue.clear()
        return JSONResponse({"faults": engine.faults.describe()})

    @wrap
    async def webhook_faults(request: Request) -> Response:
        if request.method == "POST":
            engine.deliverer.faults.set(await read_json(request))
        return JSONResponse(engine.deliverer.faults.describe())

    @wrap
    async def cps(request: Request) -> Response:
        if request.method == "POST":
            body = await read_json(request)
            for scope, value in body.items():
                if scope not in SCOPES:
                    raise ApiError(400, f"unknown scope {scope!r}; use {', '.join(SCOPES)}.")
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 10_000:
                    raise ApiError(400, f"{scope} must be a number of calls per second > 0.")
            engine.config.cps.update(body)
        return JSONResponse(dict(engine.config.cps))

    @wrap
    async def config(request: Request) -> Response:
        if request.method == "POST":
            body = await read_json(request)
            unknown = set(body) - {"webhook_url", "call_failed_events", "concurrency_limit"}
            if unknown:
                raise ApiError(400, f"unknown setting(s): {', '.join(sorted(unknown))}.")
            url = body.get("webhook_url", engine.config.webhook_url)
            if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
                raise ApiError(400, "webhook_url must be an http(s) URL or null.")
            failed = body.get("call_failed_events", engine.config.call_failed_events)
            if not isinstance(failed, bool):
                raise ApiError(400, "call_failed_events must be a boolean.")
            limit = body.get("concurrency_limit", engine.config.concurrency_limit)
            if not is_int(limit) or limit < 0:
                raise ApiError(400, "concurrency_limit must be a non-negative integer.")
            engine.config.webhook_url, engine.config.call_failed_events = url, failed
            engine.config.concurrency_limit = limit
        return JSONResponse(settings())

    @wrap
    async def calls(request: Request) -> Response:
        return JSONResponse({"calls": [
            {**r.data, "created_at_ms": r.created_at_ms, "scope": r.scope, "sandbox_outcome": r.outcome,
             "created_via": r.dialect, "webhook_events": list(r.events)}
            for r in engine.calls.values()]})

    @wrap
    async def stats(request: Request) -> Response:
        return JSONResponse(engine.stats())

    @wrap
    async def reset(request: Request) -> Response:
        engine.reset()
        return JSONResponse({"ok": True, **settings()})

    async def recording(request: Request) -> Response:
        # No auth: recording URLs are handed to people and players, like the platform's signed URLs.
        call_id = request.path_params["call_id"]
        rec = engine.calls.get(call_id)
        if rec is None or not rec.data.get("recording_url"):
            return error_response("retell", 404, f"No recording for call {call_id}.")
        return Response(make_wav(call_id), media_type="audio/wav")

    return [
        Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/webhook-faults", webhook_faults, methods=["GET", "POST"]),
        Route("/_sandbox/cps", cps, methods=["GET", "POST"]),
        Route("/_sandbox/config", config, methods=["GET", "POST"]),
        Route("/_sandbox/calls", calls, methods=["GET"]),
        Route("/_sandbox/stats", stats, methods=["GET"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/recordings/{call_id}.wav", recording, methods=["GET"]),
    ]
