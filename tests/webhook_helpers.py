"""Signed webhook requests and a real receiver (uvicorn + SQLite) for the event tests."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from uponai_mcp import signature
from uponai_mcp.events import receiver
from uponai_mcp.events.feed import Feed
from uponai_mcp.events.ingest import Ingest
from uponai_mcp.store import Store

KEY = "key_test_webhooks"


def now_ms() -> int:
    return int(time.time() * 1000)


def call_object(call_id: str, status: str = "ongoing", **fields: Any) -> dict[str, Any]:
    call = {"call_id": call_id, "call_type": "phone_call", "call_status": status, "agent_id": "agent_sales",
            "from_number": "+14155550100", "to_number": "+14155552671", "direction": "outbound"}
    call.update(fields)
    return call


def body_of(event: str, call: dict[str, Any], *, ascii_only: bool = False) -> bytes:
    return json.dumps({"event": event, "call": call}, separators=(",", ":"), ensure_ascii=ascii_only).encode()


def signed(body: bytes, *, key: str = KEY, at_ms: int | None = None,
           content_type: str | None = "application/json") -> dict[str, str]:
    headers = {signature.HEADER: signature.sign(key, body, now_ms() if at_ms is None else at_ms)}
    if content_type is not None:
        headers["content-type"] = content_type
    return headers


LIFECYCLE = {
    "call_started": dict(status="ongoing", start_timestamp=1_700_000_000_000),
    "call_ended": dict(status="ended", start_timestamp=1_700_000_000_000, end_timestamp=1_700_000_030_000,
                       duration_ms=30_000, disconnection_reason="user_hangup",
                       transcript="Agent: Hello Zoë, naïve café?\nUser: Ja, grüß dich 👋"),
    "call_analyzed": dict(status="ended", start_timestamp=1_700_000_000_000, end_timestamp=1_700_000_030_000,
                          duration_ms=30_000, disconnection_reason="user_hangup",
                          transcript="Agent: Hello Zoë, naïve café?\nUser: Ja, grüß dich 👋",
                          call_analysis={"call_summary": "Greeted Zoë.", "call_successful": True}),
}


def lifecycle_body(event: str, call_id: str) -> bytes:
    fields = dict(LIFECYCLE[event])
    status = fields.pop("status")
    return body_of(event, call_object(call_id, status, **fields))


@dataclass
class Env:
    url: str
    store: Store
    feed: Feed
    http: httpx.AsyncClient

    async def post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.post(self.url, content=body, headers=signed(body) if headers is None else headers)

    async def count(self) -> int:
        return len(await self.store.events_since(0, limit=1_000_000))


@asynccontextmanager
async def receiver_env(tmp_path: Path, *, busy_timeout_ms: int = 5000) -> AsyncIterator[Env]:
    """A receiver under real uvicorn on a loopback port over a real SQLite store."""
    store = await Store.open(tmp_path / "events.db", busy_timeout_ms=busy_timeout_ms)
    try:
        feed = Feed()
        app = receiver.app(Ingest(store, feed), KEY)
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with (
            feed.running(),
            receiver.serving(app) as base,
            httpx.AsyncClient(timeout=30, limits=limits, trust_env=False) as http,
        ):
            yield Env(base + receiver.WEBHOOK_PATH, store, feed, http)
    finally:
        await store.close()
