"""Error bodies in each dialect's shape; every failure leaves the sandbox through here."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

RETELL = "retell"
UPONAI = "uponai"

# Retell's documented default texts (OpenAPI components.responses).
DEFAULT_MESSAGES = {
    400: "Invalid request format, please check API reference.",
    401: "API key is missing or invalid.",
    403: "Forbidden",
    404: "The requested resource was not found.",
    405: "Method not allowed.",
    413: "Request body too large (the limit is 1 MiB).",
    429: "Account rate limited, please throttle your requests.",
    500: "An unexpected server error occurred.",
    503: "Service temporarily unavailable, please retry later.",
    504: "Gateway timeout: the request took too long.",
}
RATE_LIMITED = DEFAULT_MESSAGES[429]


class ApiError(Exception):
    """Raised anywhere in a handler; answered as {status,message} or {success,message}."""

    def __init__(self, status: int, message: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message or DEFAULT_MESSAGES.get(status, "error"))
        self.status = status
        self.message = message or DEFAULT_MESSAGES.get(status, "error")
        self.headers = dict(headers or {})


def dialect_of(path: str) -> str:
    """UponAI's native API lives under /api/; everything else answers like Retell."""
    return UPONAI if path.startswith("/api/") else RETELL


def error_body(dialect: str, message: str) -> dict[str, object]:
    if dialect == UPONAI:
        return {"success": False, "message": message}
    return {"status": "error", "message": message}


def error_response(dialect: str, status: int, message: str | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    text = message or DEFAULT_MESSAGES.get(status, "error")
    return JSONResponse(error_body(dialect, text), status_code=status, headers=dict(headers or {}))
