"""What happens on a simulated call: timings, transcript, tool calls, latency, cost and analysis.

Everything is drawn from a per-call RNG seeded by (sandbox seed, call id), so the same call id always
gets the same conversation no matter how requests interleave. Times are nominal seconds at speed 1.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any

from uponai_mcp.models import ProviderKind

NOT_CONNECTED_REASONS = {
    "busy": "dial_busy",
    "no_answer": "dial_no_answer",
    "failed": "dial_failed",
    "invalid_destination": "invalid_destination",
    "concurrency": "concurrency_limit_reached",
}
LONG_CALL_S = 60.0
# Cents per second of call (the platform bills per second; combined_cost is in cents).
UNIT_PRICES = {
    "uponai_voice_engine": 0.1167,
    "llm_gpt_4_1": 0.0083,
    "telephony_twilio": 0.025,
    "telephony_telnyx": 0.0167,
}
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")


def substitute(text: str, variables: dict[str, str]) -> str:
    """Fill {{name}} placeholders; unknown ones stay as written, as on the platform."""
    return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


@dataclass
class Plan:
    """The whole future of one call, decided at creation."""

    connected: bool
    ring_s: float
    analysis_s: float
    disconnection_reason: str
    duration_ms: int = 0
    ended_fields: dict[str, Any] = field(default_factory=dict)
    analysis: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Turns:
    rng: random.Random
    t: float = 0.3
    utterances: list[dict[str, Any]] = field(default_factory=list)
    with_tools: list[dict[str, Any]] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    llm: list[float] = field(default_factory=list)
    tts: list[float] = field(default_factory=list)
    last_role: str | None = None

    def say(self, role: str, content: str) -> None:
        if self.last_role is not None:
            if role == "agent" and self.last_role == "user":
                gap = self.rng.uniform(0.5, 1.1)
                self.e2e.append(round(gap * 1000))
                self.llm.append(round(gap * 1000 * self.rng.uniform(0.35, 0.55)))
                self.tts.append(round(self.rng.uniform(150, 320)))
            else:
                gap = self.rng.uniform(0.2, 0.5)
            self.t += gap
        words = []
        for w in content.split():
            d = self.rng.uniform(0.1, 0.14)
            words.append({"word": w, "start": round(self.t, 3), "end": round(self.t + d, 3)})
            self.t += d + 0.015
        utterance = {"role": role, "content": content, "words": words}
        self.utterances.append(utterance)
        self.with_tools.append(utterance)
        self.last_role = role

    def tool(self, name: str, arguments: dict[str, Any], result: dict[str, Any]) -> None:
        tool_call_id = f"tool_{self.rng.getrandbits(64):016x}"
        self.with_tools.append({"role": "tool_call_invocation", "tool_call_id": tool_call_id, "name": name,
                                "arguments": json.dumps(arguments)})
        self.with_tools.append({"role": "tool_call_result", "tool_call_id": tool_call_id,
                                "content": json.dumps(result), "successful": True})
        self.t += self.rng.uniform(0.2, 0.4)


def plan_call(rng: random.Random, outcome: str, *, begin_message: str, customer: str | None,
              kind: ProviderKind, max_call_duration_ms: int | None, user_says: list[str] | None = None) -> Plan:
    """`user_says` (metadata `sandbox_user_says`): the callee's lines on an answered call, scripted; the agent
    acknowledges each and the call ends after the last one (no booking)."""
    if outcome in NOT_CONNECTED_REASONS:
        ring = {"invalid_destination": (0.3, 0.6), "failed": (0.5, 1.0), "concurrency": (0.1, 0.2)}
        lo, hi = ring.get(outcome, (1.0, 2.0))
        reason = NOT_CONNECTED_REASONS[outcome]
        return Plan(False, rng.uniform(lo, hi), rng.uniform(0.8, 1.2), reason,
                    ended_fields={"call_cost": _cost(0, kind)}, analysis=_analysis(outcome, customer, reason))
    turns = _Turns(rng)
    reason = "agent_hangup"
    if outcome == "voicemail":
        turns.say("user", f"Hi, you've reached {customer or 'this number'}. Please leave a message after the tone.")
        turns.say("agent", begin_message)
        turns.say("agent", "Please call us back when it suits you. Goodbye!")
        reason = "voicemail_reached"
    elif user_says:
        turns.say("agent", begin_message)
        for line in user_says:
            turns.say("user", line)
            turns.say("agent", "I understand.")
        turns.say("agent", "Thank you for your time. Goodbye!")
        reason = "user_hangup"
    else:
        turns.say("agent", begin_message)
        turns.say("user", rng.choice(["Sure, go ahead.", "Yes, I have a minute.", "Okay, what is it about?"]))
        if outcome == "long_call":
            _small_talk(turns, LONG_CALL_S - 3)
            reason = "user_hangup"
        turns.say("agent", "Let me check our demo calendar.")
        turns.tool("check_availability", {"range": "next_week"}, {"slots": ["Tuesday 10:00", "Thursday 14:00"]})
        turns.say("agent", "Tuesday at 10 AM is open. Shall I book it?")
        turns.say("user", rng.choice(["Yes please.", "Sure, book it.", "That works."]))
        confirmation = f"BK-{rng.getrandbits(24):06X}"
        turns.tool("book_appointment", {"slot": "Tuesday 10:00", "name": customer or "unknown"},
                   {"status": "booked", "confirmation": confirmation})
        turns.say("agent", f"Booked. Thanks{', ' + customer if customer else ''}, goodbye!")
    duration_ms = round((turns.t + 0.5) * 1000)
    if max_call_duration_ms is not None and duration_ms > max_call_duration_ms:
        duration_ms, reason = max_call_duration_ms, "max_duration_reached"
        _truncate(turns, max_call_duration_ms / 1000)
    ended = {
        "duration_ms": duration_ms,
        "transcript": "".join(f"{u['role'].capitalize()}: {u['content']}\n" for u in turns.utterances),
        "transcript_object": turns.utterances,
        "transcript_with_tool_calls": turns.with_tools,
        "latency": {"e2e": _stats(turns.e2e), "llm": _stats(turns.llm), "tts": _stats(turns.tts)},
        "call_cost": _cost(duration_ms, kind),
        "collected_dynamic_variables": {} if outcome == "voicemail" else {"appointment_slot": "Tuesday 10:00"},
    }
    analysis = _analysis(outcome, customer, reason)
    if user_says and outcome not in ("voicemail",):
        analysis.update(call_summary=f"The agent called {customer or 'the customer'}; the callee's lines were "
                        "scripted by the test.", call_successful=False, user_sentiment="Neutral",
                        custom_analysis_data={"demo_booked": False})
        ended["collected_dynamic_variables"] = {}
    return Plan(True, rng.uniform(1.0, 2.0), rng.uniform(0.8, 1.2), reason, duration_ms, ended, analysis)


_QUESTIONS = [
    ("How does pricing work?", "You pay per minute of call time, billed by the second, with no setup fee."),
    ("Can it call other countries?", "Yes, fifteen countries from our numbers, and any country over your own trunk."),
    ("Does it connect to our CRM?", "Yes, through webhooks and our API, so every call lands in your CRM."),
    ("What happens if nobody answers?", "The call ends as not connected and you can retry it later."),
    ("Can I change the voice?", "Yes, you can pick a voice per agent or even per call."),
    ("How fast can we start?", "Most teams place their first calls the same day."),
]


def _small_talk(turns: _Turns, until_s: float) -> None:
    i = 0
    while turns.t < until_s:
        question, answer = _QUESTIONS[i % len(_QUESTIONS)]
        turns.say("user", question)
        turns.say("agent", answer)
        i += 1


def _truncate(turns: _Turns, limit_s: float) -> None:
    """Cut the conversation where max_call_duration_ms hangs up."""
    for i, entry in enumerate(turns.with_tools):
        words = entry.get("words")
        if words and words[0]["start"] >= limit_s:
            del turns.with_tools[i:]
            break
        if words and words[-1]["end"] > limit_s:
            entry["words"] = [w for w in words if w["start"] < limit_s]
            entry["content"] = " ".join(w["word"] for w in entry["words"])
            del turns.with_tools[i + 1:]
            break
    turns.utterances[:] = [u for u in turns.with_tools if "words" in u]


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"values": [], "num": 0}
    s = sorted(values)

    def pct(p: float) -> float:
        return s[max(0, math.ceil(p * len(s)) - 1)]

    return {"p50": pct(0.5), "p90": pct(0.9), "p95": pct(0.95), "p99": pct(0.99), "min": s[0], "max": s[-1],
            "num": len(s), "values": values}


def _cost(duration_ms: int, kind: ProviderKind) -> dict[str, Any]:
    seconds = duration_ms / 1000
    products = ["uponai_voice_engine", "llm_gpt_4_1"]
    if kind is not ProviderKind.CUSTOM:  # imported numbers: the carrier bills telephony, not the platform
        products.append(f"telephony_{kind.value}")
    items = [{"product": p, "unit_price": UNIT_PRICES[p], "cost": round(UNIT_PRICES[p] * seconds, 4)}
             for p in products] if duration_ms else []
    return {
        "product_costs": items,
        "total_duration_seconds": math.ceil(seconds),
        "total_duration_unit_price": round(sum(UNIT_PRICES[p] for p in products), 4) if duration_ms else 0,
        "combined_cost": round(sum(i["cost"] for i in items), 4),
    }


def _analysis(outcome: str, customer: str | None, reason: str) -> dict[str, Any]:
    who = customer or "the customer"
    if outcome in NOT_CONNECTED_REASONS:
        return {"call_summary": f"The call did not connect ({reason}).", "call_successful": False,
                "user_sentiment": "Unknown", "in_voicemail": False, "custom_analysis_data": {}}
    if outcome == "voicemail":
        return {"call_summary": f"The call reached {who}'s voicemail; the agent left a short message.",
                "call_successful": False, "user_sentiment": "Neutral", "in_voicemail": True,
                "custom_analysis_data": {}}
    summary = f"The agent called {who}, answered their questions and booked a demo for Tuesday at 10 AM."
    if reason == "max_duration_reached":
        summary = f"The agent talked with {who} until the maximum call duration was reached."
    return {"call_summary": summary, "call_successful": reason != "max_duration_reached",
            "user_sentiment": "Positive" if outcome == "answered" else "Neutral", "in_voicemail": False,
            "custom_analysis_data": {"demo_booked": reason != "max_duration_reached"}}
