"""The model-visible tool list: each tool's size (name, description, input schema as compact JSON) and the total,
against the figures measured before the strict contract (issue 9: 30,807 bytes for 17 tools, $ref in four).

    uv run --frozen python bench/tool_schemas.py

Targets: total <= 20,000 bytes (~5K tokens at ~4 bytes/token), no `$ref` in any input schema, descriptions on one
line. The "strict" column says whether OpenAI's strict function calling can take the tool once a host makes its
optional parameters nullable and required (as the Agents SDK does): "yes" when every object is closed, "maps"
when it has free-form maps (metadata, dynamic variables, SIP headers, agent overrides), which strict mode cannot
express: such tools need non-strict mode.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _table import print_table  # noqa: E402  (bench/ is sys.path[0] when run as a script)

from uponai_mcp.config import Settings  # noqa: E402
from uponai_mcp.server import create_server  # noqa: E402

BEFORE = {  # bytes per tool before the contract (same measure), from the measurement run
    "create_phone_call": 6020, "confirm_call": 469, "preflight_call": 5243, "get_call": 451, "list_calls": 1403,
    "list_phone_numbers": 223, "list_agents": 165, "bind_agent": 2706, "get_cps": 197, "set_cps": 695,
    "wait_for_call": 967, "create_batch_call": 9089, "confirm_batch": 684, "cancel_batch": 398, "get_batch": 922,
    "list_batches": 499, "wait_for_batch": 676,
}
TARGET = 20_000


def openai_strict(schema: object) -> bool:
    """Every object closed (additionalProperties false): no free-form map anywhere."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and schema.get("additionalProperties") is not False:
            return False
        return all(openai_strict(v) for k, v in schema.items() if k != "properties") and all(
            openai_strict(v) for v in (schema.get("properties") or {}).values())
    if isinstance(schema, list):
        return all(openai_strict(v) for v in schema)
    return True


async def main() -> int:
    tools = await create_server(Settings.from_env()).list_tools()
    rows, total, before_total = [], 0, 0
    problems = []
    for t in tools:
        size = len(json.dumps({"name": t.name, "description": t.description, "inputSchema": t.input_schema},
                              separators=(",", ":")))
        total += size
        before = BEFORE.get(t.name)
        before_total += before or 0
        text = json.dumps(t.input_schema)
        if "$ref" in text:
            problems.append(f"{t.name}: $ref in its input schema")
        if "\n" in (t.description or ""):
            problems.append(f"{t.name}: description spans lines")
        rows.append([t.name, f"{before:,}" if before else "new", f"{size:,}",
                     f"{size / before:.2f}" if before else "-", "yes" if openai_strict(t.input_schema) else "maps"])
    rows.append(["total", f"{before_total:,}", f"{total:,}", f"{total / before_total:.2f}" if before_total else "-",
                 ""])
    print_table(["tool", "before (B)", "now (B)", "ratio", "strict"], rows)
    print(f"\n{len(tools)} tools, {total:,} bytes (~{total // 4:,} tokens); target <= {TARGET:,}: "
          f"{'met' if total <= TARGET else 'MISSED'}")
    for p in problems:
        print("problem:", p)
    return 0 if total <= TARGET and not problems else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main))
