"""The webhook receiver: `POST /webhooks/uponai` -> verify -> ingest (one transaction) -> 204.

Order of checks, each answered without storing anything:
  body larger than 1 MiB (Content-Length, or counted while streaming) -> 413
  `x-retell-signature` missing, malformed, outside ±5 min, or not matching the raw bytes -> 401
  content type not application/json, body not UTF-8, not JSON, not an object, unknown event name,
  no call.call_id, or a call object of the wrong shape -> 400
  storage failure (StoreUnavailable) -> 503, so the platform retries
Accepted (new or duplicate) -> 204 once committed. Announcing the change to MCP clients happens after
that, off the request path (`Feed`). Never a 500: anything unexpected is logged and answered 503.

Three ways to run it:
- `app(ingest, key)`: a Starlette app with just this route (the standalone receiver, `serving()`).
- `endpoint(target)`: the bare endpoint for `mcp.custom_route(WEBHOOK_PATH, methods=["POST"])` on the
  streamable HTTP app; `target()` returns `(ingest, key)` or None while the server is not up (503).
  `create_server` registers it already.
- `python -m uponai_mcp.events.receiver --db PATH --key KEY [--listen HOST:PORT]`: a receiver process
  over a store file (benchmarks, crash tests). It prints `listening <url>` on stdout once bound.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from uponai_mcp import signature
from uponai_mcp.events.ingest import Ingest
from uponai_mcp.models import CallEventType, WebhookEvent
from uponai_mcp.store import StoreUnavailable
from uponai_mcp.tcp import bind_tcp

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/uponai"
MAX_BODY_BYTES = 1 << 20
KNOWN_EVENTS = frozenset(e.value for e in CallEventType)

Target = tuple[Ingest, str]


class Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _reject(status: int, reason: str) -> Response:
    return JSONResponse({"error": reason}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise Rejected(400, "invalid Content-Length") from None
        if size > limit:
            raise Rejected(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise Rejected(413, f"body larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise Rejected(400, "client disconnected") from None
    return b"".join(chunks)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_event(body: bytes) -> dict[str, Any]:
    """The verified body as `{"event", "call"}` (the raw dicts, unknown fields kept); raises Rejected(400)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "body is not UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # a signed body the parser refuses is final: 400, never a retry
        raise Rejected(400, "body is not JSON") from None
    if not isinstance(data, dict):
        raise Rejected(400, "body is not a JSON object")
    event = data.get("event")
    if not isinstance(event, str) or event not in KNOWN_EVENTS:
        raise Rejected(400, "unknown event" if isinstance(event, str) else "missing event")
    call = data.get("call")
    if not isinstance(call, dict) or not isinstance(call.get("call_id"), str) or not call["call_id"].strip():
        raise Rejected(400, "missing call.call_id")
    try:
        WebhookEvent.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Rejected(400, f"invalid call object at {where}") from None
    return {"event": event, "call": call}


class Receiver:
    """The request handler; `target()` gives the ingest path and the signing key, or None (503)."""

    def __init__(self, target: Callable[[], Target | None], *, max_body_bytes: int = MAX_BODY_BYTES,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.target = target
        self.max_body_bytes = max_body_bytes
        self.clock_ms = clock_ms

    async def __call__(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except Rejected as r:
            log.info("webhook rejected (%d): %s", r.status, r.reason)
            return _reject(r.status, r.reason)
        except Exception:  # never a 500: the platform retries a 503
            log.exception("webhook handling failed unexpectedly")
            return _reject(503, "temporarily unable to store the event")

    async def _handle(self, request: Request) -> Response:
        body = await _read_body(request, self.max_body_bytes)
        target = self.target()
        if target is None:
            raise Rejected(503, "the server is not ready")
        ingest, key = target
        problem = signature.verify(key, body, request.headers.get(signature.HEADER), self.clock_ms())
        if problem is not None:
            raise Rejected(401, problem)
        if not _is_json(request.headers.get("content-type")):
            raise Rejected(400, "content type must be application/json")
        item = parse_event(body)
        try:
            await ingest.event(item, source="webhook")
        except StoreUnavailable as exc:
            log.warning("webhook %s for %s not stored, answering 503: %s", item["event"], item["call"]["call_id"],
                        exc)
            raise Rejected(503, "storage unavailable, retry later") from None
        except ValueError as exc:
            raise Rejected(400, str(exc)) from None
        return Response(status_code=204)


READY_WAIT_S = 10.0  # past this a webhook is answered 503 and the platform retries it


def endpoint(target: Callable[[], Target | None], *, ready: Callable[[], Awaitable[None]] | None = None,
             **kwargs: Any) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint for `mcp.custom_route(WEBHOOK_PATH, methods=["POST"])` or a Starlette Route. `ready`, when
    given, is awaited first (briefly: the services start in the background)."""
    receiver = Receiver(target, **kwargs)

    async def webhook(request: Request) -> Response:  # a function: Starlette treats other callables as ASGI
        if ready is not None:
            with anyio.move_on_after(READY_WAIT_S):
                await ready()
        return await receiver(request)

    return webhook


def app(ingest: Ingest, key: str, **kwargs: Any) -> Starlette:
    """A Starlette app serving only `POST /webhooks/uponai`."""
    fixed = (ingest, key)
    return Starlette(routes=[Route(WEBHOOK_PATH, endpoint(lambda: fixed, **kwargs), methods=["POST"])])


# --- running it under uvicorn -------------------------------------------------------------------


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The host process (the MCP server) owns SIGINT/SIGTERM; uvicorn must not take them.
        yield


def parse_listen(value: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port); raises ValueError."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


@asynccontextmanager
async def serving(asgi_app: Any, listen: str = "127.0.0.1:0", *, lifespan: bool = False) -> AsyncIterator[str]:
    """Serve `asgi_app` with uvicorn on `listen` (port 0: any free port) for the block; yields the base
    URL. Raises OSError at once when the address cannot be bound. `lifespan=True` runs the app's ASGI
    lifespan (needed for `mcp.streamable_http_app()`)."""
    host, port = parse_listen(listen)
    sock = bind_tcp(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(asgi_app, lifespan="on" if lifespan else "off", log_config=None, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2, backlog=2048)
    server = _Server(config)
    local = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # a URL this machine can use
    shown = f"[{local}]" if ":" in local else local
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(10):
                while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
                    await anyio.sleep(0.005)
            try:
                yield f"http://{shown}:{bound_port}"
            finally:
                server.should_exit = True
    finally:
        sock.close()


# --- a standalone receiver process ----------------------------------------------------------------


async def _main(db: str, key: str, listen: str) -> None:
    import sys

    from uponai_mcp.events.feed import Feed
    from uponai_mcp.store import Store

    store = await Store.open(db)
    try:
        feed = Feed()
        async with feed.running(), serving(app(Ingest(store, feed), key), listen) as url:
            print(f"listening {url}{WEBHOOK_PATH}", flush=True)
            sys.stdout.flush()
            await anyio.sleep_forever()
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Run the UponAI webhook receiver over a store file.")
    parser.add_argument("--db", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        anyio.run(_main, args.db, args.key, args.listen)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
