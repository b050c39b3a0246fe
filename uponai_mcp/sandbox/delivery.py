"""Signed webhook delivery: 10 s timeout, 3 retries, in order per call, never blocking other calls."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from uponai_mcp.signature import HEADER, sign

from .faults import Delivery, WebhookFaults

log = logging.getLogger("uponai_mcp.sandbox.delivery")

TIMEOUT_S = 10.0
RETRIES = 3
BACKOFF_S = 0.2  # 0.2, 0.4, 0.8 s at speed 1


@functools.cache
def _tls() -> ssl.SSLContext:
    # One TLS context per process: building it costs tens of ms, and sandboxes start often in tests.
    return httpx.create_ssl_context()


@dataclass
class DeliveryStats:
    counts: Counter[str] = field(default_factory=Counter)
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=500))


class Deliverer:
    def __init__(self, *, api_key: Callable[[], str], speed: Callable[[], float],
                 spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]) -> None:
        self._api_key = api_key
        self._speed = speed
        self._spawn = spawn
        self.faults = WebhookFaults()
        self.stats = DeliveryStats()
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._held: dict[str, tuple[str, str, bytes]] = {}
        self._client: httpx.AsyncClient | None = None

    def reset(self) -> None:
        self.faults = WebhookFaults()
        self.stats = DeliveryStats()
        self._chains.clear()
        self._held.clear()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def emit(self, url: str | None, call_id: str, event: str, call: dict[str, Any], final: bool) -> None:
        """Queue `event` behind the call's earlier events; the body is frozen now."""
        if not url:
            return
        body = json.dumps({"event": event, "call": call}, separators=(",", ":"), ensure_ascii=False).encode()
        plan = self.faults.take(final)
        previous = self._chains.get(call_id)
        task = self._spawn(self._run(previous, url, call_id, event, body, plan))
        self._chains[call_id] = task
        if final:
            task.add_done_callback(lambda t: self._chains.pop(call_id, None) if self._chains.get(call_id) is t else None)

    async def _run(self, previous: asyncio.Task[None] | None, url: str, call_id: str, event: str,
                   body: bytes, plan: Delivery) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])  # order per call; a failed predecessor does not stop us
            if plan.delay_s:
                await asyncio.sleep(plan.delay_s)
            if plan.drop:
                self._record(call_id, event, "dropped", 0, None)
                return
            if plan.reorder:
                self._held[call_id] = (url, event, body)
                return
            await self._send(url, call_id, event, body)
            if plan.duplicate:
                self.stats.counts["duplicated"] += 1
                await self._send(url, call_id, event, body)
            held = self._held.pop(call_id, None)
            if held is not None:
                self.stats.counts["reordered"] += 1
                held_url, held_event, held_body = held
                await self._send(held_url, call_id, held_event, held_body)
        except asyncio.CancelledError:
            raise
        except Exception:  # delivery must never take the sandbox down
            log.exception("webhook delivery of %s for %s failed unexpectedly", event, call_id)

    async def _send(self, url: str, call_id: str, event: str, body: bytes) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False, verify=_tls())
        status: int | None = None
        for attempt in range(RETRIES + 1):
            if attempt:
                self.stats.counts["retries"] += 1
                await asyncio.sleep(BACKOFF_S * 2 ** (attempt - 1) / self._speed())
            now_ms = int(time.time() * 1000)
            headers = {"content-type": "application/json", HEADER: sign(self._api_key(), body, now_ms)}
            self.stats.counts["attempts"] += 1
            try:
                response = await self._client.post(url, content=body, headers=headers)
                status = response.status_code
                if 200 <= status < 300:
                    self._record(call_id, event, "delivered", attempt + 1, status)
                    return
            except httpx.HTTPError as exc:
                status = None
                log.info("webhook %s for %s: attempt %d failed: %s", event, call_id, attempt + 1, exc)
        self._record(call_id, event, "failed", RETRIES + 1, status)

    def _record(self, call_id: str, event: str, outcome: str, attempts: int, status: int | None) -> None:
        self.stats.counts[outcome] += 1
        self.stats.log.append({"call_id": call_id, "event": event, "outcome": outcome, "attempts": attempts,
                               "status": status, "at_ms": int(time.time() * 1000)})
