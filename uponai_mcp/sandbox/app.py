"""The Starlette app: both dialects and the control routes over one Engine, with auth, faults and
error shapes applied uniformly. Nothing a client sends may produce a 500 or stop the server."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import SandboxConfig
from .engine import Engine
from .errors import ApiError, dialect_of, error_body, error_response
from .parsing import MAX_BODY_BYTES

log = logging.getLogger("uponai_mcp.sandbox")

Handler = Callable[[Request], Awaitable[Response]]


def check_auth(request: Request, engine: Engine) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), engine.config.api_key.encode()):
        raise ApiError(401, "API key is missing or invalid.")


def platform(engine: Engine, dialect: str) -> Callable[[Handler], Handler]:
    """Wrap a platform route: count it, authenticate, apply injected faults, shape errors."""

    def decorate(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            engine.counters["requests"] += 1
            engine.counters[f"requests.{dialect}"] += 1
            engine.counters[f"route.{handler.__name__}"] += 1
            try:
                check_auth(request, engine)
                fault = engine.faults.take(request.url.path)
                if fault is not None:
                    engine.counters[f"fault.{fault.kind}"] += 1
                    if fault.kind == "hang":
                        await engine.hang(fault.hang_s)
                        raise ApiError(504)
                    if fault.kind == "429":
                        s = fault.retry_after_s
                        raise ApiError(429, headers={"Retry-After": str(s), "retry-after-ms": str(s * 1000)})
                    if fault.kind in ("500", "503"):
                        raise ApiError(int(fault.kind))
                response = await handler(request)
                if fault is not None and fault.kind == "hang_after_create":
                    await engine.hang(fault.hang_s)  # the work is done; the answer never arrives in time
                    raise ApiError(504)
                return response
            except ApiError as exc:
                return error_response(dialect, exc.status, exc.message, exc.headers)

        endpoint.__name__ = handler.__name__
        return endpoint

    return decorate


def control(engine: Engine) -> Callable[[Handler], Handler]:
    """Wrap a /_sandbox route: Bearer key required, Retell error shape, no faults, not counted."""

    def decorate(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                check_auth(request, engine)
                return await handler(request)
            except ApiError as exc:
                return error_response("retell", exc.status, exc.message, exc.headers)

        endpoint.__name__ = handler.__name__
        return endpoint

    return decorate


class _BodyTooLarge(Exception):
    pass


class GuardMiddleware:
    """Outermost safety net: 1 MiB body limit (413) and a shaped 500 for anything unexpected."""

    def __init__(self, app: ASGIApp, engine: Engine) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        dialect = dialect_of(scope.get("path", ""))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.engine.base_url is None and headers.get("host"):
            self.engine.base_url = f"{scope.get('scheme', 'http')}://{headers['host']}"
        try:
            declared = int(headers.get("content-length", "0"))
        except ValueError:
            await _send_json(send, 400, error_body(dialect, "Invalid Content-Length header."))
            return
        if declared > MAX_BODY_BYTES:
            await _send_json(send, 413, error_body(dialect, "Request body too large (the limit is 1 MiB)."))
            return
        started = False
        received = 0

        async def guarded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise _BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracked_send)
        except _BodyTooLarge:
            if not started:
                await _send_json(send, 413, error_body(dialect, "Request body too large (the limit is 1 MiB)."))
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _send_json(send, 500, error_body(dialect, "An unexpected server error occurred."))


async def _send_json(send: Send, status: int, body: dict[str, object]) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    dialect = dialect_of(request.url.path)
    if exc.status_code == 404:
        message = f"The requested resource was not found: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    return error_response(dialect, exc.status_code, message, exc.headers)


def create_app(config: SandboxConfig) -> Starlette:
    from . import control_routes, retell_routes, testing_routes, uponai_routes

    engine = Engine(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.aclose()  # pending lifecycle timers and deliveries stop with the app

    routes = (retell_routes.routes(engine, platform(engine, "retell"))
              + uponai_routes.routes(engine, platform(engine, "uponai"))
              + testing_routes.retell_routes(engine, platform(engine, "retell"))
              + testing_routes.native_routes(engine, platform(engine, "uponai"))
              + control_routes.routes(engine, control(engine)))
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    app.add_middleware(GuardMiddleware, engine=engine)
    app.state.engine = engine
    return app
