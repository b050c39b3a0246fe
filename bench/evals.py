"""Evaluation benchmark: the CLI at scale, and run_eval over MCP against create_batch_call.

    uv run python bench/evals.py [--calls 10000] [--cps 200] [--speed 100] [--mcp-calls 1000] [--mcp-cps 50]

1. `uponai-mcp eval` as a user runs it (a subprocess; no API key, so it starts its sandbox child): --calls calls on
   custom telephony at --cps, sandbox speed --speed, from the command to the last analyzed call. Reported against
   the pacing floor (N-1)/CPS (target: at most 1.2x), with the evaluation process's peak RSS.
2. run_eval over MCP (mcp.Client, in-process server, the sandbox in its own process, webhooks to the server's
   receiver): --mcp-calls calls at --mcp-cps until every call is analyzed and scored. Baseline in the same run:
   create_batch_call with the same calls, then wait_for_batch(until=ended) and wait_for_call(until=analyzed) on the
   last calls dialled (what a client does without run_eval; measured from outside before run_eval: 26 s for
   1,000 at CPS 50, floor 20 s).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _table import print_table  # noqa: E402

from tests.server_harness import harness  # noqa: E402
from uponai_mcp.evals.stage import sandbox_stage  # noqa: E402
from uponai_mcp.sandbox import SandboxConfig  # noqa: E402

CUSTOM = "+14155550102"
BUDGETS = dict(max_attempts_per_destination_24h=100_000, max_calls_per_hour=1_000_000, max_calls_per_day=1_000_000)


def fixture(tmp: Path) -> Path:
    """The default account, with an outbound agent on the imported (custom telephony) number."""
    from uponai_mcp.sandbox.seed import DEFAULT_SEED

    data = json.loads(json.dumps(DEFAULT_SEED))
    for number in data["phone_numbers"]:
        if number["phone_number"] == CUSTOM:
            number["outbound_agents"] = [{"agent_id": "agent_sales", "agent_version": 3, "weight": 1}]
    path = tmp / "fixture.json"
    path.write_text(json.dumps(data))
    return path


def suite(n: int, name: str) -> dict:
    """n calls: 100 answered destinations (fewer when n < 100) x repeats."""
    cases, i = [], 0
    width = min(100, n)
    while len(cases) < width:
        if i % 10 < 4:  # the sandbox answers numbers ending in 0-3
            cases.append({"name": f"case {len(cases)}", "to_number": f"+1212555{2000 + i:04d}",
                          "expect": {"status": "ended", "call_successful": True}})
        i += 1
    return {"name": name, "from_number": CUSTOM, "repeat": max(1, n // width), "timeout_s": 600, "cases": cases}


def peak_rss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else None


def cli_run(n: int, cps: int, speed: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        path = tmp_path / "suite.json"
        path.write_text(json.dumps(suite(n, "bench-cli")))
        env = {k: v for k, v in os.environ.items() if not k.startswith("UPONAI_")}
        env["UPONAI_DATA_DIR"] = str(tmp_path / "data")
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "uponai_mcp", "eval", str(path), "--cps", str(cps), "--speed", str(speed),
             "--fixture", str(fixture(tmp_path)), "--json", str(tmp_path / "report.json")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started = None
        peak = 0.0
        assert proc.stderr is not None
        for line in proc.stderr:  # progress lines arrive every tenth of the run; RSS sampled with them
            if started is None and "resume with --resume" in line:
                started = time.monotonic()
            peak = max(peak, peak_rss_mb(proc.pid) or 0.0)
        code = proc.wait()
        end = time.monotonic()
        report = json.loads((tmp_path / "report.json").read_text())
    s = report["summary"]
    assert code == 0 and s["passed"] == s["items"] == n, (code, s["passed"], s["items"])
    floor = (n - 1) / cps
    return {"calls": n, "wall_s": end - t0, "run_s": end - (started or t0), "floor_s": floor, "peak_rss_mb": peak}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def mcp_run(kind: str, n: int, cps: int, speed: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        port = free_port()
        async with (
            # The sandbox in its own process, as the platform is; its stderr is drained (a full pipe would stall it).
            sandbox_stage(SandboxConfig(speed=speed, concurrency_limit=100_000, cps={"custom": cps},
                                        fixture=fixture(tmp_path),
                                        webhook_url=f"http://127.0.0.1:{port}/webhooks/uponai")) as stage,
            harness(tmp_path, sandbox_url=stage.url, dialect="retell", webhook_listen=f"127.0.0.1:{port}",
                    read_timeout_s=30.0, create_timeout_s=30.0, **BUDGETS) as h,
        ):
            await h.ok("set_cps", provider="custom", cps=cps)
            spec = suite(n, f"bench-{kind}")
            t0 = time.monotonic()
            if kind == "run_eval":
                out = await h.ok("run_eval", suite=spec, wait_s=600)
                assert out["finished"] and out["scored"] == n, out
            else:
                tasks = [{"to_number": c["to_number"]} for c in spec["cases"] for _ in range(spec["repeat"])]
                created = await h.ok("create_batch_call", from_number=CUSTOM, tasks=tasks)
                batch_id = created["batch_id"]
                deadline = time.monotonic() + 900
                while not (done := await h.ok("wait_for_batch", batch_id=batch_id, timeout_s=60, until="ended"))[
                        "finished"]:
                    assert time.monotonic() < deadline, done["batch"]["counts"]
                page = await h.ok("get_batch", batch_id=batch_id, tasks_offset=max(0, n - 20), tasks_limit=20)
                for task in page["tasks"]:
                    got = await h.ok("wait_for_call", call_id=task["call_id"], until="analyzed", timeout_s=120)
                    assert got["reached"], got["note"]
            wall = time.monotonic() - t0
            calls = await h.sandbox_calls()
    assert len(calls) == n, len(calls)
    return {"calls": n, "wall_s": wall, "floor_s": (n - 1) / cps}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=10_000, help="calls of the CLI run")
    ap.add_argument("--cps", type=int, default=200)
    ap.add_argument("--speed", type=float, default=100)
    ap.add_argument("--mcp-calls", type=int, default=1000, help="calls of the MCP runs (0 = skip)")
    ap.add_argument("--mcp-cps", type=int, default=50)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    header = ["run", "calls", "CPS", "wall s", "run s", "floor s", "run/floor", "peak RSS MB"]
    title = (f"Evaluation benchmark (custom telephony, sandbox speed {args.speed:g}; target: run <= 1.2x the pacing "
             "floor (N-1)/CPS)")
    rows = []
    cli = cli_run(args.calls, args.cps, args.speed)
    rows.append(["uponai-mcp eval (CLI)", f"{cli['calls']:,}", str(args.cps), f"{cli['wall_s']:.1f}",
                 f"{cli['run_s']:.1f}", f"{cli['floor_s']:.1f}", f"{cli['run_s'] / cli['floor_s']:.2f}",
                 f"{cli['peak_rss_mb']:.0f}"])
    print(f"CLI: {rows[-1]}", file=sys.stderr, flush=True)  # kept even if an MCP run fails
    walls = {}
    for kind in ("create_batch_call", "run_eval") if args.mcp_calls else ():
        try:
            r = anyio.run(mcp_run, kind, args.mcp_calls, args.mcp_cps, args.speed)
        except Exception as exc:  # noqa: BLE001 - one failed run is a row, not the end of the benchmark
            rows.append([f"{kind} (MCP)", f"{args.mcp_calls:,}", str(args.mcp_cps), "failed", "-", "-", "-",
                         f"{type(exc).__name__}"])
            print(f"{kind} failed: {exc!r}"[:2000], file=sys.stderr)
            continue
        walls[kind] = r["wall_s"]
        rows.append([f"{kind} (MCP)", f"{r['calls']:,}", str(args.mcp_cps), f"{r['wall_s']:.1f}",
                     f"{r['wall_s']:.1f}", f"{r['floor_s']:.1f}", f"{r['wall_s'] / r['floor_s']:.2f}", "-"])
    print("\n" + title)
    print_table(header, rows)
    if len(walls) == 2:
        print(f"run_eval / create_batch_call wall: {walls['run_eval'] / walls['create_batch_call']:.2f} "
              "(the baseline waits on its last calls only; run_eval scores every call)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
