"""Score one analyzed call against a case's `expect`: one named check per assertion, pure (no I/O).

The call is the merged Retell-shaped call object (the store's snapshot). Text the callee said is data here:
it is only compared, never followed.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from .suite import Expect


class Check(BaseModel):
    """One assertion's outcome. `name` is the suite key (with the item for list keys)."""

    name: str
    passed: bool
    expected: Any = None
    actual: Any = None

    @property
    def message(self) -> str:
        return f"{self.name}: expected {_short(self.expected)}, got {_short(self.actual)}"


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_of(value: Any, allowed: str | list[str]) -> bool:
    return value in ([allowed] if isinstance(allowed, str) else allowed)


def transcript_text(call: dict[str, Any]) -> str:
    text = call.get("transcript")
    if isinstance(text, str) and text:
        return text
    turns = call.get("transcript_object") or []
    return "\n".join(f"{t.get('role', '')}: {t.get('content', '')}" for t in turns if isinstance(t, dict))


def tools_called(call: dict[str, Any]) -> list[str]:
    entries = call.get("transcript_with_tool_calls") or []
    return [e["name"] for e in entries
            if isinstance(e, dict) and e.get("role") == "tool_call_invocation" and isinstance(e.get("name"), str)]


def latency_p50(call: dict[str, Any]) -> float | None:
    e2e = (call.get("latency") or {}).get("e2e") or {}
    value = e2e.get("p50")
    return float(value) if isinstance(value, int | float) else None


def duration_s(call: dict[str, Any]) -> float | None:
    ms = call.get("duration_ms")
    if isinstance(ms, int | float):
        return ms / 1000
    start, end = call.get("start_timestamp"), call.get("end_timestamp")
    if isinstance(start, int) and isinstance(end, int):
        return (end - start) / 1000
    return None


def cost_cents(call: dict[str, Any]) -> float | None:
    value = (call.get("call_cost") or {}).get("combined_cost")
    return float(value) if isinstance(value, int | float) else None


def score(expect: Expect, call: dict[str, Any]) -> list[Check]:
    analysis = call.get("call_analysis") or {}
    checks: list[Check] = []

    def add(name: str, passed: bool, expected: Any, actual: Any) -> None:
        checks.append(Check(name=name, passed=bool(passed), expected=expected, actual=actual))

    if expect.status is not None:
        add("status", _one_of(call.get("call_status"), expect.status), expect.status, call.get("call_status"))
    if expect.disconnection_reason is not None:
        reason = call.get("disconnection_reason")
        add("disconnection_reason", _one_of(reason, expect.disconnection_reason), expect.disconnection_reason, reason)
    for key in ("call_successful", "in_voicemail"):
        wanted = getattr(expect, key)
        if wanted is not None:
            add(key, analysis.get(key) is wanted, wanted, analysis.get(key))
    if expect.user_sentiment is not None:
        got = analysis.get("user_sentiment")
        add("user_sentiment", _one_of(got, expect.user_sentiment), expect.user_sentiment, got)
    text = transcript_text(call)
    low = text.lower()
    for phrase in expect.transcript_contains or ():
        add(f"transcript_contains[{phrase}]", phrase.lower() in low, phrase, "present" if phrase.lower() in low
            else "absent")
    for phrase in expect.transcript_not_contains or ():
        add(f"transcript_not_contains[{phrase}]", phrase.lower() not in low, f"not {phrase}",
            "present" if phrase.lower() in low else "absent")
    called = tools_called(call)
    for tool in expect.tool_called or ():
        add(f"tool_called[{tool}]", tool in called, tool, called)
    for tool in expect.tool_not_called or ():
        add(f"tool_not_called[{tool}]", tool not in called, f"not {tool}", called)
    if expect.max_duration_s is not None:
        got = duration_s(call)
        add("max_duration_s", got is not None and got <= expect.max_duration_s, expect.max_duration_s, got)
    if expect.max_latency_p50_ms is not None:
        got = latency_p50(call)
        add("max_latency_p50_ms", got is not None and got <= expect.max_latency_p50_ms, expect.max_latency_p50_ms, got)
    if expect.max_cost_cents is not None:
        got = cost_cents(call)
        add("max_cost_cents", got is not None and got <= expect.max_cost_cents, expect.max_cost_cents, got)
    custom = analysis.get("custom_analysis_data") or {}
    for key, wanted in (expect.custom_analysis or {}).items():
        got = custom.get(key) if isinstance(custom, dict) else None
        add(f"custom_analysis[{key}]", key in custom and got == wanted and type(got) is type(wanted), wanted, got)
    return checks
