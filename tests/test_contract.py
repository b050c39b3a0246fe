"""The tool contract, from the outside (mcp.Client against the real sandbox):

- table-driven over every tool and each class of bad argument (unknown key, wrong type, out of range,
  non-finite, too deep, too long): every answer is `invalid_argument` in the structured shape, nothing is
  dialled, no budget is spent;
- idempotency survives confirmation (token bound to the key);
- read-only mode is coherent;
- one create is one platform request when the caches are warm;
- budgets are reservations: concurrent callers against a cap of one place exactly one call.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.server_harness import TELNYX, TWILIO, harness, refusal_code
from tests.stdio_helpers import stdio_peer
from uponai_mcp.errors import ERROR_META_KEY

pytestmark = pytest.mark.anyio

TO = "+14155552671"
SERVE = [sys.executable, "-m", "uponai_mcp", "serve"]
# Valid values for required arguments, by name; other required arguments get a value of their type.
SAMPLES: dict[str, Any] = {
    "from_number": TWILIO, "to_number": TO, "call_id": "call_unknown", "phone_number": TWILIO,
    "provider": "telnyx", "cps": 2, "batch_id": "batch_unknown", "token": "cfm_unknown",
}


def _sample(name: str, schema: dict[str, Any]) -> Any:
    if name in SAMPLES:
        return SAMPLES[name]
    return {"string": "x", "integer": 1, "number": 1.0, "boolean": False, "object": {}, "array": []}.get(
        schema.get("type", "string"), "x")


def _wrong_type(schema: dict[str, Any]) -> list[Any]:
    """Values of another JSON type, including the coercions pydantic's lax mode would accept."""
    kind = schema.get("type")
    if "enum" in schema or kind == "string":
        return [123, True]
    return {"integer": ["2", True, 2.5], "number": ["1.5", True], "boolean": ["true", 1],
            "object": ["x", [1]], "array": ["x", {"a": 1}]}.get(kind, [])


def _out_of_range(schema: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    if "minimum" in schema:
        out.append(schema["minimum"] - 1)
    if "exclusiveMinimum" in schema:
        out.append(schema["exclusiveMinimum"])
    if "maximum" in schema:
        out.append(schema["maximum"] + 1)
    if "maxLength" in schema and schema["maxLength"] <= 100_000:
        out.append("x" * (schema["maxLength"] + 1))
    if "minLength" in schema and schema["minLength"] > 0:
        out.append("")
    if "maxItems" in schema and schema["maxItems"] <= 100:
        out.append([{}] * (schema["maxItems"] + 1))
    return out


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def bad_calls(tools: list[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(tool, case, arguments) for every tool and every class of bad argument."""
    cases: list[tuple[str, str, dict[str, Any]]] = []
    for tool in tools:
        props: dict[str, Any] = tool.input_schema.get("properties", {})
        base = {n: _sample(n, props[n]) for n in tool.input_schema.get("required", [])}
        cases.append((tool.name, "unknown key", {**base, "zz_unknown": 1}))
        for name, schema in props.items():
            for value in _wrong_type(schema):
                cases.append((tool.name, f"{name} wrong type {value!r:.20}", {**base, name: value}))
            for value in _out_of_range(schema):
                cases.append((tool.name, f"{name} out of range {str(value)[:20]}", {**base, name: value}))
            if schema.get("type") == "object":
                cases.append((tool.name, f"{name} too deep", {**base, name: _deep(50)}))
                if schema.get("additionalProperties") is False:
                    cases.append((tool.name, f"{name} unknown nested key", {**base, name: {"zz_unknown": 1}}))
            items = schema.get("items") or {}
            if schema.get("type") == "array" and items.get("additionalProperties") is False:
                cases.append((tool.name, f"{name}[0] unknown key", {**base, name: [{"zz_unknown": 1}]}))
    return cases


def non_finite_calls(tools: list[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """NaN and Infinity in every numeric argument and inside every object argument. A pydantic-based client
    turns them into null, so these go over a raw stdio pipe as the JSON literals a hostile peer sends."""
    cases: list[tuple[str, str, dict[str, Any]]] = []
    for tool in tools:
        props: dict[str, Any] = tool["inputSchema"].get("properties", {})
        base = {n: _sample(n, props[n]) for n in tool["inputSchema"].get("required", [])}
        for name, schema in props.items():
            if schema.get("type") in ("number", "integer"):
                cases += [(tool["name"], f"{name}={v}", {**base, name: v}) for v in (math.nan, math.inf, -math.inf)]
            if schema.get("type") == "object":
                cases.append((tool["name"], f"{name}.k=NaN", {**base, name: {"k": math.nan}}))
    return cases


def attempts_in_ledger(data_dir: Path) -> int:
    dbs = list(data_dir.glob("*.db"))
    if not dbs:
        return 0
    with sqlite3.connect(f"file:{dbs[0]}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]


async def test_every_bad_argument_is_refused_with_a_code_and_spends_nothing(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        tools = (await h.client.list_tools()).tools
        cases = bad_calls(tools)
        assert len({c[0] for c in cases}) == len(tools) and len(cases) > 200
        wrong: list[str] = []
        for tool, case, args in cases:
            result = await h.call(tool, **args)
            code = refusal_code(result) if result.is_error else None
            if code != "invalid_argument":
                wrong.append(f"{tool} [{case}]: {code or 'accepted'}: {result.content[0].text[:120]}")
        assert not wrong, "\n".join(wrong[:30])
        assert await h.sandbox_calls() == []
        assert attempts_in_ledger(tmp_path) == 0


async def test_nan_and_infinity_on_the_wire_are_refused_and_spend_nothing(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "UPONAI_SANDBOX": "1", "UPONAI_DATA_DIR": str(tmp_path),
           "UPONAI_CONFIRM": "never", "UPONAI_CALLING_WINDOW": "off"}
    async with stdio_peer(SERVE, env=env, cwd=tmp_path) as peer:
        await peer.initialize()
        tools = (await peer.request("tools/list"))["result"]["tools"]
        cases = non_finite_calls(tools)
        assert len(cases) > 20
        wrong = []
        for tool, case, args in cases:
            answer = await peer.call_tool(tool, args)
            result = answer.get("result") or {}
            data = (result.get("_meta") or {}).get(ERROR_META_KEY) or {}
            if not (result.get("isError") and data.get("code") == "invalid_argument"
                    and result["content"][0]["text"].startswith("invalid_argument: ")
                    and "structuredContent" not in result):
                wrong.append(f"{tool} [{case}]: {json.dumps(answer)[:200]}")
        assert not wrong, "\n".join(wrong[:20])
    assert attempts_in_ledger(tmp_path) == 0


@pytest.mark.parametrize(("args", "field"), [
    ({"agent_id": "agent_support"}, "agent_id"),
    ({"idempotencyKey": "k1"}, "idempotencyKey"),
    ({"override_agent_version": True}, "override_agent_version"),
    ({"override_agent_version": "2"}, "override_agent_version"),
    ({"ignore_e164_validation": "true"}, "ignore_e164_validation"),
    ({"agent_override": {"agent": {"voiceId": "x"}}}, "agent_override"),
])
async def test_model_slips_never_dial(tmp_path: Path, args: dict[str, Any], field: str) -> None:
    async with harness(tmp_path) as h:
        result = await h.call("create_phone_call", from_number=TWILIO, to_number=TO, **args)
        assert refusal_code(result) == "invalid_argument"
        data = result.meta[ERROR_META_KEY]
        assert data["details"]["field"].startswith(field) and field.split(".")[0] in data["message"]
        assert await h.sandbox_calls() == [] and attempts_in_ledger(tmp_path) == 0


async def test_ids_and_times_that_reach_no_other_route(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        for call_id in (".", "..", "..."):
            assert await h.refused("get_call", call_id=call_id) == "not_found"
        assert await h.refused("list_calls", start_after_ms=10**16) == "invalid_argument"
        assert await h.refused("list_calls", start_before_ms=-1) == "invalid_argument"


async def test_metadata_limit_counts_the_servers_tag(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        # Fits 50 kB on its own, but not with the attempt tag the server adds: refused here, not upstream.
        metadata = {"blob": "x" * (50_000 - len(json.dumps({"blob": ""})) - 10)}
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=TO,
                               metadata=metadata) == "invalid_argument"
        ok = await h.ok("create_phone_call", from_number=TWILIO, to_number=TO,
                        metadata={"blob": "x" * 49_000})
        assert ok["call_id"]


async def test_unknown_tool_and_errors_never_carry_structured_content(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert await h.refused("no_such_tool") == "unknown_tool"
        result = await h.call("get_call", call_id="call_missing")
        assert refusal_code(result) == "not_found" and result.structured_content is None


async def test_idempotency_survives_confirmation(tmp_path: Path) -> None:
    async with harness(tmp_path, confirm="always") as h:
        first = await h.call("create_phone_call", from_number=TWILIO, to_number=TO, idempotency_key="K")
        assert refusal_code(first) == "confirmation_required"
        details = first.meta[ERROR_META_KEY]["details"]
        assert details["token"].startswith("cfm_") and details["expires_at"] and details["summary"]
        placed = await h.ok("confirm_call", token=details["token"])
        again = await h.ok("create_phone_call", from_number=TWILIO, to_number=TO, idempotency_key="K")
        assert again["replayed"] and again["call_id"] == placed["call_id"]
        assert len(await h.sandbox_calls()) == 1
        # The same key with other parameters is still a conflict, not a new question.
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number="+14155552672",
                               idempotency_key="K") == "idempotency_conflict"


async def test_token_of_another_key_is_refused(tmp_path: Path) -> None:
    async with harness(tmp_path, confirm="always") as h:
        first = await h.call("create_phone_call", from_number=TWILIO, to_number=TO, idempotency_key="K1")
        token = first.meta[ERROR_META_KEY]["details"]["token"]
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=TO, idempotency_key="K2",
                               confirmation_token=token) == "confirmation_invalid"
        assert await h.sandbox_calls() == []


async def test_read_only_mode_is_coherent(tmp_path: Path) -> None:
    async with harness(tmp_path, read_only=True) as h:
        names = {t.name for t in (await h.client.list_tools()).tools}
        assert "create_phone_call" not in names and "get_call" in names
        instructions = h.client.instructions or ""
        assert "read-only" in instructions and "create_phone_call" not in instructions
        for tool, args in (("create_phone_call", {"from_number": TWILIO, "to_number": TO}),
                           ("set_cps", {"provider": "telnyx", "cps": 2}), ("confirm_call", {"token": "x"})):
            assert await h.refused(tool, **args) == "read_only"
        verdict = await h.ok("preflight_call", from_number=TWILIO, to_number=TO)
        assert verdict["allowed"] is False and verdict["code"] == "read_only"
        assert await h.sandbox_calls() == []


async def test_a_warm_create_is_one_platform_request(tmp_path: Path) -> None:
    async def requests() -> int:  # less the reads the event poller makes on its own schedule
        by_route = (await h.http.get("/_sandbox/stats")).json()["requests_by_route"]
        return sum(n for route, n in by_route.items() if route not in ("get_call", "list_calls"))

    async with harness(tmp_path) as h:
        # warms the number and agent caches
        await h.ok("create_phone_call", from_number=TWILIO, to_number=TO, override_agent_id="agent_sales")
        for args in ({}, {"override_agent_id": "agent_support"}):
            before = await requests()
            await h.ok("create_phone_call", from_number=TELNYX, to_number="+14155552673", **args)
            assert await requests() - before == 1, args


async def test_concurrent_callers_cannot_pass_a_cap_of_one(tmp_path: Path) -> None:
    async with harness(tmp_path, max_attempts_per_destination_24h=1) as h:
        codes: list[str] = []

        async def one() -> None:
            result = await h.call("create_phone_call", from_number=TELNYX, to_number=TO)
            codes.append("placed" if not result.is_error else refusal_code(result))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
        assert sorted(codes) == ["budget_exceeded"] * 19 + ["placed"]
        assert len(await h.sandbox_calls()) == 1


async def test_after_a_crash_an_attempt_still_waiting_for_its_slot_is_released(tmp_path: Path) -> None:
    from uponai_mcp.store import Store

    async with await Store.open(tmp_path / "uponai.db") as store:
        for attempt_id, send_in_ms in (("att_waiting", 3_600_000), ("att_sent", -5_000)):
            await store.create_attempt(attempt_id, idempotency_key=None, params_hash="h", request_json="{}",
                                       from_number=TELNYX, to_number=TO, scope="telnyx")
            now = int(time.time() * 1000)
            await store.mark_attempt(attempt_id, "dialing", now_ms=now, send_at_ms=now + send_in_ms)
        assert (await store.usage(TO)).to_destination_24h == 2
    async with harness(tmp_path, max_attempts_per_destination_24h=2) as h:
        # The one that never left is released, the one that may have left (and is not on the platform)
        # failed; only the latter still counts, so one more call to the number is allowed.
        await h.ok("create_phone_call", from_number=TELNYX, to_number=TO)
        assert await h.refused("create_phone_call", from_number=TELNYX, to_number=TO) == "budget_exceeded"
    with sqlite3.connect(tmp_path / "uponai.db") as conn:
        rows = dict(conn.execute("SELECT attempt_id, state FROM attempts WHERE attempt_id LIKE 'att_%ing'"
                                 " OR attempt_id = 'att_sent'").fetchall())
    assert rows == {"att_waiting": "failed", "att_sent": "failed"}


async def test_toolsets_keep_the_default_list_small_and_say_what_is_withheld(tmp_path: Path) -> None:
    async with harness(tmp_path, toolsets=("calls", "batches", "outreach")) as h:
        names = {t.name for t in (await h.client.list_tools()).tools}
        assert "create_phone_call" in names and "create_batch_call" in names and "run_eval" not in names
        result = await h.call("run_eval", suite={})
        assert refusal_code(result) == "tool_not_enabled"
        assert result.meta[ERROR_META_KEY]["details"]["toolset"] == "evals"
        assert "UPONAI_TOOLSETS" in result.content[0].text


def test_toolsets_setting_is_parsed_strictly() -> None:
    from uponai_mcp.config import TOOLSETS, Settings

    assert Settings.from_env({"UPONAI_TOOLSETS": "all"}).toolsets == TOOLSETS
    assert Settings.from_env({"UPONAI_TOOLSETS": "calls, evals"}).toolsets == ("calls", "evals")
    assert Settings.from_env({}).toolsets == ("calls", "batches", "outreach")
    assert any("UPONAI_TOOLSETS" in e for e in Settings.from_env({"UPONAI_TOOLSETS": "calls,nope"}).errors)


async def _twenty(h: Any, tool: str, args_of: Any) -> list[Any]:
    results: list[Any] = []

    async def one(i: int) -> None:
        results.append(await h.call(tool, **args_of(i)))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(one, i)
    return results


async def test_twenty_concurrent_confirmations_of_one_token_place_one_call(tmp_path: Path) -> None:
    async with harness(tmp_path, confirm="always") as h:
        asked = await h.call("create_phone_call", from_number=TELNYX, to_number=TO)
        token = asked.meta[ERROR_META_KEY]["details"]["token"]
        results = await _twenty(h, "confirm_call", lambda i: {"token": token})
        placed = [r for r in results if not r.is_error]
        assert len(placed) == 1
        assert sorted(refusal_code(r) for r in results if r.is_error) == ["confirmation_invalid"] * 19
        assert len(await h.sandbox_calls()) == 1


async def test_twenty_concurrent_creates_with_one_key_place_one_call(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        results = await _twenty(h, "create_phone_call",
                                lambda i: {"from_number": TELNYX, "to_number": TO, "idempotency_key": "same"})
        assert all(not r.is_error for r in results), [r.content[0].text for r in results if r.is_error]
        assert len({r.structured_content["call_id"] for r in results}) == 1
        assert sum(not r.structured_content["replayed"] for r in results) == 1
        assert len(await h.sandbox_calls()) == 1


async def test_twenty_concurrent_callers_cannot_pass_the_daily_cap(tmp_path: Path) -> None:
    async with harness(tmp_path, max_calls_per_day=1) as h:
        results = await _twenty(h, "create_phone_call",
                                lambda i: {"from_number": TELNYX, "to_number": f"+1415555{2700 + i:04d}"})
        assert sum(not r.is_error for r in results) == 1
        assert sorted(refusal_code(r) for r in results if r.is_error) == ["budget_exceeded"] * 19
        assert len(await h.sandbox_calls()) == 1
