"""list-calls filtering: Retell's typed v3 filters, the legacy v2 arrays/thresholds, and paging."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .errors import ApiError
from .parsing import is_int
from .records import CallRec

Predicate = Callable[[CallRec], bool]

_STRING_OPS = {"eq", "ne", "sw", "ew", "co"}
_NUMBER_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}


def _analysis(rec: CallRec) -> dict[str, Any]:
    return rec.data.get("call_analysis") or {}


FIELDS: dict[str, Callable[[CallRec], Any]] = {
    "call_id": lambda r: r.call_id,
    "batch_call_id": lambda r: r.data.get("batch_call_id"),
    "from_number": lambda r: r.data.get("from_number"),
    "to_number": lambda r: r.data.get("to_number"),
    "call_status": lambda r: r.status,
    "call_type": lambda r: r.data.get("call_type"),
    "direction": lambda r: r.data.get("direction"),
    "disconnection_reason": lambda r: r.data.get("disconnection_reason"),
    "data_storage_setting": lambda r: r.data.get("data_storage_setting"),
    "agent_id": lambda r: r.data.get("agent_id"),
    "version": lambda r: r.data.get("agent_version"),
    "user_sentiment": lambda r: _analysis(r).get("user_sentiment"),
    "call_successful": lambda r: _analysis(r).get("call_successful"),
    "in_voicemail": lambda r: _analysis(r).get("in_voicemail"),
    # Registered calls have no start yet; they filter by acceptance time (see docs/sandbox.md).
    "start_timestamp": lambda r: r.sort_ms,
    "end_timestamp": lambda r: r.data.get("end_timestamp"),
    "duration_ms": lambda r: r.data.get("duration_ms"),
    "combined_cost": lambda r: (r.data.get("call_cost") or {}).get("combined_cost"),
    "e2e_latency_p50": lambda r: ((r.data.get("latency") or {}).get("e2e") or {}).get("p50"),
}
_KEYED = {
    "metadata": lambda r: r.data.get("metadata") or {},
    "dynamic_variables": lambda r: r.data.get("retell_llm_dynamic_variables") or {},
    "custom_analysis_data": lambda r: _analysis(r).get("custom_analysis_data") or {},
    "custom_attributes": lambda r: r.data.get("custom_attributes") or {},
}


def _as_text(v: Any) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else json.dumps(v)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def typed(flt: Any, label: str) -> Callable[[Any], bool]:
    """A v3 ValueFilter ({type, op, value}) as a test on one field value."""
    if not isinstance(flt, dict):
        raise ApiError(400, f"filter_criteria.{label} must be a filter object {{type, op, value}}.")
    kind, op, want = flt.get("type"), flt.get("op"), flt.get("value")
    bad = ApiError(400, f"filter_criteria.{label}: invalid {kind!r} filter (op {op!r}, value {want!r}).")
    if kind == "present":
        if op not in ("pr", "np"):
            raise bad
        return lambda v: (v is not None) == (op == "pr")
    if kind == "string":
        if op not in _STRING_OPS or not isinstance(want, str):
            raise bad
        tests = {"eq": lambda s: s == want, "ne": lambda s: s != want, "sw": lambda s: s.startswith(want),
                 "ew": lambda s: s.endswith(want), "co": lambda s: want in s}
        return lambda v: (op == "ne") if _as_text(v) is None else tests[op](_as_text(v))
    if kind == "number":
        if op not in _NUMBER_OPS or not _num(want):
            raise bad
        tests = {"eq": lambda x: x == want, "ne": lambda x: x != want, "gt": lambda x: x > want,
                 "ge": lambda x: x >= want, "lt": lambda x: x < want, "le": lambda x: x <= want}
        return lambda v: _num(v) and tests[op](v)
    if kind == "range":
        if op != "bt" or not (isinstance(want, list) and len(want) == 2 and all(_num(x) for x in want)):
            raise bad
        return lambda v: _num(v) and want[0] <= v <= want[1]
    if kind == "boolean":
        if op != "eq" or not isinstance(want, bool):
            raise bad
        return lambda v: v is want
    if kind == "enum":
        if op != "in" or not isinstance(want, list):
            raise bad
        return lambda v: v in want
    raise bad


def _legacy(flt: Any, label: str) -> Callable[[Any], bool]:
    """v2 forms: a list of allowed values, or {lower_threshold, upper_threshold}."""
    if isinstance(flt, list):
        return lambda v: v in flt or _as_text(v) in flt
    if isinstance(flt, dict) and not flt.keys() - {"lower_threshold", "upper_threshold"}:
        lo, hi = flt.get("lower_threshold"), flt.get("upper_threshold")
        if (lo is not None and not _num(lo)) or (hi is not None and not _num(hi)):
            raise ApiError(400, f"filter_criteria.{label}: thresholds must be numbers.")
        return lambda v: _num(v) and (lo is None or v >= lo) and (hi is None or v <= hi)
    return typed(flt, label)


def _keyed(name: str, flt: Any) -> Predicate:
    get = _KEYED[name]
    if isinstance(flt, list):  # v3: [{key, type, op, value}, ...], all must hold
        tests = []
        for i, item in enumerate(flt):
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                raise ApiError(400, f"filter_criteria.{name}[{i}] must be a filter object with a string key.")
            tests.append((item["key"], typed(item, f"{name}[{i}]")))
        return lambda r: all(t(get(r).get(k)) for k, t in tests)
    if isinstance(flt, dict):  # v2: {"customer_id": [values]} or {"metadata.customer_id": [values]}
        tests = [(k.removeprefix(f"{name}."), _legacy(v, f"{name}.{k}")) for k, v in flt.items()]
        return lambda r: all(t(get(r).get(k)) for k, t in tests)
    raise ApiError(400, f"filter_criteria.{name} must be a list of keyed filters.")


def _agents(flt: Any) -> Predicate:
    if not isinstance(flt, list) or not all(
            isinstance(a, dict) and isinstance(a.get("agent_id"), str) and isinstance(a.get("version") or [], list)
            for a in flt):
        raise ApiError(400, "filter_criteria.agent must be a list of {agent_id, version?: [int]}.")

    def one(a: dict[str, Any], r: CallRec) -> bool:
        versions = a.get("version")
        return r.data.get("agent_id") == a["agent_id"] and (not versions or r.data.get("agent_version") in versions)

    return lambda r: any(one(a, r) for a in flt)


def _tool_calls(flt: Any) -> Predicate:
    if not isinstance(flt, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in flt):
        raise ApiError(400, "filter_criteria.tool_calls must be a list of {name, ...}.")

    def names(r: CallRec) -> set[str]:
        return {e.get("name") for e in r.data.get("transcript_with_tool_calls") or []
                if e.get("role") == "tool_call_invocation"}

    return lambda r: all(t["name"] in names(r) for t in flt)


def retell_predicate(criteria: Any) -> Predicate:
    """All given filters must hold; unknown filter names are ignored like new platform filters would be."""
    if criteria is None:
        return lambda r: True
    if not isinstance(criteria, dict):
        raise ApiError(400, "filter_criteria must be a JSON object.")
    preds: list[Predicate] = []
    for name, flt in criteria.items():
        if flt is None:
            continue
        if name == "agent":
            preds.append(_agents(flt))
        elif name == "tool_calls":
            preds.append(_tool_calls(flt))
        elif name in _KEYED:
            preds.append(_keyed(name, flt))
        elif "." in name and name.split(".", 1)[0] in _KEYED:  # v2 top-level "metadata.customer_id": [...]
            base = name.split(".", 1)[0]
            preds.append(_keyed(base, {name: flt}))
        elif name in FIELDS:
            test, get = _legacy(flt, name), FIELDS[name]
            preds.append(lambda r, test=test, get=get: test(get(r)))
    return lambda r: all(p(r) for p in preds)


def sort_key(rec: CallRec) -> tuple[int, int]:
    # Acceptance order, not start_timestamp: a call's start appears 1-2 s after creation, and a key
    # that moves would make pages skip or repeat calls while clients paginate.
    return (rec.created_at_ms, rec.seq)


def encode_key(rec: CallRec) -> str:
    """v3's opaque pagination key: the position of the last call returned."""
    return f"pk_{rec.created_at_ms}_{rec.seq}"


def decode_key(key: str) -> tuple[int, int]:
    try:
        prefix, ms, seq = key.split("_")
        if prefix != "pk":
            raise ValueError
        return int(ms), int(seq)
    except ValueError:
        raise ApiError(400, f"pagination_key {key[:60]!r} is not a key returned by this API.") from None


def page(calls: list[CallRec], *, limit: int, after: tuple[int, int] | None, sort_order: str,
         skip: int = 0) -> tuple[list[CallRec], bool]:
    """Sort by acceptance time, continue after `after`, cut a page."""
    if sort_order not in ("ascending", "descending"):
        raise ApiError(400, "sort_order must be 'ascending' or 'descending'.")
    descending = sort_order == "descending"
    ordered = sorted(calls, key=sort_key, reverse=descending)
    if after is not None:
        ordered = [r for r in ordered if (sort_key(r) < after if descending else sort_key(r) > after)]
    ordered = ordered[skip:]
    return ordered[:limit], len(ordered) > limit


def check_limit(v: Any, default: int, hi: int, label: str = "limit") -> int:
    if v is None:
        return default
    if not is_int(v) or not 1 <= v <= hi:
        raise ApiError(400, f"{label} must be an integer between 1 and {hi}.")
    return v
