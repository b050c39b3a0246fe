"""callstate.py: the monotonic snapshot merge and the call_failed derivation (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from uponai_mcp.callstate import (
    derive_failed,
    event_status,
    is_failed,
    merge_snapshot,
    status_rank,
)

CID = "call_1"


def started(**kw):
    return {"call_id": CID, "call_status": "ongoing", "start_timestamp": 1_000, "agent_id": "ag", **kw}


def ended(status="ended", reason="user_hangup", **kw):
    return {"call_id": CID, "call_status": status, "start_timestamp": 1_000, "end_timestamp": 9_000,
            "disconnection_reason": reason, "transcript": "Agent: hi\nUser: bye", **kw}


def analyzed(summary="went well", status="ended", **kw):
    return {**ended(status), "call_analysis": {"call_summary": summary, "call_successful": True}, **kw}


def fold(inputs):
    snap = None
    for event, call in inputs:
        snap = merge_snapshot(snap, event, call)
    return snap


# --- merge ---------------------------------------------------------------------------------------


def test_in_order_lifecycle():
    snap = fold([(None, {"call_id": CID, "call_status": "registered"}), ("call_started", started()),
                 ("call_ended", ended()), ("call_analyzed", analyzed())])
    assert snap["call_status"] == "ended"
    assert snap["call_analysis"]["call_summary"] == "went well"
    assert snap["transcript"] and snap["end_timestamp"] == 9_000 and snap["agent_id"] == "ag"


def test_late_call_started_never_rewinds_nor_overwrites():
    snap = fold([("call_ended", ended()), ("call_started", started(transcript="partial", extra_field="x"))])
    assert snap["call_status"] == "ended"
    assert snap["end_timestamp"] == 9_000
    assert snap["transcript"] == "Agent: hi\nUser: bye"  # the older event's value does not win
    assert snap["extra_field"] == "x" and snap["agent_id"] == "ag"  # but it fills gaps


def test_analyzed_first_then_ended_keeps_analysis_and_richer_fields():
    snap = fold([("call_analyzed", analyzed(call_cost={"combined_cost": 12})),
                 ("call_ended", ended(call_cost={"combined_cost": 3})),
                 ("call_started", started())])
    assert snap["call_status"] == "ended"
    assert snap["call_analysis"]["call_summary"] == "went well"
    assert snap["call_cost"] == {"combined_cost": 12}


def test_rerun_analysis_replaces_analysis():
    snap = fold([("call_ended", ended()), ("call_analyzed", analyzed("first")), ("call_analyzed", analyzed("second"))])
    assert snap["call_analysis"]["call_summary"] == "second"


def test_api_read_without_transcript_keeps_transcript_and_never_rewinds():
    snap = fold([("call_ended", ended()), (None, {"call_id": CID, "call_status": "ongoing", "transcript": None,
                                                  "recording_url": "https://r"})])
    assert snap["call_status"] == "ended"
    assert snap["transcript"] == "Agent: hi\nUser: bye"
    assert snap["recording_url"] == "https://r"
    same_stage = merge_snapshot(snap, None, {"call_id": CID, "call_status": "ended", "transcript": "",
                                             "duration_ms": 8_000})
    assert same_stage["transcript"] == "Agent: hi\nUser: bye" and same_stage["duration_ms"] == 8_000


def test_event_implies_a_status_floor():
    assert event_status("call_started", {"call_status": "registered"}) == "ongoing"
    assert event_status("call_ended", {}) == "ended"
    assert event_status("call_ended", {"call_status": "not_connected"}) == "not_connected"
    assert event_status("call_failed", {}) == "not_connected"
    assert event_status(None, {"call_status": "ongoing"}) == "ongoing"
    assert merge_snapshot(None, "call_started", {"call_id": CID})["call_status"] == "ongoing"


def test_unknown_status_sits_between_registered_and_ongoing():
    assert status_rank("registered") < status_rank("queued") < status_rank("ongoing") < status_rank("ended")
    snap = fold([(None, {"call_id": CID, "call_status": "registered"}), (None, {"call_id": CID, "call_status": "queued"})])
    assert snap["call_status"] == "queued"
    assert merge_snapshot(snap, "call_started", started())["call_status"] == "ongoing"
    assert merge_snapshot(fold([("call_started", started())]), None, {"call_id": CID, "call_status": "queued"}
                          )["call_status"] == "ongoing"


def test_merge_does_not_mutate_inputs():
    old = {"call_id": CID, "call_status": "ongoing"}
    new = ended()
    merge_snapshot(old, "call_ended", new)
    assert old == {"call_id": CID, "call_status": "ongoing"} and new == ended()


# --- derive_failed -------------------------------------------------------------------------------


def test_derive_failed_cases():
    nc = ended("not_connected", "dial_no_answer")
    snap = merge_snapshot(None, "call_ended", nc)
    assert derive_failed(None, snap, "call_ended")
    assert not derive_failed(None, merge_snapshot(None, "call_ended", ended()), "call_ended")
    # status ended but a not-connected reason still means the callee was never reached
    busy = merge_snapshot(None, "call_ended", ended("ended", "dial_busy"))
    assert is_failed(busy) and derive_failed(None, busy, "call_ended")
    err = merge_snapshot(None, "call_ended", ended("error", "error_llm_websocket_open"))
    assert derive_failed(None, err, "call_ended")
    # the platform's own call_failed is stored as itself, never derived again
    assert not derive_failed(None, merge_snapshot(None, "call_failed", nc), "call_failed")
    # analyzed first (out of order) derives; the later call_ended derives again (the dedupe key absorbs it)
    first = merge_snapshot(None, "call_analyzed", analyzed(status="not_connected"))
    assert derive_failed(None, first, "call_analyzed")
    assert derive_failed(first, merge_snapshot(first, "call_ended", nc), "call_ended")
    # once failed, other inputs do not derive again
    assert not derive_failed(snap, merge_snapshot(snap, "call_analyzed", analyzed(status="not_connected")),
                             "call_analyzed")
    assert not derive_failed(snap, merge_snapshot(snap, None, nc), None)
    # a poll that first shows the failure derives it
    assert derive_failed(None, merge_snapshot(None, None, nc), None)


# --- property: order and duplicates do not matter -------------------------------------------------

OUTCOMES = {"ended": "user_hangup", "not_connected": "dial_busy", "error": "error_asr"}


@st.composite
def lifecycles(draw):
    outcome = draw(st.sampled_from(sorted(OUTCOMES)))
    reason = OUTCOMES[outcome]
    events = []
    if draw(st.booleans()):
        events.append((None, {"call_id": CID, "call_status": "registered"}))
    if outcome != "not_connected" and draw(st.booleans()):
        events.append(("call_started", started()))
    if draw(st.booleans()):
        events.append(("call_ended", ended(outcome, reason)))
    for summary in draw(st.lists(st.sampled_from(["a", "b"]), max_size=2, unique=True)):
        events.append(("call_analyzed", analyzed(summary, status=outcome, disconnection_reason=reason)))
    if outcome != "ended" and draw(st.booleans()):
        events.append(("call_failed", {"call_id": CID, "call_status": outcome, "disconnection_reason": reason}))
    if not events:
        events.append(("call_started", started()))
    dups = draw(st.lists(st.sampled_from(events), max_size=4))
    return outcome, draw(st.permutations(events + dups))


def expected_status(outcome, events):
    names = {e for e, _ in events}
    if names & {"call_ended", "call_analyzed", "call_failed"}:
        return outcome
    return "ongoing" if "call_started" in names else "registered"


@given(lifecycles())
def test_any_order_with_duplicates_converges(case):
    outcome, events = case
    snap, keys = None, set()
    for event, call in events:
        old = snap
        snap = merge_snapshot(snap, event, call)
        if derive_failed(old, snap, event):
            keys.add("call_failed")  # what the store's dedupe key makes of it
        if event == "call_failed":
            keys.add("call_failed")
    names = {e for e, _ in events}
    assert snap["call_status"] == expected_status(outcome, events)
    assert ("call_analysis" in snap) == ("call_analyzed" in names)
    assert ("transcript" in snap) == bool(names & {"call_ended", "call_analyzed"})
    terminal_seen = bool(names & {"call_ended", "call_analyzed", "call_failed"})
    assert ("call_failed" in keys) == (outcome != "ended" and terminal_seen)
