"""What a stdio start imports before it answers tools/list (bench/startup.py measures the time). The heavy parts
load when the services are built, in the background: this keeps a new import from quietly undoing that."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["phonenumbers", "httpx", "psycopg", "yaml", "uponai_mcp.services", "uponai_mcp.dialer",
         "uponai_mcp.batches.service", "uponai_mcp.evals.service", "uponai_mcp.outreach.service",
         "uponai_mcp.api.client", "uponai_mcp.sandbox"]

PROBE = f"""
import json, sys, anyio
from uponai_mcp.config import Settings
from uponai_mcp.server import create_server
tools = anyio.run(create_server(Settings.from_env({{}})).list_tools)
print(json.dumps({{"tools": len(tools), "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def test_listing_tools_imports_none_of_the_heavy_parts() -> None:
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["tools"] > 15
    assert seen["loaded"] == [], f"imported before they are needed: {seen['loaded']}"
