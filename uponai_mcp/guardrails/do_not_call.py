"""Do-not-call: numbers that must never be dialled, compared in E.164.

`normalize_loose` turns whatever a person or a file wrote ("+1 (415) 555-2671", full-width digits, Arabic-Indic
digits, `tel:` URIs, "00" international prefixes, invisible formatting characters) into E.164, so that neither a
listed number nor a destination can slip past the list by formatting. It is lenient on purpose: it only decides
what the list is compared with; the strict destination check still decides what may be dialled.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from .refusal import DO_NOT_CALL, Refusal

_PLUS = frozenset("+\uff0b\ufe62\u207a\u208a")
_CUT = re.compile(r"(;|ext|x|#|,).*$", re.IGNORECASE)


@dataclass(frozen=True)
class Listed:
    """A do-not-call entry as the guardrail sees it."""

    e164: str
    reason: str
    source: str  # manual | csv | opt_out
    call_id: str | None = None


def normalize_loose(text: object, default_region: str | None = None) -> str | None:
    """E.164 for a number written any common way, or None when it is no valid number at all.
    Without a leading + (or 00) the digits are read as international ("14155552671"), unless
    `default_region` says whose national format they are (CSV import)."""
    if not isinstance(text, str):
        return None
    s = unicodedata.normalize("NFKC", text).strip()
    if s[:4].lower() == "tel:":
        s = s[4:]
    s = _CUT.sub("", s)
    plus = False
    digits: list[str] = []
    for c in s:
        if c in _PLUS and not digits:
            plus = True
        elif c.isdecimal():
            digits.append(str(unicodedata.decimal(c)))
        elif unicodedata.category(c)[0] in "L" :
            return None  # letters are not part of a phone number (vanity numbers are not listed)
    raw = "".join(digits)
    if not raw or len(raw) > 17:
        return None
    if not plus and raw.startswith("00"):
        raw, plus = raw[2:], True
    candidates = ["+" + raw] if plus or default_region is None else [raw]
    for cand in candidates:
        try:
            number = phonenumbers.parse(cand, None if cand.startswith("+") else default_region)
        except NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return None


def check_do_not_call(to_number: str, listed: Listed | None) -> Refusal | None:
    """do_not_call when the destination (in any formatting) is on the list."""
    if listed is None:
        return None
    why = "the callee asked not to be called again" if listed.source == "opt_out" else f"reason: {listed.reason}"
    return Refusal(
        DO_NOT_CALL,
        f"{listed.e164} is on the do-not-call list ({why}); it is never dialled. Only the operator can remove it "
        "with remove_do_not_call.",
        {"e164": listed.e164, "input": to_number if isinstance(to_number, str) else None, "reason": listed.reason,
         "source": listed.source, "call_id": listed.call_id},
    )
