"""The one refusal type services raise, and the one place its codes are listed.

Codes are stable and machine-readable; the message is a sentence a person can act on; `details` holds
what a client acts on (retry_at, the confirmation token, the field at fault). The MCP layer
(`tools/contract.py`) turns every refusal into an error result: text `<code>: <sentence>` and the same
as data under `_meta[ERROR_META_KEY]`.
"""

from __future__ import annotations

from typing import Any

from uponai_mcp.api import errors as api_errors

CODES = frozenset({
    "invalid_number", "destination_not_allowed", "number_type_blocked", "emergency_number",
    "from_number_not_usable", "outside_calling_window", "budget_exceeded", "rate_limited",
    "cps_above_provider_max", "do_not_call", "confirmation_required", "not_found", "outcome_unknown", "upstream_error",
    # beyond the guardrail list: malformed arguments, idempotency misuse, configuration, read-only
    "invalid_argument", "idempotency_conflict", "confirmation_invalid", "configuration_error", "declined",
    # the server itself: a mutating tool on a read-only server, a tool that does not exist, storage down,
    # and a fault of ours (logged; the caller gets no internals)
    "read_only", "tool_not_enabled", "unknown_tool", "store_unavailable", "internal_error",
})

ERROR_META_KEY = "io.uponai/error"


class Refused(Exception):
    def __init__(self, code: str, message: str, **details: Any) -> None:
        assert code in CODES, code
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def as_data(self) -> dict[str, Any]:
        """`{"code", "message", "details"}`: what `_meta[ERROR_META_KEY]` carries."""
        return {"code": self.code, "message": self.message, "details": self.details}


def from_api_error(exc: api_errors.ApiError, *, what: str = "the platform") -> Refused:
    """Map a client error to a refusal the model can act on."""
    if isinstance(exc, api_errors.NotFound):
        return Refused("not_found", f"{what} was not found on the platform ({exc.message}); check the id or number.")
    if isinstance(exc, api_errors.RateLimited):
        return Refused(
            "rate_limited",
            f"The platform is rate limiting requests; try again in {exc.retry_after:.0f} s.",
            retry_after_s=exc.retry_after,
        )
    if isinstance(exc, api_errors.OutcomeUnknown):
        return Refused(
            "outcome_unknown",
            "The platform did not confirm whether the call was created; do not retry: the server reconciles it "
            f"by its attempt id {exc.attempt_id} (see list_calls or the audit log).",
            attempt_id=exc.attempt_id,
        )
    if isinstance(exc, api_errors.ConfigurationError):
        return Refused("configuration_error", exc.message)
    if isinstance(exc, api_errors.Unauthorized):
        return Refused(
            "upstream_error", "The platform refused the API key; check UPONAI_API_KEY and its workspace."
        )
    if isinstance(exc, api_errors.InvalidRequest):
        return Refused("upstream_error", f"The platform rejected the request: {exc.message}")
    return Refused("upstream_error", f"The platform failed ({exc.message}); try again later.")
