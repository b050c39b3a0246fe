"""The webhook receiver over real HTTP (uvicorn on loopback) with a real SQLite store: hostile requests
are refused with the right status and store nothing; valid ones are stored exactly once."""

from __future__ import annotations

import json
import sqlite3

import anyio
import pytest

from tests.webhook_helpers import (
    KEY,
    body_of,
    call_object,
    lifecycle_body,
    now_ms,
    receiver_env,
    signed,
)
from uponai_mcp import signature
from uponai_mcp.events.feed import call_events_uri, call_uri

pytestmark = pytest.mark.anyio

MINUTE_MS = 60_000


async def test_valid_event_is_stored_and_acknowledged(tmp_path):
    async with receiver_env(tmp_path) as env:
        r = await env.post(lifecycle_body("call_started", "call_a"))
        assert r.status_code == 204 and r.content == b""
        events = await env.store.call_events("call_a")
        assert [(e.event, e.source, e.derived) for e in events] == [("call_started", "webhook", False)]
        assert (await env.store.get_call_snapshot("call_a"))["call_status"] == "ongoing"
        await env.feed.drained()
        assert env.feed.published >= 3


async def test_tampered_body_is_refused(tmp_path):
    async with receiver_env(tmp_path) as env:
        body = lifecycle_body("call_ended", "call_a")
        headers = signed(body)
        tampered = body.replace(b"user_hangup", b"agent_hangup")
        r = await env.post(tampered, headers)
        assert r.status_code == 401 and "does not match" in r.json()["error"]
        assert await env.count() == 0


async def test_wrong_key_is_refused(tmp_path):
    async with receiver_env(tmp_path) as env:
        body = lifecycle_body("call_started", "call_a")
        r = await env.post(body, signed(body, key="sk_someone_else"))
        assert r.status_code == 401
        assert await env.count() == 0


async def test_missing_signature_header_is_refused(tmp_path):
    async with receiver_env(tmp_path) as env:
        body = lifecycle_body("call_started", "call_a")
        r = await env.post(body, {"content-type": "application/json"})
        assert r.status_code == 401 and "missing" in r.json()["error"]
        assert await env.count() == 0


@pytest.mark.parametrize("header", [
    "", "garbage", "v=,d=", "d={d},v={v}", "v={v}", "v={v},d=", "v={v},d={d},x=1", "v=abc,d={d}",
    "v={v},d={D}", "v={v},d={d}0", "v={v};d={d}", "v=-{v},d={d}", "t={v},v1={d}",
])
async def test_malformed_signature_headers_are_refused(tmp_path, header):
    async with receiver_env(tmp_path) as env:
        body = lifecycle_body("call_started", "call_a")
        ts = now_ms()
        d = signature.digest(KEY, body, ts)
        value = header.format(v=ts, d=d, D=d.upper())
        r = await env.post(body, {"content-type": "application/json", signature.HEADER: value})
        assert r.status_code == 401, value
        assert await env.count() == 0


@pytest.mark.parametrize(("offset_ms", "status"), [
    (-6 * MINUTE_MS, 401),  # stale
    (6 * MINUTE_MS, 401),  # from the future
    (-4 * MINUTE_MS, 204),  # inside the ±5 min window
    (4 * MINUTE_MS, 204),
])
async def test_signature_timestamp_window(tmp_path, offset_ms, status):
    async with receiver_env(tmp_path) as env:
        body = lifecycle_body("call_started", "call_a")
        r = await env.post(body, signed(body, at_ms=now_ms() + offset_ms))
        assert r.status_code == status
        assert await env.count() == (1 if status == 204 else 0)


async def test_replayed_request_is_acknowledged_and_stored_once(tmp_path):
    async with receiver_env(tmp_path) as env:
        body = lifecycle_body("call_ended", "call_a")
        headers = signed(body)
        for _ in range(3):
            assert (await env.post(body, headers)).status_code == 204
        assert [e.event for e in await env.store.call_events("call_a")] == ["call_ended"]


async def test_reserialized_json_with_non_ascii_transcript_is_refused(tmp_path):
    async with receiver_env(tmp_path) as env:
        raw = lifecycle_body("call_ended", "call_a")  # UTF-8, non-ASCII kept as is
        assert "Zoë".encode() in raw
        headers = signed(raw)
        reserialized = json.dumps(json.loads(raw)).encode()  # \u escapes: same JSON, other bytes
        assert reserialized != raw and json.loads(reserialized) == json.loads(raw)
        assert (await env.post(reserialized, headers)).status_code == 401
        assert await env.count() == 0
        assert (await env.post(raw, headers)).status_code == 204  # the raw bytes verify
        stored = (await env.store.call_events("call_a"))[0].call
        assert stored["transcript"] == json.loads(raw)["call"]["transcript"]


@pytest.mark.parametrize("body", [
    b'{"event":"call_started","call":{"call_id":"call_\xff\xfe"}}',  # not UTF-8
    json.dumps({"event": "call_started", "call": {"call_id": "call_a"}}).encode("utf-16"),  # JSON, not UTF-8
    b"\xef\xbb\xbf" + body_of("call_started", call_object("call_a")),  # UTF-8 BOM
    b'{"event":"call_started","call":',  # truncated JSON
    b"not json at all",
    b"",
    b'[{"event":"call_started","call":{"call_id":"call_a"}}]',  # not an object
    b'"call_started"',
    b'{"event":"call_transcribed","call":{"call_id":"call_a"}}',  # unknown event
    b'{"event":"CALL_STARTED","call":{"call_id":"call_a"}}',
    b'{"event":null,"call":{"call_id":"call_a"}}',
    b'{"call":{"call_id":"call_a"}}',
    b'{"event":"call_started"}',  # no call
    b'{"event":"call_started","call":{}}',  # no call_id
    b'{"event":"call_started","call":{"call_id":""}}',
    b'{"event":"call_started","call":{"call_id":42}}',
    b'{"event":"call_started","call":[]}',
    b'{"event":"call_started","call":{"call_id":"call_a","transcript_object":5}}',  # wrong shape
    b'{"event":"call_started","call":{"call_id":"call_a","start_timestamp":"yesterday"}}',
    b'{"event":"call_started","call":{"call_id":"call_a","metadata":' + b'[' * 100_000 + b']' * 100_000 + b"}}",
    b'{"event":"call_started","call":{"call_id":"call_a","duration_ms":NaN}}',  # not JSON
])
async def test_malformed_bodies_are_refused_with_400(tmp_path, body):
    async with receiver_env(tmp_path) as env:
        r = await env.post(body)  # correctly signed: the content is what is wrong
        assert r.status_code == 400, (body, r.text)
        assert await env.count() == 0


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx"])
async def test_wrong_content_type_is_refused(tmp_path, content_type):
    async with receiver_env(tmp_path) as env:
        body = lifecycle_body("call_started", "call_a")
        r = await env.post(body, signed(body, content_type=content_type))
        assert r.status_code == 400 and "content type" in r.json()["error"]
        assert await env.count() == 0


async def test_content_type_with_charset_is_accepted(tmp_path):
    async with receiver_env(tmp_path) as env:
        body = lifecycle_body("call_started", "call_a")
        r = await env.post(body, signed(body, content_type="application/json; charset=utf-8"))
        assert r.status_code == 204


async def test_oversized_bodies_are_refused_with_413(tmp_path):
    async with receiver_env(tmp_path) as env:
        call = call_object("call_big", transcript="x" * (1 << 20))
        body = body_of("call_started", call)
        r = await env.post(body)  # Content-Length says it all
        assert r.status_code == 413

        async def chunks():  # no Content-Length: counted while streaming, stopped early
            for i in range(0, len(body), 64 * 1024):
                yield body[i:i + 64 * 1024]

        r = await env.http.post(env.url, content=chunks(), headers=signed(body))
        assert r.status_code == 413
        assert await env.count() == 0
        just_fits = body_of("call_started", call_object("call_ok", transcript="y" * ((1 << 20) - 400)))
        assert len(just_fits) <= 1 << 20
        assert (await env.post(just_fits)).status_code == 204


async def test_wrong_method_and_path_are_not_500(tmp_path):
    async with receiver_env(tmp_path) as env:
        assert (await env.http.get(env.url)).status_code == 405
        assert (await env.http.post(env.url.replace("/webhooks/uponai", "/webhooks/other"))).status_code == 404
        assert await env.count() == 0


async def test_storm_of_concurrent_duplicates_stores_exactly_one(tmp_path):
    async with receiver_env(tmp_path) as env:
        body = lifecycle_body("call_ended", "call_storm")
        headers = signed(body)
        statuses: list[int] = []

        async def send() -> None:
            statuses.append((await env.post(body, headers)).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(send)
        assert statuses == [204] * 200
        assert [e.event for e in await env.store.call_events("call_storm")] == ["call_ended"]
        assert await env.count() == 1


async def test_concurrent_distinct_events_and_duplicates_nothing_lost_or_doubled(tmp_path):
    async with receiver_env(tmp_path) as env:
        bodies = [lifecycle_body(event, f"call_{i}") for i in range(60) for event in
                  ("call_started", "call_ended", "call_analyzed")]
        statuses: list[int] = []

        async def send(body: bytes) -> None:
            statuses.append((await env.post(body)).status_code)

        async with anyio.create_task_group() as tg:
            for body in bodies + bodies[::3]:  # every started event twice
                tg.start_soon(send, body)
        assert set(statuses) == {204} and len(statuses) == 240
        assert await env.count() == 180
        for i in range(60):
            rec = await env.store.get_call_record(f"call_{i}")
            assert rec.terminal and rec.analyzed and rec.status == "ended"


@pytest.mark.parametrize("order", [
    ("call_ended", "call_started", "call_analyzed"),  # ended before started
    ("call_analyzed", "call_ended", "call_started"),  # analyzed first
    ("call_analyzed", "call_started", "call_ended"),
])
async def test_out_of_order_lifecycle_ends_terminal_and_analyzed(tmp_path, order):
    async with receiver_env(tmp_path) as env:
        for event in order:
            assert (await env.post(lifecycle_body(event, "call_ooo"))).status_code == 204
        rec = await env.store.get_call_record("call_ooo")
        assert rec.status == "ended" and rec.terminal and rec.analyzed and not rec.failed
        assert rec.call["call_analysis"]["call_summary"] == "Greeted Zoë."
        assert rec.call["start_timestamp"] and rec.call["disconnection_reason"] == "user_hangup"
        assert "Zoë" in rec.call["transcript"]
        assert [e.event for e in await env.store.call_events("call_ooo")] == list(order)


async def test_never_connected_call_gets_one_call_failed_with_or_without_the_platforms(tmp_path):
    async with receiver_env(tmp_path) as env:
        for call_id, platform_sends_failed in (("call_busy_on", True), ("call_busy_off", False)):
            call = call_object(call_id, "not_connected", disconnection_reason="dial_busy", end_timestamp=1)
            events = ["call_ended"] + (["call_failed"] if platform_sends_failed else []) + ["call_analyzed"]
            for event in events:
                extra = {"call_analysis": {"call_summary": "busy"}} if event == "call_analyzed" else {}
                assert (await env.post(body_of(event, {**call, **extra}))).status_code == 204
            stored = [(e.event, e.derived) for e in await env.store.call_events(call_id)]
            assert [name for name, _ in stored].count("call_failed") == 1, stored
            assert ("call_failed", True) in stored  # derived at call_ended, before the platform's arrived
            assert (await env.store.get_call_record(call_id)).failed


async def test_storage_failure_answers_503_then_the_retry_is_stored(tmp_path):
    async with receiver_env(tmp_path, busy_timeout_ms=150) as env:
        body = lifecycle_body("call_started", "call_retry")
        headers = signed(body)
        blocker = sqlite3.connect(env.store.path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database: the insert cannot commit
            r = await env.post(body, headers)
            assert r.status_code == 503 and "retry" in r.json()["error"]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert await env.count() == 0
        assert (await env.post(body, headers)).status_code == 204  # the platform's retry
        assert (await env.post(body, headers)).status_code == 204  # and a late duplicate of it
        assert [e.event for e in await env.store.call_events("call_retry")] == ["call_started"]


async def test_feed_announces_every_stored_event(tmp_path):
    async with receiver_env(tmp_path) as env:
        seen: list[str] = []
        env.feed.bus.subscribe(lambda event: seen.append(getattr(event, "uri", type(event).__name__)))
        assert (await env.post(lifecycle_body("call_started", "call_f"))).status_code == 204
        await env.feed.drained()
        assert {call_uri("call_f"), call_events_uri("call_f"), "uponai://events/recent"} <= set(seen)
        assert "ResourcesListChanged" in seen  # a call this feed had not seen
        seen.clear()
        body = lifecycle_body("call_started", "call_f")
        assert (await env.post(body)).status_code == 204  # a duplicate: nothing changed, nothing announced
        await env.feed.drained()
        assert seen == []
