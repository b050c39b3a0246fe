"""Pure call-state logic: the monotonic snapshot merge and the derivation of `call_failed`.

No I/O and no clock. Webhooks arrive twice and out of order, and the poller and the API feed the
same snapshot, so the merge is a join: applying the same set of inputs in any order yields the same
status, and a late input never rewinds a call (a late `call_started` does not reopen an ended call).

Ordering ("stage") of an input = (status rank, carries analysis):
    registered < <unknown status> < ongoing < ended < not_connected < error
The terminal statuses are ordered only so the merge stays order-independent; the platform never
reports two different terminal statuses for one call.
"""

from __future__ import annotations

from typing import Any

from uponai_mcp.models import TERMINAL_STATUSES, CallEventType, CallStatus

_RANK = {
    CallStatus.REGISTERED.value: 0,
    CallStatus.ONGOING.value: 2,
    CallStatus.ENDED.value: 3,
    CallStatus.NOT_CONNECTED.value: 4,
    CallStatus.ERROR.value: 5,
}
_UNKNOWN_RANK = 1  # a status the platform added later: better than nothing, never beats a known later one

TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)
FAILED_STATUSES = frozenset({CallStatus.NOT_CONNECTED.value, CallStatus.ERROR.value})

# Reasons that mean the callee was never reached (reference reliability.md §1.3 plus account-side refusals).
NOT_CONNECTED_REASONS = frozenset({
    "dial_busy", "dial_failed", "dial_no_answer", "invalid_destination",
    "telephony_provider_permission_denied", "telephony_provider_unavailable", "sip_routing_error",
    "marked_as_spam", "user_declined", "concurrency_limit_reached", "no_concurrency_fallback",
    "no_valid_payment", "scam_detected", "registered_call_timeout",
})

STARTED = CallEventType.CALL_STARTED.value
ENDED = CallEventType.CALL_ENDED.value
ANALYZED = CallEventType.CALL_ANALYZED.value
FAILED = CallEventType.CALL_FAILED.value


def _status_str(status: Any) -> str:
    return "" if status is None else str(getattr(status, "value", status))


def status_rank(status: Any) -> tuple[int, str]:
    """Sort key of a status; the name breaks ties between unknown statuses deterministically."""
    s = _status_str(status)
    if not s:
        return (-1, "")
    return (_RANK.get(s, _UNKNOWN_RANK), s)


def max_status(*statuses: Any) -> str | None:
    best = max(statuses, key=status_rank, default=None)
    return _status_str(best) or None


def is_terminal(snapshot: dict[str, Any] | None) -> bool:
    return bool(snapshot) and _status_str(snapshot.get("call_status")) in TERMINAL


def is_failed(snapshot: dict[str, Any] | None) -> bool:
    """The call never reached the callee, or ended in error."""
    if not snapshot:
        return False
    return (_status_str(snapshot.get("call_status")) in FAILED_STATUSES
            or _status_str(snapshot.get("disconnection_reason")) in NOT_CONNECTED_REASONS)


def has_analysis(snapshot: dict[str, Any] | None) -> bool:
    return bool(snapshot) and not _empty(snapshot.get("call_analysis"))


def event_status(event: str | None, call: dict[str, Any]) -> str | None:
    """The status an input proves, whatever its payload says: an event implies a floor."""
    status = _status_str(call.get("call_status")) or None
    if event == STARTED:
        return max_status(status, CallStatus.ONGOING.value)
    if event in (ENDED, ANALYZED):
        return status if status in TERMINAL else CallStatus.ENDED.value
    if event == FAILED:
        return status if status in TERMINAL else CallStatus.NOT_CONNECTED.value
    return status


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _stage(status: str | None, analyzed: bool) -> tuple[tuple[int, str], bool]:
    return (status_rank(status), analyzed)


def merge_snapshot(old: dict[str, Any] | None, event: str | None, call: dict[str, Any]) -> dict[str, Any]:
    """Merge one input (a webhook `event`, or None for an API/poller read) into the snapshot.

    Status only moves forward. Field by field: empty values never erase data (the native API has no
    transcript); an input at or past the snapshot's stage overwrites, an older one only fills gaps.
    """
    old = old or {}
    status = event_status(event, call)
    incoming_analyzed = event == ANALYZED or has_analysis(call)
    newer = _stage(status, incoming_analyzed) >= _stage(old.get("call_status"), has_analysis(old))
    merged = dict(old)
    for key, value in call.items():
        if key == "call_status" or _empty(value):
            continue
        if newer or _empty(merged.get(key)):
            merged[key] = value
    merged_status = max_status(old.get("call_status"), status)
    if merged_status is not None:
        merged["call_status"] = merged_status
    return merged


def derive_failed(old: dict[str, Any] | None, new: dict[str, Any], event: str | None) -> bool:
    """Should a `call_failed` be synthesized for this input?

    Yes when the merged call is failed and either this is its `call_ended` or it just became failed
    (an out-of-order `call_analyzed`, or a poll). The caller stores it under the dedupe key
    (call_id, "call_failed"), which makes it once per call and dedupes it against a platform-sent one.
    """
    if event == FAILED or not is_failed(new):
        return False
    return event == ENDED or not is_failed(old)
