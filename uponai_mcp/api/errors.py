"""Typed errors of the platform client; each carries the platform's own message.

Callers decide by class, not by status: `OutcomeUnknown` means "a call may exist, reconcile
before dialing again"; everything else is definite.
"""

from __future__ import annotations

import json
from typing import Any

from uponai_mcp.models import CallRequest


class ApiError(Exception):
    """Any failure talking to the platform. `message` is the platform's text when it sent one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})" if self.status else self.message


class Unauthorized(ApiError):
    """401/403: the API key is missing, wrong, or lacks access."""


class NotFound(ApiError):
    """404/422: no such call, number or agent under this key."""


class InvalidRequest(ApiError):
    """400/402/409/413 and other 4xx: the platform refused the request; nothing happened."""


class ConfigurationError(InvalidRequest):
    """The client lacks a setting the dialect needs; raised before anything is sent (status None)."""


class RateLimited(ApiError):
    """429 that outlived the retries (or was not retried); `retry_after` is in seconds."""

    def __init__(self, message: str, status: int | None = 429, *, retry_after: float) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx or no response on an idempotent request, after the retries."""


class ConnectError(ApiError):
    """The platform could not be reached at all (after the retries); nothing was sent."""


class OutcomeUnknown(ApiError):
    """A create-call was sent but its outcome is unknown (timeout, 5xx, connection lost).

    It is never retried blindly: reconcile with `find_call_by_attempt(attempt_id, since_ms=sent_at_ms)`.
    """

    def __init__(
        self, message: str, status: int | None = None, *, attempt_id: str, request: CallRequest,
        sent_at_ms: int, cause: str,
    ) -> None:
        super().__init__(message, status)
        self.attempt_id = attempt_id
        self.request = request
        self.sent_at_ms = sent_at_ms
        self.cause = cause


def platform_message(body: bytes, fallback: str) -> str:
    """The message of either error shape: `{"status":"error","message"}` or `{"success":false,...}`."""
    try:
        data: Any = json.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("message", "error", "detail", "msg"):
            value = data.get(key)
            if isinstance(value, dict):  # e.g. {"error": {"message": "..."}}
                value = value.get("message")
            if isinstance(value, str) and value.strip():
                return value.strip()
            if isinstance(value, list) and value:  # validation-error lists
                return json.dumps(value)[:500]
    text = body.decode("utf-8", "replace").strip() if body else ""
    if text and not text.startswith(("<", "{", "[")):  # a short plain-text body, not an HTML error page
        return text[:300]
    return fallback


def error_for_status(status: int, message: str) -> ApiError:
    """The definite (non-retryable) error for a 4xx status."""
    if status in (401, 403):
        return Unauthorized(message, status)
    if status in (404, 422):
        return NotFound(message, status)
    return InvalidRequest(message, status)
