"""Per-agent-version behaviour from the fixture, so the sandbox can stage evaluations: two versions of an
agent can differ in success rate, scripted lines, tool calls and latency, and a comparison shows it.

Fixture: a version object may carry `behaviour` (seed.py ignores keys it does not know):

    {"version": 3, "behaviour": {"success_rate": 0.9, "say": ["I can also send a summary by email."],
                                 "tools": ["send_email"], "latency_ms": [400, 800]}}

- success_rate: chance (0..1) that a connected, answered call succeeds; a failing one does not book (no
  book_appointment tool call, call_successful false, custom_analysis_data.demo_booked false).
- say: agent lines added before the goodbye; tools: tool calls made (each with an `{}` result).
- latency_ms: [low, high] range of every agent turn's end-to-end latency (p50 follows).

Determinism: calls of a version with behaviour, and evaluation calls (metadata `uponai_eval`), draw their
conversation from (sandbox seed, agent, version, request) instead of the call id, so the same suite and seed give
the same conversations in every run, whatever order the requests arrive in.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

from .conversation import Plan

EVAL_MARKER = "uponai_eval"  # the evaluation runner's metadata key (uponai_mcp.evals.plan)
_FAIL_LINE = "I'm sorry, I couldn't book that for you today. Goodbye."


@dataclass(frozen=True)
class Behaviour:
    success_rate: float = 1.0
    say: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    latency_ms: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse(seed_data: dict[str, Any]) -> dict[tuple[str, int], Behaviour]:
    """(agent_id, version) -> Behaviour from the fixture; ValueError names a bad field."""
    out: dict[tuple[str, int], Behaviour] = {}
    for i, agent in enumerate(seed_data.get("agents") or []):
        if not isinstance(agent, dict):
            continue
        for j, v in enumerate(agent.get("versions") or []):
            if not isinstance(v, dict) or "behaviour" not in v:
                continue
            out[(agent["agent_id"], v["version"])] = _behaviour(v["behaviour"], f"agents[{i}].versions[{j}].behaviour")
    return out


def _behaviour(raw: Any, where: str) -> Behaviour:
    if not isinstance(raw, dict):
        raise ValueError(f"fixture: {where} must be an object")
    unknown = set(raw) - {"success_rate", "say", "tools", "latency_ms"}
    if unknown:
        raise ValueError(f"fixture: {where}: unknown keys {', '.join(sorted(unknown))}")
    rate = raw.get("success_rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ValueError(f"fixture: {where}.success_rate must be a number from 0 to 1")
    say, tools = raw.get("say", []), raw.get("tools", [])
    for key, value in (("say", say), ("tools", tools)):
        if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
            raise ValueError(f"fixture: {where}.{key} must be a list of non-empty strings")
    latency = raw.get("latency_ms")
    if latency is not None and not (isinstance(latency, list) and len(latency) == 2 and all(
            isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in latency)
            and latency[0] <= latency[1]):
        raise ValueError(f"fixture: {where}.latency_ms must be [low, high] in ms, 0 < low <= high")
    return Behaviour(float(rate), tuple(say), tuple(tools), (float(latency[0]), float(latency[1])) if latency else None)


def request_rng(seed: int, agent_id: str, version: int, spec: Any) -> random.Random:
    """An RNG seeded by what the request asked for, not by the call id it happened to get."""
    # The client's attempt tag is new on every try: it names the request, not what was asked for.
    metadata = {k: v for k, v in (spec.metadata or {}).items() if k.replace("_", "").lower() != "uponaiattemptid"}
    key = json.dumps([seed, agent_id, version, spec.from_number, spec.to_number, metadata,
                      spec.dynamic_variables or {}], sort_keys=True, default=str)
    return random.Random(hashlib.sha256(key.encode()).hexdigest())


def wants_request_rng(spec: Any, behaviour: Behaviour | None) -> bool:
    return behaviour is not None or EVAL_MARKER in (spec.metadata or {})


def apply(plan: Plan, behaviour: Behaviour, rng: random.Random) -> Plan:
    """Rewrite an answered call's conversation and analysis for this version's behaviour."""
    analysis = plan.analysis
    if not plan.connected or "demo_booked" not in (analysis.get("custom_analysis_data") or {}) \
            or plan.disconnection_reason == "max_duration_reached":
        return plan  # voicemail, not connected, cut short: the version's behaviour never came into play
    ended = plan.ended_fields
    entries: list[dict[str, Any]] = ended["transcript_with_tool_calls"]
    success = rng.random() < behaviour.success_rate
    goodbye = entries.pop()  # the agent's last line
    t = goodbye["words"][0]["start"] if goodbye.get("words") else 0.0
    for line in behaviour.say:
        entries.append(_utterance("agent", line, t))
        t += 0.13 * len(line.split()) + 0.4
    for name in behaviour.tools:
        call_id = f"tool_{rng.getrandbits(64):016x}"
        entries.append({"role": "tool_call_invocation", "tool_call_id": call_id, "name": name, "arguments": "{}"})
        entries.append({"role": "tool_call_result", "tool_call_id": call_id, "content": "{}", "successful": True})
    if not success:
        booked = {e.get("tool_call_id") for e in entries if e.get("name") == "book_appointment"}
        entries[:] = [e for e in entries if e.get("tool_call_id") not in booked or not booked]
        goodbye = _utterance("agent", _FAIL_LINE, t)
        analysis.update(call_successful=False, user_sentiment="Negative",
                        call_summary="The agent talked with the customer but did not book a demo.",
                        custom_analysis_data={**analysis.get("custom_analysis_data", {}), "demo_booked": False})
        ended["collected_dynamic_variables"] = {}
    else:
        goodbye = _utterance("agent", goodbye["content"], t)
    entries.append(goodbye)
    utterances = [e for e in entries if "words" in e]
    ended["transcript_object"] = utterances
    ended["transcript"] = "".join(f"{u['role'].capitalize()}: {u['content']}\n" for u in utterances)
    end_s = utterances[-1]["words"][-1]["end"] if utterances[-1]["words"] else t
    plan.duration_ms = max(plan.duration_ms, round((end_s + 0.5) * 1000))
    ended["duration_ms"] = plan.duration_ms
    if behaviour.latency_ms is not None:
        lo, hi = behaviour.latency_ms
        turns = max(1, len(ended.get("latency", {}).get("e2e", {}).get("values") or []))
        ended["latency"] = {**ended.get("latency", {}), "e2e": _stats([round(rng.uniform(lo, hi)) for _ in range(turns)])}
    return plan


def _utterance(role: str, content: str, t: float) -> dict[str, Any]:
    words = []
    for w in content.split():
        words.append({"word": w, "start": round(t, 3), "end": round(t + 0.12, 3)})
        t += 0.135
    return {"role": role, "content": content, "words": words}


def _stats(values: list[float]) -> dict[str, Any]:
    s = sorted(values)

    def pct(p: float) -> float:
        return s[max(0, math.ceil(p * len(s)) - 1)]

    return {"p50": pct(0.5), "p90": pct(0.9), "p95": pct(0.95), "p99": pct(0.99), "min": s[0], "max": s[-1],
            "num": len(s), "values": values}
