"""`uponai-mcp demo`: the guide end to end, a batch followed with progress lines on stderr (not a terminal),
and screenshots of both monitors when chromium is installed."""

from __future__ import annotations

import os
import subprocess
import sys

from uponai_mcp.apps.browser import find_chromium


def test_demo_runs_shows_progress_and_saves_the_monitors(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPONAI_")}
    shots = tmp_path / "shots"
    run = subprocess.run([sys.executable, "-m", "uponai_mcp", "demo", "--screenshots", str(shots)], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert run.stdout.rstrip().endswith("Everything worked.")
    # plain progress lines (stderr is a pipe here), ending at the whole batch
    lines = [line for line in run.stderr.splitlines() if line.startswith("batch tasks settled: ")]
    assert lines and lines[-1].startswith("batch tasks settled: 6/6 100.0%") and "\r" not in run.stderr
    if find_chromium() is None:
        assert "no chromium" in run.stdout
    else:
        for name in ("call", "batch"):
            png = shots / f"{name}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000, name
