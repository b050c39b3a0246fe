"""The one result type every guardrail returns when it says no.

A refusal is data, not an exception: the dialer and `preflight_call` collect it, log it and hand
`code` + `message` + `details` to the assistant, which explains it instead of retrying blindly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INVALID_NUMBER = "invalid_number"
DESTINATION_NOT_ALLOWED = "destination_not_allowed"
NUMBER_TYPE_BLOCKED = "number_type_blocked"
EMERGENCY_NUMBER = "emergency_number"
FROM_NUMBER_NOT_USABLE = "from_number_not_usable"
OUTSIDE_CALLING_WINDOW = "outside_calling_window"
BUDGET_EXCEEDED = "budget_exceeded"
DO_NOT_CALL = "do_not_call"

CODES: frozenset[str] = frozenset({
    INVALID_NUMBER, DESTINATION_NOT_ALLOWED, NUMBER_TYPE_BLOCKED, EMERGENCY_NUMBER,
    FROM_NUMBER_NOT_USABLE, OUTSIDE_CALLING_WINDOW, BUDGET_EXCEEDED, DO_NOT_CALL,
})


@dataclass(frozen=True)
class Refusal:
    """Why a call may not be placed.

    code: stable machine-readable reason (one of CODES); message: one sentence a person can act on
    (it does not repeat the code); details: JSON-serialisable facts (region, number_type, next_allowed_at...).
    """

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in CODES:  # a typo here would silently break clients that switch on the code
            raise ValueError(f"unknown refusal code {self.code!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": dict(self.details)}

    def exception(self) -> GuardrailRefusal:
        return GuardrailRefusal(self)


class GuardrailRefusal(Exception):
    """A refusal raised, for callers that prefer exceptions (`raise refusal.exception()`)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"{refusal.code}: {refusal.message}")
        self.refusal = refusal

    @property
    def code(self) -> str:
        return self.refusal.code
