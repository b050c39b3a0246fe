"""Pure call policy: no I/O, no clock reads (the clock is an argument). Each check returns a value or a
Refusal with a stable machine-readable `code`; `evaluate` runs them all in order for the dialer."""

from .budgets import DESTINATION_24H, PER_DAY, PER_HOUR, Budgets, check_budgets, retry_time
from .countries import TELNYX_COUNTRIES, CountryPolicy, check_country
from .destination import (
    DEFAULT_BLOCKED_TYPES,
    STRICT_E164,
    Destination,
    check_destination,
    is_strict_e164,
    warm_up,
)
from .own_numbers import can_call_out, check_from_number, check_not_own_number
from .refusal import (
    BUDGET_EXCEEDED,
    CODES,
    DESTINATION_NOT_ALLOWED,
    EMERGENCY_NUMBER,
    FROM_NUMBER_NOT_USABLE,
    INVALID_NUMBER,
    NUMBER_TYPE_BLOCKED,
    OUTSIDE_CALLING_WINDOW,
    GuardrailRefusal,
    Refusal,
)
from .text import describe_destination, describe_local_time, local_times, sanitize_text
from .verdict import Usage, Verdict, evaluate
from .window import CallingWindow, check_calling_window, next_allowed_at

__all__ = [
    "BUDGET_EXCEEDED", "CODES", "DEFAULT_BLOCKED_TYPES", "DESTINATION_24H", "DESTINATION_NOT_ALLOWED",
    "EMERGENCY_NUMBER", "FROM_NUMBER_NOT_USABLE", "INVALID_NUMBER", "NUMBER_TYPE_BLOCKED",
    "OUTSIDE_CALLING_WINDOW", "PER_DAY", "PER_HOUR", "STRICT_E164", "TELNYX_COUNTRIES",
    "Budgets", "CallingWindow", "CountryPolicy", "Destination", "GuardrailRefusal", "Refusal", "Usage", "Verdict",
    "can_call_out", "check_budgets", "check_calling_window", "check_country", "check_destination",
    "check_from_number", "check_not_own_number", "describe_destination", "describe_local_time", "evaluate",
    "is_strict_e164", "local_times", "next_allowed_at", "retry_time", "sanitize_text", "warm_up",
]
