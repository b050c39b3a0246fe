"""Caller-ID pools: which number of a pool calls a callee. Pure (no I/O).

Sticky: a callee keeps the number that called it before, while that number is in the pool. Otherwise, with local
presence, a pool number with the callee's area code (NANP: the three digits after +1) or else in the callee's
region; otherwise a number picked by a hash of the callee's number, so the same pool always gives the same callee
the same number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import phonenumbers
from phonenumbers import NumberParseException


def _parse(number: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(number, None)
    except NumberParseException:
        return None


def area_code(number: str) -> str | None:
    """The NANP area code (+1 415 555... -> "415"); None elsewhere."""
    parsed = _parse(number)
    if parsed is None or parsed.country_code != 1:
        return None
    return str(parsed.national_number)[:3]


def region(number: str) -> str | None:
    parsed = _parse(number)
    return None if parsed is None else phonenumbers.region_code_for_number(parsed)


def choose(to_e164: str, pool: Sequence[str], *, previous: str | None = None,
           local_presence: bool = False) -> tuple[str, str]:
    """(the pool number for this callee, why: sticky | area_code | region | hash)."""
    if not pool:
        raise ValueError("an empty caller-ID pool")
    if previous is not None and previous in pool:
        return previous, "sticky"
    if local_presence:
        code = area_code(to_e164)
        if code is not None:
            same = [n for n in pool if area_code(n) == code]
            if same:
                return _pick(to_e164, same), "area_code"
        where = region(to_e164)
        same = [n for n in pool if where is not None and region(n) == where]
        if same:
            return _pick(to_e164, same), "region"
    return _pick(to_e164, pool), "hash"


def _pick(to_e164: str, pool: Sequence[str]) -> str:
    ordered = sorted(pool)
    h = int.from_bytes(hashlib.sha256(to_e164.encode()).digest()[:8], "big")
    return ordered[h % len(ordered)]
