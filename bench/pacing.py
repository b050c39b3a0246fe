"""CPS pacing benchmark: our pacer (through the MCP tools) vs the guide's baseline, same sandbox limit.

Baseline (the platform guide's advice): fire every call at once; on a 429 sleep 1 s, doubling,
3 tries, then give up. Ours: every call through `create_phone_call`, paced by the GCRA pacer.
For each run: calls rejected by the platform (429s), calls lost, the most calls accepted in any
rolling second, and throughput as a fraction of the CPS.

    uv run python bench/pacing.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx
from mcp import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.server_harness import sandbox_process, settings_for  # noqa: E402
from uponai_mcp import pacing  # noqa: E402
from uponai_mcp.server import create_server  # noqa: E402

RUNS = [("twilio", "+14155550100", 5, 200), ("telnyx", "+14155550101", 16, 320)]
AUTH = {"Authorization": "Bearer sk_sandbox"}


def destinations(n: int) -> list[str]:
    return [f"+1415{5552000 + i:07d}" for i in range(n)]


def throughput(created_ms: list[int], cps: int) -> float:
    created_ms = sorted(created_ms)
    if len(created_ms) < 2:
        return 0.0
    span_s = (created_ms[-1] - created_ms[0]) / 1000
    return (len(created_ms) - 1) / span_s / cps


async def sandbox_figures(http: httpx.AsyncClient, scope: str, cps: int, sent: int) -> dict:
    stats = (await http.get("/_sandbox/stats")).json()
    calls = (await http.get("/_sandbox/calls")).json()["calls"]
    return {
        "rejected": stats["rate_limited_by_scope"].get(scope, 0),
        "lost": sent - len(calls),
        "max_in_1s": stats["max_accepted_in_any_second"][scope],
        "throughput": throughput([c["created_at_ms"] for c in calls], cps),
    }


def platform(scope: str, cps: int):
    """The sandbox in its own process, enforcing `cps` for `scope`, like the real platform."""
    return sandbox_process("--speed", "200", "--concurrency", "100000", "--cps", f"{scope}={cps}")


async def run_ours(scope: str, from_number: str, cps: int, n: int) -> dict:
    async with platform(scope, cps) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as http:
        with tempfile.TemporaryDirectory() as tmp:
            settings = settings_for(url, Path(tmp), pacing_horizon_s=600, max_calls_per_hour=100_000,
                                    max_calls_per_day=100_000, max_attempts_per_destination_24h=100)
            async with Client(create_server(settings)) as client:
                await client.call_tool("set_cps", {"provider": scope, "cps": cps})
                failures = 0

                async def one(to: str) -> None:
                    nonlocal failures
                    r = await client.call_tool("create_phone_call", {"from_number": from_number, "to_number": to})
                    failures += r.is_error

                async with anyio.create_task_group() as tg:
                    for to in destinations(n):
                        tg.start_soon(one, to)
        return await sandbox_figures(http, scope, cps, n) | {"tool_errors": failures}


async def run_baseline(scope: str, from_number: str, cps: int, n: int) -> dict:
    async with platform(scope, cps) as url, httpx.AsyncClient(
        base_url=url, headers=AUTH, timeout=30, limits=httpx.Limits(max_connections=64)
    ) as http:
        async def one(to: str) -> None:
            delay = 1.0
            for _try in range(3):
                try:
                    r = await http.post("/v2/create-phone-call", json={"from_number": from_number, "to_number": to})
                except httpx.TransportError:
                    return  # the guide's client has no answer for this: the call is lost
                if r.status_code != 429:
                    return
                await anyio.sleep(delay)
                delay *= 2

        async with anyio.create_task_group() as tg:
            for to in destinations(n):
                tg.start_soon(one, to)
        return await sandbox_figures(http, scope, cps, n) | {"tool_errors": 0}


async def main() -> None:
    # The pacer makes a Twilio raise wait 10 minutes (as Twilio does); measure with the raise in force.
    pacing.TWILIO_RAISE_DELAY_S = 0.0
    rows = []
    for scope, from_number, cps, n in RUNS:
        for name, fn in (("ours", run_ours), ("baseline", run_baseline)):
            t0 = time.perf_counter()
            figures = await fn(scope, from_number, cps, n)
            rows.append((name, scope, cps, n, figures, time.perf_counter() - t0))
    print(f"{'run':<9} {'scope':<7} {'cps':>3} {'calls':>5} {'rejected':>8} {'lost':>5} {'max/1s':>6} "
          f"{'thru/cps':>8} {'wall s':>7}")
    for name, scope, cps, n, f, wall in rows:
        print(f"{name:<9} {scope:<7} {cps:>3} {n:>5} {f['rejected']:>8} {f['lost']:>5} {f['max_in_1s']:>6} "
              f"{f['throughput']:>8.3f} {wall:>7.1f}")
    by = {(r[0], r[1]): r[4] for r in rows}
    for scope, _, _, _ in RUNS:
        ours, base = by[("ours", scope)], by[("baseline", scope)]
        print(f"{scope}: ours/baseline throughput ratio {ours['throughput'] / max(base['throughput'], 1e-9):.2f}; "
              f"rejected {ours['rejected']} vs {base['rejected']}; lost {ours['lost']} vs {base['lost']}")


if __name__ == "__main__":
    anyio.run(main)
