"""Webhook ingestion benchmark: signed events over real HTTP to the receiver, durably stored.

    uv run python bench/webhooks.py [--events 5000] [--concurrency 48]

The receiver runs as its own process (`python -m uponai_mcp.events.receiver`: uvicorn + the SQLite store,
WAL, synchronous=FULL, group commit), exactly as the server runs it. This process is the platform: it
POSTs distinct signed events (call_started / call_ended / call_analyzed of distinct calls) with httpx at a
fixed concurrency and times every acknowledgement (204 = committed). Afterwards it stops the receiver,
reopens the database and checks that every acknowledged event is there.

Baselines measured in the same run, on the same disk, with the same durability:
- store, direct: the same inserts through `Store.ingest_event_direct` (one transaction and fsync each,
  one at a time), i.e. SQLite with no HTTP, no signature and no batching;
- store, group commit: `Store.ingest_event` from the same number of concurrent tasks, no HTTP.
Target on a 2-core machine: >= 1,000 events/s over HTTP, p99 acknowledgement < 50 ms.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

# httpcore 1.0 looks for `sniffio` on every request; this environment does not install it (anyio 4.16 no
# longer needs it), so each lookup is a failed import that searches sys.path (~0.2 ms). A None entry makes
# the import fail at once; httpcore then assumes asyncio, which is what this runs on.
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

import anyio  # noqa: E402
import httpx  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from uponai_mcp import signature  # noqa: E402
from uponai_mcp.store import Store  # noqa: E402

KEY = "sk_bench_webhooks"
EVENTS = ("call_started", "call_ended", "call_analyzed")


def event(i: int, run: str) -> tuple[str, dict]:
    call_id = f"call_{run}_{i // 3:06d}"
    name = EVENTS[i % 3]
    call = {"call_id": call_id, "call_type": "phone_call", "agent_id": "agent_bench", "direction": "outbound",
            "from_number": "+14155550100", "to_number": "+14155552671", "call_status": "ongoing",
            "start_timestamp": 1_700_000_000_000 + i}
    if name != "call_started":
        call.update(call_status="ended", end_timestamp=1_700_000_030_000 + i, duration_ms=30_000,
                    disconnection_reason="user_hangup",
                    transcript="Agent: Hello, this is the clinic calling about your appointment.\n"
                               "User: Yes, Thursday works, thank you.")
    if name == "call_analyzed":
        call["call_analysis"] = {"call_summary": "Appointment confirmed for Thursday.", "call_successful": True}
    return name, call


def bodies(n: int, run: str) -> list[bytes]:
    import json

    return [json.dumps({"event": e, "call": c}, separators=(",", ":")).encode() for e, c in
            (event(i, run) for i in range(n))]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def start_receiver(db: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "uponai_mcp.events.receiver", "--db", str(db), "--key", KEY],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening "):
        proc.kill()
        raise SystemExit(f"receiver did not start: {line!r}")
    return proc, line.split(" ", 1)[1]


async def post_all(url: str, clients: list[httpx.AsyncClient], payloads: list[bytes]
                   ) -> tuple[float, list[float], list[int]]:
    """One worker per client, each on its own keep-alive connection (httpcore's pool scans all of its
    connections on every request, which costs more than the request itself at 48 connections)."""
    latencies: list[float] = []
    statuses: list[int] = []
    queue = iter(payloads)

    async def worker(http: httpx.AsyncClient) -> None:
        for body in queue:
            headers = {"content-type": "application/json",
                       signature.HEADER: signature.sign(KEY, body, int(time.time() * 1000))}
            t0 = time.perf_counter()
            r = await http.post(url, content=body, headers=headers)
            latencies.append(time.perf_counter() - t0)
            statuses.append(r.status_code)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for http in clients:
            tg.start_soon(worker, http)
    return time.perf_counter() - start, latencies, statuses


async def store_direct(db: Path, n: int) -> float:
    store = await Store.open(db)
    try:
        items = [event(i, "direct") for i in range(n)]
        start = time.perf_counter()
        for name, call in items:
            await store.ingest_event_direct({"event": name, "call": call})
        return n / (time.perf_counter() - start)
    finally:
        await store.close()


async def store_grouped(db: Path, n: int, concurrency: int) -> float:
    store = await Store.open(db)
    try:
        items = iter([event(i, "grouped") for i in range(n)])

        async def worker() -> None:
            for name, call in items:
                await store.ingest_event({"event": name, "call": call})

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        return n / (time.perf_counter() - start)
    finally:
        await store.close()


async def count_events(db: Path) -> int:
    store = await Store.open(db)
    try:
        return len(await store.events_since(0, limit=10_000_000))
    finally:
        await store.close()


async def main(n: int, concurrency: int, warmup: int) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    db = tmp / "receiver.db"
    proc, url = start_receiver(db)
    try:
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(
                httpx.AsyncClient(limits=httpx.Limits(max_connections=1), timeout=30, trust_env=False))
                for _ in range(concurrency)]
            await post_all(url, clients, bodies(warmup, "warm"))  # also opens the connections
            payloads = bodies(n, "run")
            elapsed, lat, statuses = await post_all(url, clients, payloads)
    finally:
        proc.send_signal(signal.SIGINT)  # a clean stop: flush and close the store
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    acked = statuses.count(204)
    stored = await count_events(db)
    direct = await store_direct(tmp / "direct.db", min(n, 2000))
    grouped = await store_grouped(tmp / "grouped.db", n, concurrency)
    rate = n / elapsed
    ms = [x * 1000 for x in lat]
    rows = [
        ("HTTP receiver (verify + store, 204 after commit)", f"{rate:,.0f}", f"{pct(ms, 50):.1f}",
         f"{pct(ms, 99):.1f}", f"{max(ms):.1f}"),
        ("store, direct (1 txn + fsync per event, no HTTP)", f"{direct:,.0f}", "", "", ""),
        ("store, group commit (same concurrency, no HTTP)", f"{grouped:,.0f}", "", "", ""),
    ]
    print(f"\nwebhook ingestion: {n} events, concurrency {concurrency}, {os.cpu_count()} CPUs, "
          f"SQLite WAL synchronous=FULL\n")
    header = ("path", "events/s", "p50 ms", "p99 ms", "max ms")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    line = lambda r: "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))  # noqa: E731
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    print(f"\nHTTP / store direct = {rate / direct:.2f}x    HTTP / store group commit = {rate / grouped:.2f}x")
    print(f"acknowledged {acked}/{n} (+{warmup} warm-up), other statuses: "
          f"{sorted(set(statuses) - {204}) or 'none'}; stored after restart {stored} "
          f"(expected {n + warmup}): {'OK' if stored == n + warmup and acked == n else 'MISMATCH'}")
    print(f"mean latency {statistics.fmean(ms):.1f} ms; target >= 1,000 events/s and p99 < 50 ms: "
          f"{'met' if rate >= 1000 and pct(ms, 99) < 50 else 'NOT met'}")
    return 0 if stored == n + warmup and acked == n else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()
    raise SystemExit(anyio.run(main, args.events, args.concurrency, args.warmup))
