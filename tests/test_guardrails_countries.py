"""Country policy (Twilio vs Telnyx vs custom, operator narrowing, carrier list) and the account-number checks."""

from __future__ import annotations

import json

import pytest

from uponai_mcp.config import PLATFORM_COUNTRIES, Settings
from uponai_mcp.guardrails import (
    DESTINATION_NOT_ALLOWED,
    FROM_NUMBER_NOT_USABLE,
    TELNYX_COUNTRIES,
    CountryPolicy,
    Destination,
    Refusal,
    check_country,
    check_destination,
    check_from_number,
    check_not_own_number,
)
from uponai_mcp.models import PhoneNumber, ProviderKind, WeightedAgent

TW, TX, CU = ProviderKind.TWILIO, ProviderKind.TELNYX, ProviderKind.CUSTOM
POLICY = CountryPolicy.from_settings(Settings())


def dest(number: str) -> Destination:
    d = check_destination(number)
    assert isinstance(d, Destination), d
    return d


def number(e164: str, kind: ProviderKind = TW, *, agent: bool = True, carrier=None, nick=None) -> PhoneNumber:
    return PhoneNumber(
        phone_number=e164, kind=kind, nickname=nick,
        outbound_agents=[WeightedAgent(agent_id="agent_out")] if agent else [],
        allowed_outbound_country_list=carrier,
    )


def refusal(r: object, code: str) -> Refusal:
    assert isinstance(r, Refusal), r
    assert r.code == code, r
    json.dumps(r.details)
    assert r.message.endswith(".") and "\n" not in r.message
    return r


# --- CountryPolicy --------------------------------------------------------------------------------------


def test_from_settings_defaults() -> None:
    assert POLICY.platform_countries == frozenset(PLATFORM_COUNTRIES) and len(POLICY.platform_countries) == 15
    assert POLICY.imported_countries == {"US", "CA"}
    assert POLICY.operator_allowed is None
    assert POLICY.telnyx_countries == TELNYX_COUNTRIES == {"US", "IN", "CA"}
    narrowed = CountryPolicy.from_settings(Settings(allowed_countries=("US",)))
    assert narrowed.operator_allowed == {"US"}


def test_allowed_for_each_kind() -> None:
    assert POLICY.allowed_for(TW) == frozenset(PLATFORM_COUNTRIES)
    assert POLICY.allowed_for(TX) == {"US", "IN", "CA"}
    assert POLICY.allowed_for(CU) == {"US", "CA"}


def test_operator_narrows_every_kind_and_empty_allows_nothing() -> None:
    p = CountryPolicy(frozenset(PLATFORM_COUNTRIES), frozenset({"US", "CA", "GB"}), frozenset({"US", "GB"}))
    assert p.allowed_for(TW) == {"US", "GB"}
    assert p.allowed_for(TX) == {"US"}
    assert p.allowed_for(CU) == {"US", "GB"}
    closed = CountryPolicy(frozenset(PLATFORM_COUNTRIES), frozenset({"US"}), frozenset())
    assert closed.allowed_for(TW) == frozenset()  # fail closed


def test_telnyx_is_also_bounded_by_the_platform_list() -> None:
    p = CountryPolicy(frozenset({"US", "GB"}), frozenset({"US"}))
    assert p.allowed_for(TX) == {"US"}


def test_carrier_list_narrows_and_empty_means_unrestricted() -> None:
    assert POLICY.allowed_for(TW, ["us", " gb "]) == {"US", "GB"}
    assert POLICY.allowed_for(TW, []) == POLICY.allowed_for(TW)  # platform: "not set or empty = all"
    assert POLICY.allowed_for(CU, ["US", "MX"]) == {"US"}  # never widens


def test_codes_are_normalised() -> None:
    p = CountryPolicy(["us", "gb "], ("ca",), ["Us"])  # type: ignore[arg-type]
    assert p.platform_countries == {"US", "GB"} and p.imported_countries == {"CA"}
    assert p.operator_allowed == {"US"}


# --- check_country: by region, never by country code ----------------------------------------------------


def test_jamaica_on_plus_one_is_refused_from_a_platform_number() -> None:
    r = refusal(check_country(dest("+18765551234"), TW, POLICY), DESTINATION_NOT_ALLOWED)
    assert r.details | {"allowed": None} == {
        "reason": "country", "region": "JM", "country_code": 1, "kind": "twilio", "limited_by": "provider",
        "allowed": None,
    }
    assert "Jamaica (JM)" in r.message and "platform-bought (Twilio)" in r.message
    assert check_country(dest("+18765551234"), CU, POLICY) is not None


def test_guernsey_on_plus_44_is_refused_when_only_gb_is_allowed() -> None:
    p = CountryPolicy(frozenset(PLATFORM_COUNTRIES), frozenset({"GB"}), frozenset({"GB"}))
    assert check_country(dest("+442079460000"), TW, p) is None
    r = refusal(check_country(dest("+447911123456"), TW, p), DESTINATION_NOT_ALLOWED)
    assert r.details["region"] == "GG" and "Guernsey (GG)" in r.message
    assert refusal(check_country(dest("+447911123456"), CU, p), DESTINATION_NOT_ALLOWED)


@pytest.mark.parametrize(
    ("to", "kind", "allowed"),
    [
        ("+14155552671", TW, True),
        ("+14155552671", TX, True),
        ("+14155552671", CU, True),
        ("+14165550123", TX, True),  # CA
        ("+919876543210", TX, True),  # IN
        ("+442079460000", TW, True),
        ("+442079460000", TX, False),  # Telnyx: US/IN/CA only
        ("+442079460000", CU, False),  # imported default allowlist: US, CA
        ("+61412345678", TW, True),
        ("+5511987654321", TW, False),  # BR is not one of the 15
    ],
)
def test_kind_matrix(to: str, kind: ProviderKind, allowed: bool) -> None:
    assert (check_country(dest(to), kind, POLICY) is None) is allowed


def test_messages_say_what_limits_and_what_to_do() -> None:
    gb = dest("+442079460000")
    telnyx = refusal(check_country(gb, TX, POLICY), DESTINATION_NOT_ALLOWED)
    assert telnyx.details["limited_by"] == "provider" and "Twilio-bought number" in telnyx.message
    custom = refusal(check_country(gb, CU, POLICY), DESTINATION_NOT_ALLOWED)
    assert "UPONAI_IMPORTED_COUNTRIES" in custom.message
    op = CountryPolicy(frozenset(PLATFORM_COUNTRIES), frozenset({"US"}), frozenset({"US"}))
    operator = refusal(check_country(gb, TW, op), DESTINATION_NOT_ALLOWED)
    assert operator.details["limited_by"] == "operator" and "UPONAI_ALLOWED_COUNTRIES" in operator.message
    carrier = refusal(check_country(gb, TW, POLICY, ["US"], from_number="+14155550100"), DESTINATION_NOT_ALLOWED)
    assert carrier.details["limited_by"] == "carrier" and carrier.details["allowed"] == ["US"]
    assert "+14155550100" in carrier.message and "allowed_outbound_country_list" in carrier.message


# --- from-number ---------------------------------------------------------------------------------------

ACCOUNT = [
    number("+14155550100", TW),
    number("+14155550101", TX, agent=False),
    number("+14155550102", CU),
    number("sip-alice", CU),
    number("sip-noagent", CU, agent=False),
]


def test_usable_from_number() -> None:
    got = check_from_number("+14155550100", ACCOUNT, override_agent_id=None, ignore_e164_validation=False)
    assert isinstance(got, PhoneNumber) and got.kind is TW


def test_not_one_of_ours() -> None:
    r = refusal(check_from_number("+14155559999", ACCOUNT, override_agent_id=None, ignore_e164_validation=False),
                FROM_NUMBER_NOT_USABLE)
    assert r.details["problem"] == "not_owned" and "+14155550100" in r.details["usable_numbers"]
    assert "+14155550100" in r.message
    # exact match only: a formatted variant of our number is not our number
    r = check_from_number("+1 415 555 0100", ACCOUNT, override_agent_id=None, ignore_e164_validation=False)
    assert refusal(r, FROM_NUMBER_NOT_USABLE).details["problem"] == "not_owned"
    assert refusal(check_from_number("", ACCOUNT, override_agent_id=None, ignore_e164_validation=False),
                   FROM_NUMBER_NOT_USABLE).details["problem"] == "empty"


def test_no_outbound_agent_unless_override() -> None:
    r = refusal(check_from_number("+14155550101", ACCOUNT, override_agent_id=None, ignore_e164_validation=False),
                FROM_NUMBER_NOT_USABLE)
    assert r.details["problem"] == "no_outbound_agent" and "override_agent_id" in r.message
    assert "+14155550101" not in r.details["usable_numbers"]
    got = check_from_number("+14155550101", ACCOUNT, override_agent_id="agent_x", ignore_e164_validation=False)
    assert isinstance(got, PhoneNumber)
    blank = check_from_number("+14155550101", ACCOUNT, override_agent_id="  ", ignore_e164_validation=False)
    assert refusal(blank, FROM_NUMBER_NOT_USABLE).details["problem"] == "no_outbound_agent"


def test_ignore_e164_validation_is_for_custom_numbers_only() -> None:
    for platform in ("+14155550100", "+14155550101"):
        r = check_from_number(platform, ACCOUNT, override_agent_id="a", ignore_e164_validation=True)
        r = refusal(r, FROM_NUMBER_NOT_USABLE)
        assert r.details["problem"] == "ignore_e164_on_platform_number" and "custom" in r.message
    got = check_from_number("+14155550102", ACCOUNT, override_agent_id=None, ignore_e164_validation=True)
    assert isinstance(got, PhoneNumber) and got.kind is CU


def test_non_e164_from_number_needs_the_flag_and_a_custom_number() -> None:
    r = check_from_number("sip-alice", ACCOUNT, override_agent_id=None, ignore_e164_validation=False)
    r = refusal(r, FROM_NUMBER_NOT_USABLE)
    assert r.details["problem"] == "not_e164" and "ignore_e164_validation=true" in r.message
    got = check_from_number("sip-alice", ACCOUNT, override_agent_id=None, ignore_e164_validation=True)
    assert isinstance(got, PhoneNumber) and got.phone_number == "sip-alice"
    r = check_from_number("sip-noagent", ACCOUNT, override_agent_id=None, ignore_e164_validation=True)
    assert refusal(r, FROM_NUMBER_NOT_USABLE).details["problem"] == "no_outbound_agent"
    r = check_from_number("sip-bob", ACCOUNT, override_agent_id=None, ignore_e164_validation=True)
    assert refusal(r, FROM_NUMBER_NOT_USABLE).details["problem"] == "not_owned"


def test_hidden_characters_in_from_number_are_shown() -> None:
    r = check_from_number("+1415555\u200b0100", ACCOUNT, override_agent_id=None, ignore_e164_validation=False)
    r = refusal(r, FROM_NUMBER_NOT_USABLE)
    assert "\\u200b" in r.message and "\u200b" not in r.message


# --- own number as destination --------------------------------------------------------------------------


def test_calling_our_own_number_is_refused() -> None:
    ours = [number("+14155550100", TW, nick="Sales line"), number("sip-alice", CU)]
    r = refusal(check_not_own_number(dest("+14155550100"), ours), DESTINATION_NOT_ALLOWED)
    assert r.details["reason"] == "own_number" and "Sales line" in r.message
    assert check_not_own_number(dest("+14155552671"), ours) is None


def test_own_number_stored_in_another_format_still_matches() -> None:
    ours = [number("+1 (415) 555-0100", CU)]
    assert check_not_own_number(dest("+14155550100"), ours) is not None
