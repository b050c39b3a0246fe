"""One HTTP session to the platform: auth, timeouts, retries by class, errors by status.

Knows nothing of dialects: it sends a method/path/body and returns decoded JSON or raises a
typed `ApiError`. A non-idempotent request (create-call) whose outcome is ambiguous raises
`Ambiguous`, which the client turns into `OutcomeUnknown` with the attempt's details.
"""

from __future__ import annotations

import json as jsonlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import httpx

from .errors import (
    ApiError,
    ConfigurationError,
    ConnectError,
    InvalidRequest,
    RateLimited,
    ServerError,
    error_for_status,
    platform_message,
)
from .retry import NOT_SENT_ERRORS, RETRYABLE_STATUSES, backoff_delay, parse_retry_after

log = logging.getLogger("uponai_mcp.api")

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)


class Ambiguous(ApiError):
    """A non-idempotent request was (maybe) executed but we did not get a definite answer."""

    def __init__(self, message: str, status: int | None, *, cause: str, sent_at_ms: int) -> None:
        super().__init__(message, status)
        self.cause = cause
        self.sent_at_ms = sent_at_ms


def now_ms() -> int:
    return int(time.time() * 1000)


class Transport:
    def __init__(
        self, *, base_url: str, api_key: str, timeout: httpx.Timeout | None = None, max_retries: int = 3,
        backoff_base_s: float = 0.25, backoff_cap_s: float = 8.0, retry_after_cap_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None, rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout or DEFAULT_TIMEOUT
        self.max_retries = max(0, max_retries)
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.retry_after_cap_s = retry_after_cap_s
        self.rng = rng or random.Random()
        self.sleep = sleep
        # The key lives only in the session's default headers: never in a repr, never logged.
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=self.timeout, transport=transport,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json",
                     "User-Agent": "uponai-mcp"},
        )

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    def _backoff(self, retry: int) -> float:
        return backoff_delay(retry, base=self.backoff_base_s, cap=self.backoff_cap_s, rng=self.rng)

    async def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
        idempotent: bool = True, http_timeout: httpx.Timeout | None = None, retry_rate_limited: bool = True,
    ) -> Any:
        """Send with retries by class; return the decoded JSON body (None when empty)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        what = f"{method} {path}"
        retry = 0
        while True:
            sent_at = now_ms()
            try:
                resp = await self._http.request(
                    method, path, params=query or None, json=json, timeout=http_timeout or self.timeout,
                )
            except NOT_SENT_ERRORS as exc:  # class (a): never reached the platform
                if retry < self.max_retries:
                    delay = self._backoff(retry)
                    log.warning("%s: cannot connect (%s), retry %d in %.2fs", what, type(exc).__name__, retry + 1, delay)
                    await self.sleep(delay)
                    retry += 1
                    continue
                raise ConnectError(f"cannot reach the platform at {self.base_url}: {_describe(exc)}") from exc
            except httpx.UnsupportedProtocol as exc:
                raise ConfigurationError(f"bad base URL {self.base_url!r}: {exc}") from exc
            except httpx.TransportError as exc:  # class (b): sent, then timed out or lost
                cause = _describe(exc)
                if not idempotent:
                    raise Ambiguous(f"no answer to {what}: {cause}", None, cause=cause, sent_at_ms=sent_at) from exc
                if retry < self.max_retries:
                    delay = self._backoff(retry)
                    log.warning("%s: %s, retry %d in %.2fs", what, cause, retry + 1, delay)
                    await self.sleep(delay)
                    retry += 1
                    continue
                raise ServerError(f"no answer from the platform to {what}: {cause}") from exc

            status = resp.status_code
            if status < 400:
                return _decode(resp, what, idempotent=idempotent, sent_at_ms=sent_at)
            message = platform_message(resp.content, resp.reason_phrase or f"HTTP {status}")
            if status == 429:  # class (a): rejected before executing
                hinted = parse_retry_after(resp.headers)
                delay = min(self.retry_after_cap_s, hinted if hinted is not None else self._backoff(retry))
                if retry_rate_limited and retry < self.max_retries:
                    log.warning("%s: rate limited, retry %d in %.2fs", what, retry + 1, delay)
                    await self.sleep(delay)
                    retry += 1
                    continue
                raise RateLimited(message, status, retry_after=delay)
            if status >= 500 or status in RETRYABLE_STATUSES:
                if not idempotent:
                    raise Ambiguous(message, status, cause=f"HTTP {status}: {message}", sent_at_ms=sent_at)
                if retry < self.max_retries:
                    delay = self._backoff(retry)
                    log.warning("%s: HTTP %d, retry %d in %.2fs", what, status, retry + 1, delay)
                    await self.sleep(delay)
                    retry += 1
                    continue
                raise ServerError(message, status)
            raise error_for_status(status, message)


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _decode(resp: httpx.Response, what: str, *, idempotent: bool, sent_at_ms: int) -> Any:
    if not resp.content.strip():
        return None
    try:
        data = jsonlib.loads(resp.content)
    except ValueError as exc:
        message = f"{what} answered HTTP {resp.status_code} with a body that is not JSON"
        if not idempotent:  # it succeeded, but we cannot tell what it created
            raise Ambiguous(message, resp.status_code, cause=message, sent_at_ms=sent_at_ms) from exc
        raise ServerError(message, resp.status_code) from exc
    # UponAI's envelope can say `success: false` with a 2xx status.
    if isinstance(data, dict) and data.get("success") is False:
        raise InvalidRequest(platform_message(resp.content, f"{what} failed"), resp.status_code)
    return data
