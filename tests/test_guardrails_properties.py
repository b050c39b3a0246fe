"""Property-based tests (hypothesis): the number gate never raises and never accepts anything that is not
exactly its own strict E.164 form; valid numbers get the verdict their region and type call for."""

from __future__ import annotations

import json
import unicodedata

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from uponai_mcp.guardrails import (
    CODES,
    DEFAULT_BLOCKED_TYPES,
    EMERGENCY_NUMBER,
    INVALID_NUMBER,
    NUMBER_TYPE_BLOCKED,
    STRICT_E164,
    Destination,
    Refusal,
    check_destination,
    sanitize_text,
)

# Bounded so the whole guardrail suite stays well under 20 s; CI can raise it with a hypothesis profile.
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _e164(n: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(n, PhoneNumberFormat.E164)


def _examples() -> list[str]:
    out: set[str] = set()
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in PhoneNumberType.values():
            n = phonenumbers.example_number_for_type(region, kind)
            if n is not None:
                out.add(_e164(n))
    for cc in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        n = phonenumbers.example_number_for_non_geo_entity(cc)
        if n is not None:
            out.add(_e164(n))
    return sorted(out)


EXAMPLES = _examples()
VALID_ALLOWED = [e for e in EXAMPLES if isinstance(check_destination(e), Destination)]


def assert_well_formed(result: object) -> None:
    assert isinstance(result, Destination | Refusal)
    if isinstance(result, Refusal):
        assert result.code in CODES
        assert result.message and "\n" not in result.message
        json.dumps(result.details)


def expected_verdict(e164: str) -> tuple[str, str | None]:
    """Independent re-derivation of the policy from phonenumbers, for numbers that pass the regex."""
    n = phonenumbers.parse(e164, None)
    if phonenumbers.region_code_for_country_code(n.country_code) == "001":
        return NUMBER_TYPE_BLOCKED, "001"
    if not phonenumbers.is_valid_number(n):
        return "invalid_or_emergency", None
    kind = PhoneNumberType.to_string(phonenumbers.number_type(n))
    if kind in DEFAULT_BLOCKED_TYPES:
        return NUMBER_TYPE_BLOCKED, phonenumbers.region_code_for_number(n)
    return "ok", phonenumbers.region_code_for_number(n)


# --- never raises, never accepts a non-canonical string ----------------------------------------------

DANGEROUS = st.sampled_from([
    " ", "-", "(", ")", ".", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u202a", "\u202e", "\u2066",
    "\u061c", "\u00a0", "\n", "\t", "\x00", "１", "٣", "۴", "a", "X", "x", "#", ";", "ext=", "tel:", "+", "0",
])


@FAST
@given(st.text())
def test_any_text_gives_destination_or_refusal(s: str) -> None:
    result = check_destination(s)
    assert_well_formed(result)
    if isinstance(result, Destination):
        assert STRICT_E164.fullmatch(s) and result.e164 == s


@FAST
@given(st.text(alphabet=st.sampled_from("+0123456789 -().x#;\u200b１٣"), max_size=24))
def test_number_like_text_never_slips_through(s: str) -> None:
    result = check_destination(s)
    assert_well_formed(result)
    if isinstance(result, Destination):
        assert STRICT_E164.fullmatch(s)
        assert _e164(phonenumbers.parse(s, None)) == s == result.e164


@FAST
@given(st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True))
def test_strict_shaped_numbers_get_the_policy_verdict(s: str) -> None:
    result = check_destination(s)
    assert_well_formed(result)
    expected, region = expected_verdict(s) if _e164_roundtrips(s) else ("invalid_or_emergency", None)
    if expected == "ok":
        assert isinstance(result, Destination) and result.region == region and result.e164 == s
    elif expected == NUMBER_TYPE_BLOCKED:
        assert isinstance(result, Refusal) and result.code == NUMBER_TYPE_BLOCKED
        assert result.details["region"] == region
    else:
        assert isinstance(result, Refusal) and result.code in (INVALID_NUMBER, EMERGENCY_NUMBER)


def _e164_roundtrips(s: str) -> bool:
    try:
        n = phonenumbers.parse(s, None)
    except phonenumbers.NumberParseException:
        return False
    return _e164(n) == s and not n.extension


@FAST
@given(st.sampled_from(VALID_ALLOWED), st.data())
def test_one_inserted_character_always_refuses(e164: str, data: st.DataObject) -> None:
    ch = data.draw(DANGEROUS)
    pos = data.draw(st.integers(min_value=0, max_value=len(e164)))
    mutated = e164[:pos] + ch + e164[pos:]
    if mutated == e164 or (STRICT_E164.fullmatch(mutated) and ch in "0"):
        return  # inserting a digit can make another number; covered by the regex property above
    result = check_destination(mutated)
    assert isinstance(result, Refusal), (mutated, result)
    assert result.code in (INVALID_NUMBER, EMERGENCY_NUMBER, NUMBER_TYPE_BLOCKED)


@FEW
@given(st.sampled_from(VALID_ALLOWED))
def test_lenient_renderings_of_a_valid_number_are_refused(e164: str) -> None:
    n = phonenumbers.parse(e164, None)
    for fmt in (PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.RFC3966):
        shown = phonenumbers.format_number(n, fmt)
        if shown != e164:
            r = check_destination(shown)
            assert isinstance(r, Refusal) and r.code == INVALID_NUMBER
            assert r.details.get("suggestion") in (e164, None)
    fullwidth = "".join(unicodedata.lookup(f"FULLWIDTH DIGIT {unicodedata.name(c).split()[-1]}")
                        if c.isdigit() else c for c in e164)
    assert check_destination(fullwidth).code == INVALID_NUMBER


# --- every libphonenumber example number, deterministically -------------------------------------------


def test_every_example_number_gets_the_verdict_its_region_and_type_call_for() -> None:
    assert len(EXAMPLES) > 900 and len(VALID_ALLOWED) > 600
    for e164 in EXAMPLES:
        result = check_destination(e164)
        assert_well_formed(result)
        if not STRICT_E164.fullmatch(e164):  # a handful of 6-digit service numbers (e.g. IR UAN +989601)
            assert isinstance(result, Refusal) and result.code == INVALID_NUMBER
            continue
        expected, region = expected_verdict(e164)
        n = phonenumbers.parse(e164, None)
        if expected == "ok":
            assert isinstance(result, Destination), (e164, result)
            assert result.region == region and result.country_code == n.country_code
            assert result.number_type not in DEFAULT_BLOCKED_TYPES
        else:
            assert isinstance(result, Refusal) and result.code == expected, (e164, result)


@pytest.mark.parametrize("kind", ["MOBILE", "FIXED_LINE", "TOLL_FREE", "VOIP"])
def test_allowed_types_pass_in_a_sample_of_regions(kind: str) -> None:
    code = getattr(PhoneNumberType, kind)
    for region in ("US", "GB", "DE", "FR", "IN", "AU", "JP", "MX"):
        n = phonenumbers.example_number_for_type(region, code)
        if n is None:
            continue
        dest = check_destination(_e164(n))
        assert isinstance(dest, Destination) and dest.region == phonenumbers.region_code_for_number(n)


# --- sanitize_text --------------------------------------------------------------------------------------


@FAST
@given(st.text())
def test_sanitize_text_removes_every_control_and_format_character(s: str) -> None:
    out = sanitize_text(s)
    for c in out:
        cat = unicodedata.category(c)
        assert c in "\n\t" or cat not in ("Cc", "Cf", "Cs"), repr(c)
    assert sanitize_text(out) == out  # idempotent


@FAST
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_sanitize_text_keeps_printable_ascii(s: str) -> None:
    assert sanitize_text(s) == s
