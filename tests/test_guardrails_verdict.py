"""evaluate(): every check in order (destination, own-number, from-number, country, window, budgets)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from uponai_mcp.config import Settings
from uponai_mcp.guardrails import (
    BUDGET_EXCEEDED,
    DESTINATION_NOT_ALLOWED,
    EMERGENCY_NUMBER,
    FROM_NUMBER_NOT_USABLE,
    INVALID_NUMBER,
    NUMBER_TYPE_BLOCKED,
    OUTSIDE_CALLING_WINDOW,
    Budgets,
    CallingWindow,
    CountryPolicy,
    Destination,
    GuardrailRefusal,
    Usage,
    check_destination,
    evaluate,
)
from uponai_mcp.models import PhoneNumber, ProviderKind, WeightedAgent

ALL = ["destination", "own_number", "from_number", "country", "calling_window", "budgets"]
NOON_NY = datetime(2026, 6, 15, 16, 0, tzinfo=UTC)  # 12:00 New York, 09:00 Los Angeles
NUMBERS = [
    PhoneNumber(phone_number="+14155550100", kind=ProviderKind.TWILIO,
                outbound_agents=[WeightedAgent(agent_id="agent_out")]),
    PhoneNumber(phone_number="+14155550101", kind=ProviderKind.TELNYX),
    PhoneNumber(phone_number="+14155550102", kind=ProviderKind.CUSTOM,
                outbound_agents=[WeightedAgent(agent_id="agent_out")], allowed_outbound_country_list=["CA"]),
]
ZERO = Usage(0, 0, 0)


def run(to: str = "+12125550123", frm: str = "+14155550100", *, now: datetime = NOON_NY, **kw):
    args = dict(
        to_number=to, from_number=frm, numbers=NUMBERS, policy=CountryPolicy.from_settings(Settings()),
        window=CallingWindow.parse("08:00-21:00"), now=now, budgets=Budgets(), usage=ZERO,
    )
    args.update(kw)
    v = evaluate(**args)
    json.dumps(v.to_dict())
    return v


def test_all_checks_pass() -> None:
    v = run()
    assert v.allowed and v.refusal is None and v.checks == ALL
    assert v.destination is not None and v.destination.e164 == "+12125550123"
    assert v.from_number is not None and v.from_number.phone_number == "+14155550100"
    v.raise_for_refusal()  # no-op


@pytest.mark.parametrize(
    ("kw", "code", "passed"),
    [
        ({"to": "+1 212 555 0123"}, INVALID_NUMBER, 0),
        ({"to": "911"}, EMERGENCY_NUMBER, 0),
        ({"to": "+19005551234"}, NUMBER_TYPE_BLOCKED, 0),
        ({"to": "+14155550101"}, DESTINATION_NOT_ALLOWED, 1),  # our own number
        ({"frm": "+14155559999"}, FROM_NUMBER_NOT_USABLE, 2),
        ({"frm": "+14155550101"}, FROM_NUMBER_NOT_USABLE, 2),  # no outbound agent
        ({"to": "+18765551234"}, DESTINATION_NOT_ALLOWED, 3),  # JM
        ({"frm": "+14155550102"}, DESTINATION_NOT_ALLOWED, 3),  # carrier list: CA only
        ({"now": datetime(2026, 6, 15, 3, 0, tzinfo=UTC)}, OUTSIDE_CALLING_WINDOW, 4),
        ({"usage": Usage(3, 0, 0)}, BUDGET_EXCEEDED, 5),
    ],
)
def test_first_refusal_wins_in_order(kw: dict, code: str, passed: int) -> None:
    v = run(**kw)
    assert not v.allowed and v.refusal is not None and v.refusal.code == code, v.refusal
    assert v.checks == ALL[:passed]
    assert (v.destination is not None) is (passed >= 1)
    with pytest.raises(GuardrailRefusal) as exc:
        v.raise_for_refusal()
    assert exc.value.refusal is v.refusal and str(exc.value).startswith(f"{code}: ")


def test_destination_problems_outrank_from_number_problems() -> None:
    v = run(to="+1 212 555 0123", frm="+19999999999")
    assert v.refusal is not None and v.refusal.code == INVALID_NUMBER
    v = run(to="+14155550100", frm="nope")  # own number is checked before the caller ID
    assert v.refusal is not None and v.refusal.details["reason"] == "own_number"


def test_override_agent_and_carrier_list_flow_through() -> None:
    assert run(frm="+14155550101", override_agent_id="agent_x").allowed
    assert run(to="+14165550123", frm="+14155550102").allowed  # CA via the custom number's carrier list


def test_window_off_is_recorded() -> None:
    v = run(now=datetime(2026, 6, 15, 3, 0, tzinfo=UTC), window=CallingWindow.off())
    assert v.allowed and "calling_window:off" in v.checks


def test_budgets_need_usage_and_usage_is_read_last() -> None:
    with pytest.raises(ValueError, match="usage"):
        run(usage=None)
    seen: list[Destination] = []

    def usage(d: Destination) -> Usage:
        seen.append(d)
        return ZERO

    assert run(usage=usage).allowed and [d.e164 for d in seen] == ["+12125550123"]
    seen.clear()
    assert not run(to="+19005551234", usage=usage).allowed and seen == []  # never read the store needlessly
    v = run(budgets=None, usage=None)
    assert v.allowed and v.checks == ALL[:5]


def test_blocked_types_and_extra_zones_are_passed_on() -> None:
    assert not run(to="+18002345678", blocked_types=frozenset({"TOLL_FREE"})).allowed
    v = run(extra_zones=["Asia/Tokyo"])  # 01:00 in Tokyo
    assert v.refusal is not None and v.refusal.code == OUTSIDE_CALLING_WINDOW
    assert isinstance(check_destination("+12125550123"), Destination)
