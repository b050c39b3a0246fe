"""All guardrails in one pass, in a fixed order; the first refusal wins.

Order: do-not-call, destination, own-number, from-number, country, calling window, budgets, spend. What the number *is*
comes first (cheap, and the most useful thing to tell the assistant), then whose number calls it,
then the rules that depend on both; budgets last because they need a read of the durable store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from uponai_mcp.models import PhoneNumber

from .budgets import Budgets, check_budgets
from .countries import CountryPolicy, check_country
from .destination import DEFAULT_BLOCKED_TYPES, Destination, check_destination
from .do_not_call import Listed, check_do_not_call
from .own_numbers import check_from_number, check_not_own_number
from .refusal import Refusal
from .spend import SpendCap, check_spend
from .window import CallingWindow, check_calling_window

CHECK_DO_NOT_CALL = "do_not_call"
CHECK_DESTINATION = "destination"
CHECK_OWN_NUMBER = "own_number"
CHECK_FROM_NUMBER = "from_number"
CHECK_COUNTRY = "country"
CHECK_WINDOW = "calling_window"
CHECK_WINDOW_OFF = "calling_window:off"
CHECK_BUDGETS = "budgets"
CHECK_SPEND = "spend"


@dataclass(frozen=True)
class Usage:
    """Prior calls in the rolling windows, read from the durable store (see budgets.retry_time)."""

    attempts_to_destination_24h: int
    calls_last_hour: int
    calls_last_day: int
    retry_at: Mapping[str, datetime | None] = field(default_factory=dict)
    spent_mc: int = 0  # today's reported call costs, thousandths of a cent (spend cap)
    in_flight_today: int = 0  # today's calls without a reported cost yet


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    refusal: Refusal | None
    destination: Destination | None
    from_number: PhoneNumber | None
    checks: list[str] = field(default_factory=list)  # the checks that passed, in order

    def raise_for_refusal(self) -> None:
        if self.refusal is not None:
            raise self.refusal.exception()

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "refusal": self.refusal.to_dict() if self.refusal else None,
            "destination": asdict(self.destination) if self.destination else None,
            "from_number": self.from_number.phone_number if self.from_number else None,
            "checks": list(self.checks),
        }


def evaluate(
    *,
    to_number: str,
    from_number: str,
    numbers: Sequence[PhoneNumber],
    policy: CountryPolicy,
    window: CallingWindow,
    now: datetime,
    budgets: Budgets | None = None,
    usage: Usage | Callable[[Destination], Usage] | None = None,
    override_agent_id: str | None = None,
    ignore_e164_validation: bool = False,
    blocked_types: frozenset[str] = DEFAULT_BLOCKED_TYPES,
    extra_zones: Iterable[str] = (),
    listed: Listed | None = None,
    do_not_call_checked: bool = False,
    spend: SpendCap | None = None,
) -> Verdict:
    """Run every check; `allowed` only if all ran and passed.

    Budgets are checked when `budgets` is given; then `usage` is required (a Usage, or a callable that
    reads it for the destination, so the store is only queried once everything else has passed).
    """
    if budgets is not None and usage is None:
        raise ValueError("evaluate(budgets=...) needs usage= (prior call counts from the durable store)")
    checks: list[str] = []
    dest: Destination | None = None
    caller: PhoneNumber | None = None

    def refuse(r: Refusal) -> Verdict:
        return Verdict(False, r, dest, caller, checks)

    # First: a listed number is refused whatever else is wrong with how it was written.
    if (r := check_do_not_call(to_number, listed)) is not None:
        return refuse(r)
    if do_not_call_checked:  # the caller looked the number up in the list (the dialer always does)
        checks.append(CHECK_DO_NOT_CALL)

    got = check_destination(to_number, blocked_types=blocked_types)
    if isinstance(got, Refusal):
        return refuse(got)
    dest = got
    checks.append(CHECK_DESTINATION)

    if (r := check_not_own_number(dest, numbers)) is not None:
        return refuse(r)
    checks.append(CHECK_OWN_NUMBER)

    found = check_from_number(from_number, numbers, override_agent_id=override_agent_id,
                              ignore_e164_validation=ignore_e164_validation)
    if isinstance(found, Refusal):
        return refuse(found)
    caller = found
    checks.append(CHECK_FROM_NUMBER)

    if (r := check_country(dest, caller.kind, policy, caller.allowed_outbound_country_list,
                           from_number=caller.phone_number)) is not None:
        return refuse(r)
    checks.append(CHECK_COUNTRY)

    if (r := check_calling_window(dest, window, now, extra_zones=extra_zones)) is not None:
        return refuse(r)
    checks.append(CHECK_WINDOW if window.enabled else CHECK_WINDOW_OFF)

    if budgets is not None:
        u = usage(dest) if callable(usage) else usage
        assert u is not None
        if (r := check_budgets(budgets, attempts_to_destination_24h=u.attempts_to_destination_24h,
                               calls_last_hour=u.calls_last_hour, calls_last_day=u.calls_last_day,
                               retry_at=u.retry_at)) is not None:
            return refuse(r)
        checks.append(CHECK_BUDGETS)
        if spend is not None and spend.max_cents_per_day is not None:
            if (r := check_spend(spend, spent_mc=u.spent_mc, in_flight=u.in_flight_today, now=now)) is not None:
                return refuse(r)
            checks.append(CHECK_SPEND)
    return Verdict(True, None, dest, caller, checks)
