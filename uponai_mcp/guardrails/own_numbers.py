"""Checks against the account's own numbers: the caller ID must be ours and able to call out,
and the destination must not be one of ours (an agent calling our own agent loops and bills twice).

Own-number destinations are refused as `destination_not_allowed` with details.reason = "own_number":
it is a policy about *where* the call goes, the same family as a disallowed country, while
`number_type_blocked` stays reserved for what the numbering plan says a number is.
"""

from __future__ import annotations

from collections.abc import Sequence

import phonenumbers
from phonenumbers import PhoneNumberFormat

from uponai_mcp.models import PhoneNumber

from .destination import Destination, is_strict_e164
from .refusal import DESTINATION_NOT_ALLOWED, FROM_NUMBER_NOT_USABLE, Refusal
from .text import visible

_LISTED = 10  # how many usable numbers a refusal names, so the assistant can pick one


def can_call_out(number: PhoneNumber, override_agent_id: str | None) -> bool:
    return bool(number.outbound_agents) or bool(override_agent_id and override_agent_id.strip())


def _canonical(raw: str) -> str | None:
    """E.164 of an account number as the platform stores it; None for SIP identities and junk."""
    try:
        return phonenumbers.format_number(phonenumbers.parse(raw, None), PhoneNumberFormat.E164)
    except Exception:  # account data is not ours to validate; an odd entry just never matches
        return None


def check_not_own_number(dest: Destination, numbers: Sequence[PhoneNumber]) -> Refusal | None:
    for n in numbers:
        if n.phone_number == dest.e164 or _canonical(n.phone_number) == dest.e164:
            label = f" ({n.nickname})" if n.nickname else ""
            return Refusal(
                DESTINATION_NOT_ALLOWED,
                f"{dest.e164} is one of this account's own numbers{label}, and calling it would connect an agent "
                "to itself: call the person's own number instead.",
                {"reason": "own_number", "region": dest.region, "kind": n.kind.value},
            )
    return None


def check_from_number(
    from_number: str,
    numbers: Sequence[PhoneNumber],
    *,
    override_agent_id: str | None,
    ignore_e164_validation: bool,
) -> PhoneNumber | Refusal:
    """The account number to call from, or why it cannot be used.

    Exact string match only (no normalisation): the caller ID sent to the platform is exactly this string.
    Strings that are not strict E.164 can only match custom-telephony numbers, and only with
    ignore_e164_validation; that flag on a platform-bought number is refused (custom telephony only).
    """
    usable = [n.phone_number for n in numbers if can_call_out(n, override_agent_id)][:_LISTED]
    base = {"from_number": visible(from_number, quote=False), "usable_numbers": usable}
    if not isinstance(from_number, str) or not from_number:
        return Refusal(FROM_NUMBER_NOT_USABLE, "from_number is empty: pass one of this account's numbers in E.164.",
                       {**base, "problem": "empty"})
    match = next((n for n in numbers if n.phone_number == from_number), None)
    strict = is_strict_e164(from_number)
    if match is None:
        hint = f" such as {', '.join(usable[:3])}" if usable else " (list them with the phone-number tools)"
        return Refusal(
            FROM_NUMBER_NOT_USABLE,
            f"{visible(from_number)} is not one of this account's numbers: call from one of its numbers{hint}.",
            {**base, "problem": "not_owned"},
        )
    if ignore_e164_validation and match.kind.platform_bought:
        return Refusal(
            FROM_NUMBER_NOT_USABLE,
            f"{from_number} is a platform-bought ({match.kind.value}) number, and ignore_e164_validation is for "
            "custom-telephony (imported) numbers only: call again with ignore_e164_validation=false.",
            {**base, "problem": "ignore_e164_on_platform_number", "kind": match.kind.value},
        )
    if not strict and not ignore_e164_validation:
        fix = ("set ignore_e164_validation=true if this custom SIP identity is meant"
               if not match.kind.platform_bought else "use its E.164 form")
        return Refusal(
            FROM_NUMBER_NOT_USABLE,
            f"{visible(from_number)} is not an E.164 number: {fix}.",
            {**base, "problem": "not_e164", "kind": match.kind.value},
        )
    if not can_call_out(match, override_agent_id):
        return Refusal(
            FROM_NUMBER_NOT_USABLE,
            f"{match.phone_number} has no outbound agent: bind an outbound agent to it or pass override_agent_id.",
            {**base, "problem": "no_outbound_agent", "kind": match.kind.value},
        )
    return match
