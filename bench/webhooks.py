"""Webhook ingestion benchmark: signed events over real HTTP to the receiver, durably stored.

    uv run python bench/webhooks.py [--events 6000] [--concurrency 32] [--senders 2]

The receiver runs as its own process (`python -m uponai_mcp.events.receiver`: uvicorn + the SQLite store,
WAL, synchronous=FULL, group commit), exactly as the server runs it. The platform is played by `--senders`
processes that POST distinct signed events (call_started / call_ended / call_analyzed of distinct calls)
with httpx, `--concurrency` keep-alive connections in all, and time every acknowledgement (204 = committed).
Several sender processes because an httpx request costs its sender about twice the CPU the receiver spends
on it (~0.9 ms vs ~0.45 ms here): one sender process would measure httpx, not the receiver. Afterwards the
receiver is stopped, the database reopened and every acknowledged event looked for.

Baselines measured in the same run, on the same disk, with the same durability:
- store, direct: the same inserts through `Store.ingest_event_direct` (one transaction and fsync each,
  one at a time), i.e. SQLite with no HTTP, no signature and no batching: the bare per-event ceiling;
- store, group commit: `Store.ingest_event` from the same number of concurrent tasks, no HTTP.
Target on a 2-core machine: >= 1,000 events/s over HTTP, p99 acknowledgement < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
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


def body(i: int, run: str) -> bytes:
    name, call = event(i, run)
    return json.dumps({"event": name, "call": call}, separators=(",", ":")).encode()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


# --- a sender process ------------------------------------------------------------------------------


async def _send(url: str, indices: list[int], run: str, connections: int, warmup: list[int], start_at: float,
                client: str) -> tuple[float, float, list[float], list[int]]:
    """One worker per connection, each with its own httpx client (httpcore's pool scans all of its
    connections on every request, which costs more than the request itself at 32+ connections)."""
    latencies: list[float] = []
    statuses: list[int] = []

    async def worker(http: httpx.AsyncClient | RawConnection, queue) -> None:
        for i in queue:
            payload = body(i, run if queue is not warm else "warm")
            headers = {"content-type": "application/json",
                       signature.HEADER: signature.sign(KEY, payload, int(time.time() * 1000))}
            t0 = time.perf_counter()
            if isinstance(http, RawConnection):
                status = await http.post(payload, headers)
            else:
                status = (await http.post(url, content=payload, headers=headers)).status_code
            if queue is not warm:
                latencies.append(time.perf_counter() - t0)
                statuses.append(status)

    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(
            RawConnection(url) if client == "raw" else
            httpx.AsyncClient(limits=httpx.Limits(max_connections=1), timeout=30, trust_env=False))
            for _ in range(connections)]
        warm = iter(warmup)
        async with anyio.create_task_group() as tg:  # opens the connections
            for http in clients:
                tg.start_soon(worker, http, warm)
        await anyio.sleep(max(0.0, start_at - time.time()))
        queue = iter(indices)
        start = time.time()
        async with anyio.create_task_group() as tg:
            for http in clients:
                tg.start_soon(worker, http, queue)
        end = time.time()
    return start, end, latencies, statuses


class RawConnection:
    """A minimal keep-alive HTTP/1.1 client over one socket: what the receiver costs without httpx's
    client-side overhead in the same CPU budget."""

    def __init__(self, url: str) -> None:
        hostport, _, path = url.removeprefix("http://").partition("/")
        self.host, _, port = hostport.rpartition(":")
        self.port, self.path = int(port), "/" + path
        self.stream: anyio.abc.SocketStream | None = None
        self.buffer = b""

    async def __aenter__(self) -> RawConnection:
        self.stream = await anyio.connect_tcp(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.stream is not None
        await self.stream.aclose()

    async def post(self, payload: bytes, headers: dict[str, str]) -> int:
        assert self.stream is not None
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        await self.stream.send(f"POST {self.path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n{head}"
                               f"content-length: {len(payload)}\r\n\r\n".encode() + payload)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += await self.stream.receive()
        raw_head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = raw_head.decode("latin-1").split("\r\n")
        length = next((int(v) for k, _, v in (x.partition(":") for x in lines[1:])
                       if k.strip().lower() == "content-length"), 0)
        while len(self.buffer) < length:
            self.buffer += await self.stream.receive()
        self.buffer = self.buffer[length:]
        return int(lines[0].split()[1])


def sender(args: tuple) -> tuple[float, float, list[float], list[int], float]:
    t = time.process_time()
    result = anyio.run(_send, *args)
    return (*result, time.process_time() - t)


# --- baselines -------------------------------------------------------------------------------------


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


async def count_events(db: Path) -> tuple[int, str]:
    store = await Store.open(db)
    try:
        return len(await store.events_since(0, limit=10_000_000)), await store.integrity_check()
    finally:
        await store.close()


def run_http(n: int, concurrency: int, senders: int, warmup: int, client: str, tmp: Path) -> dict:
    """One receiver process, `senders` sender processes; returns the measurements."""
    db = tmp / f"receiver-{client}.db"
    proc, url = start_receiver(db)
    per = [list(range(s, n, senders)) for s in range(senders)]
    conns = [concurrency // senders + (1 if s < concurrency % senders else 0) for s in range(senders)]
    warm = [list(range(n + s, n + warmup, senders)) for s in range(senders)]  # distinct from the run's indices
    try:
        with ProcessPoolExecutor(senders) as pool:
            start_at = time.time() + 3.0  # every sender is up and connected by then
            cpu0 = cpu_seconds(proc.pid)
            results = list(pool.map(sender, [(url, per[s], "run", conns[s], warm[s], start_at, client)
                                             for s in range(senders)]))
            cpu1 = cpu_seconds(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)  # a clean stop: flush and close the store
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    lat = [x * 1000 for r in results for x in r[2]]
    statuses = [s for r in results for s in r[3]]
    warmed = sum(len(w) for w in warm)
    stored, integrity = anyio.run(count_events, db)
    return {
        "rate": n / (max(r[1] for r in results) - min(r[0] for r in results)), "lat": lat,
        "statuses": statuses, "acked": statuses.count(204), "warmed": warmed, "stored": stored,
        "integrity": integrity,
        "receiver_us": (cpu1 - cpu0) / (n + warmed) * 1e6,  # over the whole sending phase, warm-up included
        "sender_us": sum(r[4] for r in results) / (n + warmed) * 1e6,
    }


def main(n: int, concurrency: int, senders: int, warmup: int) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    runs = {client: run_http(n, concurrency, senders, warmup, client, tmp) for client in ("httpx", "raw")}
    direct = anyio.run(store_direct, tmp / "direct.db", min(n, 2000))
    grouped = anyio.run(store_grouped, tmp / "grouped.db", n, concurrency)
    labels = {"httpx": "HTTP receiver, httpx senders", "raw": "HTTP receiver, raw-socket senders"}
    rows = [(labels[c], f"{r['rate']:,.0f}", f"{pct(r['lat'], 50):.1f}", f"{pct(r['lat'], 99):.1f}",
             f"{max(r['lat']):.1f}", f"{r['receiver_us']:.0f}", f"{r['sender_us']:.0f}") for c, r in runs.items()]
    rows += [
        ("store direct (txn + fsync per event, no HTTP)", f"{direct:,.0f}", "", "", "", "", ""),
        ("store group commit (same concurrency, no HTTP)", f"{grouped:,.0f}", "", "", "", "", ""),
    ]
    print(f"\nwebhook ingestion: {n} events per run, {concurrency} keep-alive connections from {senders} sender "
          f"processes, {os.cpu_count()} CPUs, SQLite WAL synchronous=FULL; 204 only after the commit\n")
    header = ("path", "events/s", "p50 ms", "p99 ms", "max ms", "recv us/ev", "send us/ev")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    ok = True
    print()
    for client, r in runs.items():
        good = r["stored"] == n + r["warmed"] and r["acked"] == n and r["integrity"] == "ok"
        ok = ok and good
        print(f"{labels[client]}: {r['rate'] / direct:.2f}x store direct, {r['rate'] / grouped:.2f}x group commit; "
              f"acknowledged {r['acked']}/{n} (+{r['warmed']} warm-up), other statuses "
              f"{sorted(set(r['statuses']) - {204}) or 'none'}; stored after a clean restart {r['stored']} "
              f"(expected {n + r['warmed']}), integrity {r['integrity']}: {'OK' if good else 'MISMATCH'}; "
              f"mean {statistics.fmean(r['lat']):.1f} ms; target >= 1,000 events/s and p99 < 50 ms "
              f"{'met' if r['rate'] >= 1000 and pct(r['lat'], 99) < 50 else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive connections in all")
    parser.add_argument("--senders", type=int, default=2, help="sender processes")
    parser.add_argument("--warmup", type=int, default=600)
    args = parser.parse_args()
    raise SystemExit(main(args.events, args.concurrency, args.senders, args.warmup))
