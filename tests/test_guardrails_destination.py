"""check_destination: reliability.md §8 A (number input), with the reason codes the dialer switches on."""

from __future__ import annotations

import json

import phonenumbers
import pytest

from uponai_mcp.guardrails import (
    CODES,
    DEFAULT_BLOCKED_TYPES,
    EMERGENCY_NUMBER,
    INVALID_NUMBER,
    NUMBER_TYPE_BLOCKED,
    Destination,
    Refusal,
    check_destination,
)


def refused(s: object, code: str) -> Refusal:
    r = check_destination(s)  # type: ignore[arg-type]
    assert isinstance(r, Refusal), f"{s!r} was accepted: {r}"
    assert r.code == code, f"{s!r}: expected {code}, got {r.code}: {r.message}"
    json.dumps(r.details)  # details travel to the assistant as JSON
    assert r.message and "\n" not in r.message and not r.message.startswith(r.code)
    return r


# --- rejects ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("4155552671", "missing_plus"),
        ("14155552671", "missing_plus"),
        ("0012125550123", "missing_plus"),
        ("+1 415 555 2671", "formatting"),
        ("+1-415-555-2671", "formatting"),
        ("+1 (415) 555-2671", "formatting"),
        (" +14155552671", "formatting"),
        ("+14155552671 ", "formatting"),
        ("1-800-FLOWERS", "letters"),
        ("+1-800-FLOWERS", "letters"),
        ("+1800FLOWERS", "letters"),
        ("＋１４１５５５５２６７１", "non_ascii"),  # full-width
        ("+１４１５５５５２６７１", "non_ascii"),
        ("+١٤١٥٥٥٥٢٦٧١", "non_ascii"),  # Arabic-Indic
        ("+۱۴۱۵۵۵۵۲۶۷۱", "non_ascii"),  # extended Arabic-Indic (Persian)
        ("+14155552671\u200b", "non_ascii"),  # zero-width space
        ("+1415\u200d5552671", "non_ascii"),  # zero-width joiner inside
        ("\ufeff+14155552671", "non_ascii"),  # BOM
        ("\u202e+14155552671", "non_ascii"),  # RTL override
        ("+14155552671\u2066", "non_ascii"),  # bidi isolate
        ("+14155552671\n", "non_ascii"),  # `$` would have let this through; fullmatch does not
        ("+14155552671\x00", "non_ascii"),
        ("tel:+14155552671", "tel_uri"),
        ("tel:+1-415-555-2671", "tel_uri"),
        ("+14155552671;ext=5", "extension"),
        ("+14155552671 x 99", "extension"),
        ("+14155552671x99", "extension"),
        ("+14155552671 ext. 123", "extension"),
        ("+14155552671#123", "extension"),
        ("+1234567890123456", "too_long"),
        ("+12345678901234567890", "too_long"),
        ("+123456", "too_short"),
        ("+", "too_short"),
        ("+0123456789", "bad_country_code"),
        ("+04155552671", "bad_country_code"),
        ("", "empty"),
        ("   ", "empty"),
        ("+447700900123", "invalid_range"),  # Ofcom drama range
        ("+15551234567", "invalid_range"),
        ("+4402079460000", "not_canonical"),  # national trunk 0 kept after the country code
        ("+9991234567", "unknown_country_code"),
    ],
)
def test_rejects_invalid_numbers(raw: str, problem: str) -> None:
    r = refused(raw, INVALID_NUMBER)
    assert r.details["problem"] == problem


def test_invalid_number_message_is_actionable_and_suggests_the_canonical_form() -> None:
    r = refused("+1 415 555 2671", INVALID_NUMBER)
    assert r.message == (
        "'+1 415 555 2671' is not a strict E.164 number: write it as + and digits only, e.g. +14155552671."
    )
    assert r.details["suggestion"] == "+14155552671"
    # No guessing a country for a number without one.
    assert "suggestion" not in refused("4155552671", INVALID_NUMBER).details


def test_hidden_characters_are_shown_escaped_in_the_message() -> None:
    r = refused("+1415\u200b5552671", INVALID_NUMBER)
    assert "\\u200b" in r.message and "ZERO WIDTH SPACE" in r.message
    assert "\u200b" not in r.message and "\u200b" not in json.dumps(r.details, ensure_ascii=False)


def test_non_text_input_is_refused_not_raised() -> None:
    for value in (None, 14155552671, b"+14155552671", ["+14155552671"]):
        assert refused(value, INVALID_NUMBER).details["problem"] == "not_text"


# --- emergency numbers: checked before format, so the answer says "emergency" ---------------------------


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("911", "911"),
        ("112", "112"),
        ("999", "999"),
        ("000", "000"),  # AU
        ("+1911", "911"),
        ("+1 911", "911"),
        ("+911", "911"),
        ("+112", "112"),
        ("+44999", "999"),
        ("+44112", "112"),
        ("+33112", "112"),
        ("+61000", "000"),
        ("１１２", "112"),  # full-width: still an emergency code, and that is the more useful answer
        ("tel:911", "911"),
        ("+19115551234", "911"),  # invalid number with an emergency prefix: a dial plan could route it
        ("+4499912345", "999"),
    ],
)
def test_emergency_numbers(raw: str, code: str) -> None:
    r = refused(raw, EMERGENCY_NUMBER)
    assert r.details["emergency_number"] == code
    assert f"dial {code} yourself" in r.message


def test_valid_number_that_merely_starts_with_an_emergency_code_is_not_emergency() -> None:
    # Paris 01 12 34 56 78: a real subscriber range; "112" is only emergency when dialled alone.
    dest = check_destination("+33112345678")
    assert isinstance(dest, Destination) and dest.region == "FR"


def test_short_non_emergency_codes_are_invalid_not_emergency() -> None:
    assert refused("+1411", INVALID_NUMBER).details["problem"] == "too_short"
    refused("12345", INVALID_NUMBER)


# --- fraud-prone types and non-geographic numbers -----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "number_type"),
    [
        ("+19005551234", "US", "PREMIUM_RATE"),
        ("+449091234567", "GB", "PREMIUM_RATE"),
        ("+448712345678", "GB", "PREMIUM_RATE"),
        ("+447012345678", "GB", "PERSONAL_NUMBER"),
        ("+881612345678", "001", "MOBILE"),  # Iridium
        ("+8823421234", "001", "MOBILE"),
        ("+8823456789", "001", "UNKNOWN"),  # invalid range, still blocked as non-geographic
        ("+883510012345", "001", "VOIP"),
        ("+870301234567", "001", "MOBILE"),  # Inmarsat
        ("+979123456789", "001", "PREMIUM_RATE"),
        ("+80012345678", "001", "TOLL_FREE"),
        ("+88812345678901", "001", "UAN"),
    ],
)
def test_blocked_types_and_non_geographic(raw: str, region: str, number_type: str) -> None:
    r = refused(raw, NUMBER_TYPE_BLOCKED)
    assert (r.details["region"], r.details["number_type"]) == (region, number_type)


def test_blocked_type_set_is_a_parameter() -> None:
    toll_free = "+18002345678"
    assert isinstance(check_destination(toll_free), Destination)  # allowed by default
    r = check_destination(toll_free, blocked_types=DEFAULT_BLOCKED_TYPES | {"TOLL_FREE"})
    assert isinstance(r, Refusal) and r.code == NUMBER_TYPE_BLOCKED and r.details["number_type"] == "TOLL_FREE"
    premium = check_destination("+19005551234", blocked_types=frozenset())
    assert isinstance(premium, Destination) and premium.number_type == "PREMIUM_RATE"
    # Non-geographic numbers stay blocked whatever the type set says.
    assert check_destination("+881612345678", blocked_types=frozenset()).code == NUMBER_TYPE_BLOCKED


# --- accepts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "number_type", "zones"),
    [
        ("+14155552671", "US", "FIXED_LINE_OR_MOBILE", ("America/Los_Angeles",)),
        ("+12125550123", "US", "FIXED_LINE_OR_MOBILE", ("America/New_York",)),
        ("+12085551234", "US", "FIXED_LINE_OR_MOBILE", ("America/Boise", "America/Los_Angeles")),
        ("+14165550123", "CA", "FIXED_LINE_OR_MOBILE", ("America/Toronto",)),
        ("+442079460000", "GB", "FIXED_LINE", ("Europe/London",)),
        ("+447911123456", "GG", "MOBILE", None),  # +44 but Guernsey
        ("+18765551234", "JM", "MOBILE", None),  # +1 but Jamaica
        ("+4915123456789", "DE", "MOBILE", ("Europe/Berlin",)),
        ("+61412345678", "AU", "MOBILE", None),
        ("+18002345678", "US", "TOLL_FREE", None),
    ],
)
def test_accepts_canonical_valid_numbers(raw: str, region: str, number_type: str, zones) -> None:
    dest = check_destination(raw)
    assert isinstance(dest, Destination), dest
    assert dest.e164 == raw
    assert phonenumbers.format_number(phonenumbers.parse(raw), phonenumbers.PhoneNumberFormat.E164) == raw
    assert (dest.region, dest.number_type) == (region, number_type)
    assert dest.country_code == int(phonenumbers.parse(raw).country_code)
    assert "Etc/Unknown" not in dest.time_zones and dest.time_zones
    if zones is not None:
        assert dest.time_zones == zones


def test_destination_carries_geocoder_text() -> None:
    dest = check_destination("+14155552671")
    assert isinstance(dest, Destination)
    assert dest.description == "San Francisco, CA" and dest.country_name == "United States"


def test_refusal_rejects_unknown_codes() -> None:
    with pytest.raises(ValueError):
        Refusal("nope", "x")
    from uponai_mcp import errors

    assert CODES <= errors.CODES  # every guardrail code is one of the server's listed codes
