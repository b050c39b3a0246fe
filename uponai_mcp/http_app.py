"""The streamable HTTP transport: the ASGI app behind `uponai-mcp serve --transport streamable-http`.

What a request meets, outermost first (`Gate`, then the SDK's app):
  GET|HEAD /healthz           200 {"status": "ok", ...} for load balancers: no token, no Host check, nothing secret
  POST /webhooks/uponai       the platform's webhooks (`events.receiver`, mounted by `create_server` as a custom
                              route): no MCP token and no Host check; the receiver verifies its own signature
  anything else               Host header not allowed -> 421, Origin header present and not allowed -> 403
                              (DNS-rebinding protection, on for every bind address); then, on /mcp, a missing or
                              unknown bearer token -> 401 whenever tokens are configured
The Host/Origin check runs before authentication, so a rebinding attempt gets 421/403 whether or not it
carries a token. The SDK repeats the same check inside the MCP endpoint (`TransportSecuritySettings`).

Tokens come from `UPONAI_MCP_TOKENS` (comma-separated) and go through the SDK's `TokenVerifier` +
`AuthSettings`; they are compared in constant time and never leave this process: the platform is called
with the server's own API key only. Bound to a loopback address the server may run without tokens; bound
anywhere else it refuses to start without one (`StartupRefused`, exit code 2 in the CLI).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from uponai_mcp import __version__
from uponai_mcp.config import Settings
from uponai_mcp.tcp import bind_tcp

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
HEALTH_PATH = "/healthz"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Host and Origin values a loopback client sends (any port); always allowed.
LOOPBACK_ALLOWED_HOSTS = ("127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*")
LOOPBACK_ALLOWED_ORIGINS = ("http://127.0.0.1", "http://127.0.0.1:*", "http://localhost", "http://localhost:*",
                            "http://[::1]", "http://[::1]:*")
MIN_TOKEN_CHARS = 16


class StartupRefused(Exception):
    """The HTTP transport must not start with this configuration; the message says what to change."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`: addresses only this machine can reach."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class StaticTokenVerifier:
    """`TokenVerifier` over a fixed set of bearer tokens, compared in constant time.

    Every configured token is compared (no early exit) on SHA-256 digests, so neither the length of a
    token nor which one matched shows in the timing. The `AccessToken` it returns carries a label
    (`token-1`, ...) instead of the token itself, so nothing downstream can forward or log the secret.
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = tuple(hashlib.sha256(t.encode()).digest() for t in tokens)
        if not self._digests:
            raise ValueError("StaticTokenVerifier needs at least one token")

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = hashlib.sha256(token.encode()).digest()
        matched = 0
        for index, expected in enumerate(self._digests, start=1):
            if hmac.compare_digest(digest, expected):
                matched = index
        if not matched:
            return None
        label = f"token-{matched}"
        return AccessToken(token=f"<{label}>", client_id=label, scopes=[])


@dataclass(frozen=True)
class HttpOptions:
    """Where and how the HTTP transport listens (from the CLI; allowed hosts/origins also from Settings)."""

    host: str = "127.0.0.1"
    port: int = 8000
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}{MCP_PATH}"


def _host_entries(value: str) -> list[str]:
    """'mcp.example.com' -> itself and any port; 'mcp.example.com:8443' -> just that; IPv6 in brackets."""
    value = value.strip()
    if not value or any(c in value for c in " \t/@?#") or "://" in value:
        raise StartupRefused(f"allowed host {value!r} is not a host name: give e.g. mcp.example.com or "
                             "mcp.example.com:8443 (no scheme, no path)")
    if ":" in value and not value.startswith("["):
        try:  # a bare IPv6 literal
            ipaddress.IPv6Address(value)
        except ValueError:
            return [value]  # host:port
        value = f"[{value}]"
    if value.startswith("[") and not value.endswith("]"):
        return [value]  # [v6]:port
    return [value, f"{value}:*"]


def _origin_entries(value: str) -> list[str]:
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")) or any(c in value for c in " \t?#"):
        raise StartupRefused(f"allowed origin {value!r} is not an origin: give e.g. https://app.example.com")
    return [value]


def transport_security(options: HttpOptions, settings: Settings | None = None) -> TransportSecuritySettings:
    """Host/Origin allowlists: loopback names always; the bind address when it is a specific address;
    `--allowed-host` / UPONAI_MCP_ALLOWED_HOSTS (and their http/https origins); `--allowed-origin` /
    UPONAI_MCP_ALLOWED_ORIGINS. Raises StartupRefused for a malformed entry."""
    configured_hosts = list(options.allowed_hosts) + list(getattr(settings, "mcp_allowed_hosts", ()) or ())
    configured_origins = list(options.allowed_origins) + list(getattr(settings, "mcp_allowed_origins", ()) or ())
    hosts: list[str] = list(LOOPBACK_ALLOWED_HOSTS)
    origins: list[str] = list(LOOPBACK_ALLOWED_ORIGINS)
    bind = options.host.strip().strip("[]")
    if bind not in ("", "0.0.0.0", "::") and not is_loopback(bind):
        configured_hosts.append(bind)
    for entry in configured_hosts:
        for host in _host_entries(entry):
            hosts.append(host)
            for scheme in ("https", "http"):
                origins.append(f"{scheme}://{host}")
    for entry in configured_origins:
        origins.extend(_origin_entries(entry))
    return TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                     allowed_hosts=list(dict.fromkeys(hosts)),
                                     allowed_origins=list(dict.fromkeys(origins)))


def check_startup(settings: Settings, options: HttpOptions) -> None:
    """Raise StartupRefused when serving `options` with `settings` would be unsafe."""
    if not options.loopback and not settings.mcp_tokens:
        raise StartupRefused(
            f"refusing to serve MCP over HTTP on {options.host} without authentication: set UPONAI_MCP_TOKENS "
            "to one or more comma-separated bearer tokens (e.g. the output of "
            "`python -c \"import secrets; print(secrets.token_urlsafe(32))\"`), or bind to 127.0.0.1.")
    if not 0 <= options.port <= 65535:
        raise StartupRefused(f"port {options.port} is out of range (0-65535)")
    transport_security(options, settings)  # malformed allowlist entries refuse here, before anything starts
    short = sum(1 for t in settings.mcp_tokens if len(t) < MIN_TOKEN_CHARS)
    if short:
        log.warning("%d of the UPONAI_MCP_TOKENS are shorter than %d characters: use long random tokens",
                    short, MIN_TOKEN_CHARS)


# A Host is a name or bracketed IPv6 literal with an optional numeric port; an Origin is scheme://host[:port].
# The SDK's `host:*` wildcard is a prefix match, so `localhost:80@evil.com` or `127.0.0.1:evil.com` would pass
# it: anything with userinfo, a path or a port that is not a number is refused before the allowlist is asked.
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")
_ORIGIN = re.compile(r"https?://" + _HOST.pattern)


def _malformed_host_or_origin(scope: Scope) -> tuple[int, str] | None:
    headers = Headers(scope=scope)
    host, origin = headers.get("host"), headers.get("origin")
    if host is not None and not _HOST.fullmatch(host):
        return 421, "Invalid Host header"
    if origin is not None and origin != "null" and not _ORIGIN.fullmatch(origin):
        return 403, "Invalid Origin header"
    return None


class Gate:
    """The outermost ASGI layer: `/healthz`, then Host/Origin checks for everything but the exempt paths.

    It also follows the ASGI lifespan so `/healthz` answers 503 until the services are up and while
    shutting down.
    """

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings,
                 exempt: Iterable[str] = (), info: Callable[[], dict[str, Any]] | None = None) -> None:
        self.app = app
        self.checker = TransportSecurityMiddleware(security)
        self.exempt = frozenset(exempt)
        self.info = info or (lambda: {})
        self.ready = False
        self.started_at: datetime | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), self._lifespan_send(send))
            return
        if scope["type"] == "http":
            path = scope.get("path", "")
            if path == HEALTH_PATH:
                await self._health(scope, send)
                return
            if path not in self.exempt:
                malformed = _malformed_host_or_origin(scope)
                if malformed is not None:
                    await PlainTextResponse(malformed[1], status_code=malformed[0])(scope, receive, send)
                    return
                refusal = await self.checker.validate_request(Request(scope), is_post=False)
                if refusal is not None:
                    await refusal(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                self.ready = False
            return message

        return wrapped

    def _lifespan_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.ready = True
            await send(message)

        return wrapped

    async def _health(self, scope: Scope, send: Send) -> None:
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            status, body = 405, {"error": "use GET"}
            headers = [(b"allow", b"GET, HEAD")]
        else:
            status = 200 if self.ready else 503
            body = {"status": "ok" if self.ready else "starting", "server": "uponai-mcp", "version": __version__,
                    **self.info()}
            headers = []
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
            (b"cache-control", b"no-store"), *headers]})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else data})


def build_app(settings: Settings, options: HttpOptions, *,
              wall: Callable[[], datetime] | None = None) -> Gate:
    """The whole HTTP app for `settings` (raises StartupRefused like `check_startup`)."""
    from uponai_mcp.events.receiver import WEBHOOK_PATH
    from uponai_mcp.server import create_server

    check_startup(settings, options)
    security = transport_security(options, settings)
    auth: dict[str, Any] = {}
    if settings.mcp_tokens:
        # Static bearer tokens, no OAuth authorization server: no resource_server_url, so no protected-
        # resource metadata is advertised and a 401 simply says a token is required.
        auth = {"token_verifier": StaticTokenVerifier(settings.mcp_tokens),
                "auth": AuthSettings(issuer_url=options.url().removesuffix(MCP_PATH), resource_server_url=None)}
    server = create_server(settings, wall=wall, **auth)
    # 2026-07-28 clients are served statelessly by the SDK (no session, any replica); 2025-era sessions are
    # bounded (count) and expire when idle, so memory stays flat however many clients come and go.
    inner = server.streamable_http_app(streamable_http_path=MCP_PATH, transport_security=security,
                                       host=options.host, session_idle_timeout=settings.mcp_session_idle_s,
                                       max_sessions=settings.mcp_max_sessions)
    mode = {"auth": "bearer" if settings.mcp_tokens else "none"}
    return Gate(inner, security, exempt=(WEBHOOK_PATH,), info=lambda: mode)


def serve(settings: Settings, options: HttpOptions) -> int:
    """Run the HTTP transport until SIGINT/SIGTERM. Returns the process exit code."""
    import uvicorn

    try:
        app = build_app(settings, options)
        sock = bind_tcp(options.host.strip("[]"), options.port)
    except StartupRefused as exc:
        print(f"uponai-mcp: {exc}", file=sys.stderr, flush=True)
        return 2
    except OSError as exc:
        print(f"uponai-mcp: cannot listen on {options.host}:{options.port}: {exc}", file=sys.stderr, flush=True)
        return 2
    url = options.url(sock.getsockname()[1])
    auth = "bearer token required" if settings.mcp_tokens else "no authentication (loopback only)"

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                print(f"uponai-mcp: MCP over streamable HTTP at {url} ({auth}); health check at "
                      f"{url.removesuffix(MCP_PATH)}{HEALTH_PATH}", file=sys.stderr, flush=True)

    # log_config=None keeps the CLI's stderr logging; no access log (paths only, but noisy).
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=5,
                            server_header=False)
    try:
        _Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0
