"""Whatever string arrives as `to_number`, a call is placed only for an allowed valid number."""

from __future__ import annotations

import phonenumbers
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server_harness import TELNYX, harness, refusal_code
from uponai_mcp import guardrails
from uponai_mcp.errors import CODES
from uponai_mcp.sandbox import SandboxConfig

TELNYX_COUNTRIES = {"US", "IN", "CA"}
ALLOWED_TYPES = {"MOBILE", "FIXED_LINE", "FIXED_LINE_OR_MOBILE", "TOLL_FREE", "VOIP"}


def _examples() -> list[str]:
    out = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.PREMIUM_RATE):
            ex = phonenumbers.example_number_for_type(region, kind)
            if ex is not None:
                out.append(phonenumbers.format_number(ex, phonenumbers.PhoneNumberFormat.E164))
    return out


EXAMPLES = _examples()
numbers = st.one_of(
    st.text(max_size=30),
    st.sampled_from(EXAMPLES),
    st.sampled_from(EXAMPLES).map(lambda n: n[:-1] + "\u200b" + n[-1]),
    st.sampled_from(EXAMPLES).map(lambda n: n.replace("+", "+ ", 1)),
    st.from_regex(r"\+1[2-9][0-9]{2}[2-9][0-9]{6}", fullmatch=True),
    st.from_regex(r"\+[0-9]{1,16}", fullmatch=True),
)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    sandbox = SandboxConfig(speed=200, cps={"twilio": 1, "telnyx": 16, "custom": 1}, concurrency_limit=10_000)
    with start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(harness(
            tmp_path_factory.mktemp("prop"), sandbox=sandbox, max_attempts_per_destination_24h=10_000,
            max_calls_per_hour=10_000, max_calls_per_day=10_000,
        )) as h:
            portal.call(lambda: h.ok("set_cps", provider="telnyx", cps=16))
            yield portal, h


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(to_number=numbers)
def test_only_allowed_valid_numbers_are_dialled(live, to_number):
    portal, h = live
    before = len(portal.call(h.sandbox_calls))
    result = portal.call(lambda: h.call("create_phone_call", from_number=TELNYX, to_number=to_number))
    after = len(portal.call(h.sandbox_calls))
    dest = guardrails.check_destination(to_number)
    if result.is_error:
        assert refusal_code(result) in CODES
        assert after == before, "a refused call must not reach the platform"
    else:
        assert isinstance(dest, guardrails.Destination) and dest.e164 == to_number
        assert dest.region in TELNYX_COUNTRIES and dest.number_type in ALLOWED_TYPES
        assert to_number not in {"+14155550100", "+14155550101", "+14155550102"}
        assert after == before + 1 and result.structured_content["to_number"] == to_number
