"""Cold-start benchmark: process spawn to the `tools/list` answer over stdio.

    uv run python bench/startup.py [--runs 7]

Each run spawns a fresh process, writes initialize + initialized + tools/list to its stdin at once and
stops the clock when the tools/list answer arrives on stdout (the host's "server is ready" moment).
Runs are interleaved (baseline, ours, baseline, ours...) so machine noise hits every row alike.

Rows:
- baseline: a minimal `MCPServer` with one tool (`python floor.py`): the SDK's own floor;
- uponai-mcp, sandbox: `python -m uponai_mcp serve` with no key: the embedded sandbox, the webhook
  receiver, SQLite, the poller (what a first-time user gets);
- uponai-mcp, platform key: the same with an API key (no embedded sandbox; the platform URL points at a
  closed local port, which only the background poller notices);
and, for the profile, the bare imports: `import mcp.server` vs `import uponai_mcp.server`.
Target (issue 9): uponai-mcp within 1.25x of the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _table import print_table  # noqa: E402  (bench/ is sys.path[0] when run as a script)

TARGET = 1.25
ROOT = Path(__file__).resolve().parent.parent

FLOOR = '''
from mcp.server import MCPServer

mcp = MCPServer("floor")


@mcp.tool()
def echo(text: str) -> str:
    """Echo the text."""
    return text


mcp.run()
'''

MESSAGES = b"".join(json.dumps(m).encode() + b"\n" for m in (
    {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
))


def time_tools_list(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Seconds from spawn to the tools/list answer, and the number of tools it listed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env, cwd=cwd)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(MESSAGES)
    proc.stdin.flush()
    try:
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{cmd} closed stdout before answering tools/list")
            message = json.loads(line)
            if message.get("id") == 2:
                elapsed = time.perf_counter() - t0
                return elapsed, len(message["result"]["tools"])
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def time_import(module: str, env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], env=env, cwd=cwd, check=True)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("UPONAI_")}
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        floor = tmpdir / "floor.py"
        floor.write_text(FLOOR)
        sandbox_env = {**base_env, "UPONAI_DATA_DIR": str(tmpdir / "sandbox"), "UPONAI_LOG_LEVEL": "WARNING"}
        platform_env = {**base_env, "UPONAI_DATA_DIR": str(tmpdir / "platform"), "UPONAI_LOG_LEVEL": "WARNING",
                        "UPONAI_API_KEY": "key_bench", "UPONAI_BASE_URL": "http://127.0.0.1:9",
                        "UPONAI_WORKSPACE_ID": "1", "UPONAI_ACCOUNT_SID": "AC_bench"}
        serve = [sys.executable, "-m", "uponai_mcp", "serve"]
        rows: dict[str, list[float]] = {}
        tools: dict[str, int] = {}
        cases = [
            ("baseline: MCPServer, 1 tool", lambda: time_tools_list([sys.executable, str(floor)], base_env, tmpdir)),
            ("uponai-mcp, sandbox (no key)", lambda: time_tools_list(serve, sandbox_env, ROOT)),
            ("uponai-mcp, platform key", lambda: time_tools_list(serve, platform_env, ROOT)),
        ]
        imports = [("import mcp.server", "mcp.server"), ("import uponai_mcp.server", "uponai_mcp.server")]
        for _name, fn in cases:  # one warm-up each: bytecode caches, page cache
            fn()
        for _ in range(args.runs):
            for name, fn in cases:
                seconds, count = fn()
                rows.setdefault(name, []).append(seconds)
                tools[name] = count
            for name, module in imports:
                rows.setdefault(name, []).append(time_import(module, base_env, ROOT))

    floor_s = statistics.median(rows[cases[0][0]])
    import_floor = statistics.median(rows[imports[0][0]])
    print(f"\ncold start to tools/list over stdio: median of {args.runs} runs, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}\n")
    header = ("process", "tools", "median ms", "min ms", "max ms", "x baseline")
    table = []
    for name, samples in rows.items():
        ref = import_floor if name.startswith("import") else floor_s
        table.append((name, str(tools.get(name, "")), f"{statistics.median(samples) * 1000:.0f}",
                      f"{min(samples) * 1000:.0f}", f"{max(samples) * 1000:.0f}",
                      f"{statistics.median(samples) / ref:.2f}"))
    print_table(header, table)
    worst = max(statistics.median(rows[name]) for name, _ in cases[1:]) / floor_s
    print(f"\ntarget: within {TARGET}x of the baseline: {'met' if worst <= TARGET else 'NOT met'} (worst {worst:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
