"""Batch outreach benchmark: N tasks at CPS 16 through the real MCP server against the sandbox.

    uv run python bench/batch.py [--tasks 1000] [--cps 16] [--baseline 160]

Prints a table: throughput as a fraction of the CPS (target >= 0.95), creates the platform rejected with 429
(target 0), peak memory (process RSS high-water mark, server + sandbox + client in one process), and the time
from create_batch_call to the first call reaching the platform. The baseline, measured in the same run, is what
a client does without batches: create_phone_call in 16 concurrent loops through the same pacer.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.server_harness import TELNYX, harness, sandbox_process  # noqa: E402

BUDGETS = dict(max_attempts_per_destination_24h=1_000, max_calls_per_hour=1_000_000, max_calls_per_day=1_000_000)


def numbers(n: int, start: int = 2000) -> list[str]:
    """Distinct valid US numbers (not the sandbox's own +1415555010x)."""
    return [f"+1415555{start + i:04d}" for i in range(n)]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(kind: str, n: int, cps: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        # The sandbox runs in its own process, as the platform does: our event loop cannot delay its clock.
        async with (
            sandbox_process("--speed", "1000", "--concurrency", "100000", "--cps", f"telnyx={cps}") as url,
            harness(Path(tmp), sandbox_url=url, **BUDGETS) as h,
        ):
            await h.ok("set_cps", provider="telnyx", cps=cps)
            rss_before = rss_mb()
            t0 = time.time()
            if kind == "batch":
                created = await h.ok("create_batch_call", from_number=TELNYX,
                                     tasks=[{"to_number": t} for t in numbers(n)])
                got = await h.ok("wait_for_batch", batch_id=created["batch_id"], timeout_s=600)
                assert got["finished"] and got["batch"]["counts"] == {"placed": n}, got["batch"]["counts"]
            else:
                todo = iter(numbers(n, start=5000))

                async def loop() -> None:
                    for to in todo:
                        await h.ok("create_phone_call", from_number=TELNYX, to_number=to)

                async with anyio.create_task_group() as tg:
                    for _ in range(cps):
                        tg.start_soon(loop)
            calls = await h.sandbox_calls()
            stats = (await h.http.get("/_sandbox/stats")).json()
    created_ms = sorted(c["created_at_ms"] for c in calls)
    span = (created_ms[-1] - created_ms[0]) / 1000
    return {
        "calls": len(calls),
        "throughput": (len(calls) - 1) / span / cps if span > 0 else float("nan"),
        "rejected": stats["rate_limited_by_scope"]["telnyx"],
        "max_in_1s": stats["max_accepted_in_any_second"]["telnyx"],
        "first_call_s": created_ms[0] / 1000 - t0,
        "peak_rss_mb": rss_mb(),
        "rss_growth_mb": rss_mb() - rss_before,
        "wall_s": span,
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--cps", type=int, default=16)
    ap.add_argument("--baseline", type=int, default=160, help="single calls in the baseline run (0 = skip)")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    rows = [("batch", args.tasks, await run("batch", args.tasks, args.cps))]
    if args.baseline:
        rows.append(("single calls x16", args.baseline, await run("single", args.baseline, args.cps)))
    print(f"\nBatch benchmark at CPS {args.cps} (sandbox enforcing {args.cps}; targets: throughput >= 0.95 of CPS, "
          "0 rejected)")
    print(f"{'run':<18} {'tasks':>6} {'calls':>6} {'thru/CPS':>9} {'rejected':>9} {'max/1s':>7} "
          f"{'first call':>11} {'peak RSS':>9} {'RSS +':>7} {'span':>7}")
    for name, n, r in rows:
        print(f"{name:<18} {n:>6} {r['calls']:>6} {r['throughput']:>9.3f} {r['rejected']:>9} {r['max_in_1s']:>7} "
              f"{r['first_call_s'] * 1000:>9.0f}ms {r['peak_rss_mb']:>7.0f}MB {r['rss_growth_mb']:>5.0f}MB "
              f"{r['wall_s']:>6.1f}s")
    if len(rows) == 2:
        ratio = rows[0][2]["throughput"] / rows[1][2]["throughput"]
        print(f"batch/baseline throughput ratio: {ratio:.2f}")


if __name__ == "__main__":
    anyio.run(main)
