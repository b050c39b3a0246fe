"""The pure parts of outreach: E.164 normalisation for the do-not-call list, opt-out detection, the spend cap
rule, caller-ID choice, retry outcomes. (End to end through MCP: test_outreach.py.)"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from uponai_mcp.guardrails import SpendCap, check_spend, normalize_loose
from uponai_mcp.guardrails.optout import Phrases, detect
from uponai_mcp.outreach.caller_id import choose
from uponai_mcp.outreach.service import outcome_of, parse_dnc_csv

E164 = "+14155552671"


@pytest.mark.parametrize("text", [
    E164, "+1 (415) 555-2671", "+1.415.555.2671", "tel:+1-415-555-2671", "0014155552671", "14155552671",
    "\uff0b\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff12\uff16\uff17\uff11", "+1\u200b415\u00a0555\u20112671",
    "+\u0661\u0664\u0661\u0665\u0665\u0665\u0665\u0662\u0666\u0667\u0661", "\u202a+14155552671\u202c",
    "+1 415 555 2671 ext. 12", "+1\u2012415\u2013555\u20142671",
])
def test_every_way_of_writing_a_number_normalises_to_one_e164(text):
    assert normalize_loose(text) == E164


@pytest.mark.parametrize("text", ["", "call me", "+", "911", "+1 415", "1-800-FLOWERS", None, 14155552671])
def test_what_is_no_number_normalises_to_none(text):
    assert normalize_loose(text) is None


def test_national_formats_need_a_region():
    assert normalize_loose("(415) 555-2671") is None
    assert normalize_loose("(415) 555-2671", "US") == E164
    assert normalize_loose("020 7946 0958", "GB") == "+442079460958"


PHRASES = Phrases.build(["leave me be forever"])


def call(*turns: tuple[str, str], **extra):
    return {"call_id": "call_1", "to_number": E164, "direction": "outbound", "call_status": "ended",
            "transcript_object": [{"role": r, "content": c} for r, c in turns], **extra}


@pytest.mark.parametrize("line", [
    "Please don't call me again.", "DON\u2019T CALL ME AGAIN!", "take me off your list", "Stop calling me, thanks",
    "Bitte rufen Sie mich nicht mehr an", "No me vuelva a llamar", "Ne m'appelez plus", "Non chiamatemi pi\u00f9",
    "Jangan telepon saya lagi", "Jangan telefon saya lagi", "Huwag mo na akong tawagan",
    "\u0e2d\u0e22\u0e48\u0e32\u0e42\u0e17\u0e23\u0e21\u0e32\u0e2d\u0e35\u0e01\u0e19\u0e30",  # Thai
    "\u3082\u3046\u96fb\u8a71\u3057\u306a\u3044\u3067\u304f\u3060\u3055\u3044",  # Japanese
    "\u0915\u0943\u092a\u092f\u093e \u092e\u0941\u091d\u0947 \u0915\u0949\u0932 \u092e\u0924 \u0915\u0930\u094b",
    "mujhe call mat karo", "Just leave me be forever.",
])
def test_the_callees_opt_out_is_found_in_any_supported_language(line):
    found = detect(call(("agent", "Hello!"), ("user", line)), PHRASES)
    assert found is not None and found.evidence == "transcript" and found.to_number == E164


@pytest.mark.parametrize("turns", [
    [("agent", "We will not call you again, don't worry."), ("user", "Thanks.")],
    [("user", "Don't call me Shirley."), ("user", "Will you stop calling if I say no?")],
    [("user", "Yes, I have a minute.")],
])
def test_no_opt_out_without_the_callee_asking(turns):
    assert detect(call(*turns), PHRASES) is None


def test_the_platforms_analysis_can_say_so_and_plain_transcripts_count():
    analysed = call(("user", "Hmm."), call_analysis={"custom_analysis_data": {"opt_out": True}})
    assert detect(analysed, PHRASES).evidence == "analysis"
    plain = {"call_id": "c", "to_number": E164, "transcript": "Agent: Hi\nUser: Remove me from your list.\n"}
    assert detect(plain, PHRASES) is not None
    assert detect({**plain, "direction": "inbound"}, PHRASES) is None


def test_spend_cap_refuses_the_call_that_could_pass_it():
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    cap = SpendCap(100, 40)
    assert check_spend(cap, spent_mc=0, in_flight=1, now=now) is None  # 40 + 40 <= 100
    refusal = check_spend(cap, spent_mc=0, in_flight=2, now=now)  # 80 + 40 > 100
    assert refusal.code == "budget_exceeded" and refusal.details["reason"] == "spend"
    assert refusal.details["retry_at"] == "2026-11-30T00:00:00Z"
    assert check_spend(cap, spent_mc=59_000, in_flight=0, now=now) is None  # 59 + 40 <= 100
    assert check_spend(cap, spent_mc=61_000, in_flight=0, now=now) is not None
    assert check_spend(SpendCap(None, 40), spent_mc=10**9, in_flight=99, now=now) is None


def test_caller_id_choice():
    pool = ["+14155550100", "+12125550100", "+13125550100"]
    assert choose("+12125550101", pool, local_presence=True) == ("+12125550100", "area_code")
    assert choose("+16465550101", pool, local_presence=True)[1] == "region"
    assert choose("+12125550101", pool, previous="+13125550100") == ("+13125550100", "sticky")
    picked = choose("+12125550101", pool)
    assert picked[1] == "hash" and choose("+12125550101", list(reversed(pool))) == picked


@pytest.mark.parametrize("snapshot,outcome", [
    ({"call_status": "ended", "disconnection_reason": "agent_hangup"}, "answered"),
    ({"call_status": "ended", "disconnection_reason": "voicemail_reached"}, "voicemail"),
    ({"call_status": "ended", "call_analysis": {"in_voicemail": True}}, "voicemail"),
    ({"call_status": "not_connected", "disconnection_reason": "dial_busy"}, "busy"),
    ({"call_status": "not_connected", "disconnection_reason": "dial_no_answer"}, "no_answer"),
    ({"call_status": "not_connected", "disconnection_reason": "invalid_destination"}, "invalid_destination"),
    ({"call_status": "error", "disconnection_reason": "dial_failed"}, "failed"),
])
def test_outcomes_for_retries(snapshot, outcome):
    assert outcome_of(snapshot) == outcome


def test_dnc_csv_with_and_without_a_header():
    rows, invalid = parse_dnc_csv("number,reason\n+1 415 555 2671,asked\nnope,\n", reason="r", default_region=None)
    assert rows == [(E164, "asked")] and invalid == ["row 3: 'nope'"]
    rows, invalid = parse_dnc_csv("\ufeff4155552671\n+442079460958\n", reason="r", default_region="US")
    assert rows == [(E164, "r"), ("+442079460958", "r")] and invalid == []


@pytest.mark.anyio
async def test_the_reservation_refuses_a_number_listed_after_the_decision_and_a_spend_past_the_cap(tmp_path):
    """The check inside the attempt's write transaction: the list and the spend cap as they are at that moment."""
    import anyio

    from uponai_mcp.config import Settings
    from uponai_mcp.dialer import Dialer
    from uponai_mcp.store import ReservationRefused, Store

    store = await Store.open(tmp_path / "x.db")
    try:
        settings = Settings(sandbox=True, data_dir=tmp_path, max_spend_per_day_cents=100, spend_estimate_cents=30,
                            max_attempts_per_destination_24h=100)
        dialer = Dialer(settings, None, store, None, None)  # type: ignore[arg-type]  # only the rule is used

        async def reserve(attempt_id: str, to: str):
            return await store.create_attempt(attempt_id, idempotency_key=None, params_hash="h", request_json="{}",
                                              from_number="+14155550100", to_number=to, scope="twilio",
                                              check=dialer.budget_check(to))

        await store.add_do_not_call(E164, reason="listed a moment ago", source="manual", added_by="test")
        with pytest.raises(ReservationRefused) as refused:
            await reserve("att_listed", E164)
        assert refused.value.reason.code == "do_not_call"

        outcomes: list[str] = []

        async def one(i: int) -> None:
            try:
                await reserve(f"att_{i}", f"+1415555{3000 + i:04d}")
                outcomes.append("ok")
            except ReservationRefused as exc:
                outcomes.append(exc.reason.details["reason"])

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)
        assert sorted(outcomes) == ["ok"] * 3 + ["spend"] * 17  # 0, 30, 60 in flight + 30 <= 100; 90 + 30 > 100
        await store.record_call_cost("nope", cost_mc=1, agent_id=None)  # unknown call: nothing changes
        assert await store.spend_today() == (0, 3)
    finally:
        await store.close()
