"""Evaluations through the real MCP server (mcp.Client) on the real sandbox: run_eval with progress, scores,
get/list, the live resource, strict arguments, refusals before dialling, and confirmation like a batch."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import anyio
import pytest
from mcp.types import ElicitResult

from tests.server_harness import harness, refusal_code
from uponai_mcp.errors import ERROR_META_KEY
from uponai_mcp.sandbox import SandboxConfig

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parent / "fixtures" / "eval_sandbox.json"
STAGE = SandboxConfig(speed=200, seed=2, fixture=FIXTURE, cps={"custom": 20}, concurrency_limit=1000)  # seed 2: v2 flaky
SETTINGS = dict(dialect="retell", max_attempts_per_destination_24h=100)
SUITE = {
    "name": "mcp-compare", "from_number": "+14155550102", "repeat": 3, "timeout_s": 30,
    "variants": [{"agent_id": "agent_sales", "version": 2}, {"agent_id": "agent_sales", "version": 3}],
    "cases": [
        {"name": "books a demo", "to_number": "+12125550101", "dynamic_variables": {"customer_name": "Ada"},
         "expect": {"call_successful": True, "transcript_contains": ["Ada"]}},
        {"name": "stays fast", "to_number": "+12125550102", "expect": {"max_latency_p50_ms": 1200}},
        {"name": "voicemail handled", "to_number": "+12125550104", "expect": {"in_voicemail": True}},
    ],
}


async def _fast_custom(h) -> None:
    # The custom scope allows concurrency limit // 20 CPS (the sandbox: 1000 // 20 = 50).
    await h.ok("set_cps", provider="custom", cps=20)


async def test_run_eval_scores_flaky_and_failing_cases_with_progress_and_a_live_resource(tmp_path):
    progress = []

    async def on_progress(done, total, message):
        progress.append((done, total, message))

    async with harness(tmp_path, sandbox=STAGE, **SETTINGS) as h:
        await _fast_custom(h)
        result = await h.client.call_tool("run_eval", {"suite": SUITE, "wait_s": 120}, progress_callback=on_progress)
        assert not result.is_error, result.content[0].text
        out = result.structured_content
        assert out["finished"] and out["status"] == "completed" and out["items"] == out["scored"] == 18
        s = out["summary"]
        assert s["flaky_cases"] == ["books a demo"], [(c["case"], [v["rate"]["passed"] for v in c["by_variant"]]) for c in s["cases"]]
        rates = {c["case"]: [v["rate"]["passed"] for v in c["by_variant"]] for c in s["cases"]}
        assert rates["stays fast"] == [0, 3] and rates["voicemail handled"] == [3, 3] and rates["books a demo"][1] == 3
        assert s["comparisons"][0]["verdict"]
        assert progress[-1][0] == progress[-1][1] == 18
        assert [p[0] for p in progress] == sorted({p[0] for p in progress})  # strictly increasing
        assert len(await h.sandbox_calls()) == 18

        run = await h.ok("get_eval_run", run_id=out["run_id"])
        assert run["results_total"] == 18 - s["passed"] and all(not r["passed"] for r in run["results"])
        assert any(c["name"] == "max_latency_p50_ms" and not c["passed"] for r in run["results"] for c in r["checks"])
        every = await h.ok("get_eval_run", run_id=out["run_id"], results="all", limit=5)
        assert len(every["results"]) == 5 and every["results_total"] == 18
        listed = await h.ok("list_eval_runs")
        assert [r["run_id"] for r in listed["runs"]] == [out["run_id"]]
        resource = await h.client.read_resource(out["resource_uri"])
        body = json.loads(resource.contents[0].text)
        assert body["run_id"] == out["run_id"] and body["summary"]["passed"] == s["passed"]
        assert await h.refused("get_eval_run", run_id="eval_nope") == "not_found"


async def test_arguments_are_strict_and_bad_suites_are_refused_before_dialling(tmp_path):
    async with harness(tmp_path, sandbox=STAGE, **SETTINGS) as h:
        assert await h.refused("run_eval", suite=SUITE, repeat="2") == "invalid_argument"
        assert await h.refused("run_eval", suite=SUITE, repeat=True) == "invalid_argument"
        assert await h.refused("run_eval", suite=SUITE, surprise=1) == "invalid_argument"
        typo = {**SUITE, "cases": [{**SUITE["cases"][0], "expect": {"call_sucessful": True}}]}
        result = await h.call("run_eval", suite=typo)
        assert result.is_error and "case 'books a demo', expect.call_sucessful: unknown key" in result.content[0].text
        emergency = {**SUITE, "cases": [{"name": "e", "to_number": "911"}]}
        assert await h.refused("run_eval", suite=emergency) == "emergency_number"
        unknown_agent = {**SUITE, "variants": [{"agent_id": "agent_nobody"}]}
        result = await h.call("run_eval", suite=unknown_agent)
        assert result.is_error and "variants[0]" in result.content[0].text
        assert await h.sandbox_calls() == []


async def test_confirmation_policy_asks_with_a_token_and_by_elicitation(tmp_path):
    small = {**SUITE, "repeat": 1, "variants": None, "cases": SUITE["cases"][2:]}
    small = {k: v for k, v in small.items() if v is not None}
    async with harness(tmp_path, sandbox=STAGE, confirm="always", **SETTINGS) as h:
        result = await h.call("run_eval", suite=small)
        assert result.is_error and refusal_code(result) == "confirmation_required"
        token = result.meta[ERROR_META_KEY]["details"]["token"]
        assert f"confirm_token {token}" in result.content[0].text
        assert token.startswith("cfe_") and await h.sandbox_calls() == []
        other = {**small, "repeat": 2}
        assert await h.refused("run_eval", suite=other, confirm_token=token) == "confirmation_invalid"  # spent
        token = (await h.call("run_eval", suite=small)).meta[ERROR_META_KEY]["details"]["token"]
        out = await h.ok("run_eval", suite=small, confirm_token=token, wait_s=60)
        assert out["finished"] and out["passed"] == 1
        assert await h.refused("run_eval", suite=small, confirm_token=token) == "confirmation_invalid"

    async def accept(_ctx, params):
        assert "1 calls" in params.message
        return ElicitResult(action="accept", content={"confirm": True})

    async with harness(tmp_path / "b", sandbox=STAGE, confirm="always", client_kwargs={"elicitation_callback": accept},
                       **SETTINGS) as h:
        out = await h.ok("run_eval", suite=small, wait_s=60)
        assert out["finished"] and out["passed"] == 1


async def test_the_run_resource_is_subscribable_and_updates_as_calls_are_scored(tmp_path):
    updated: list[str] = []
    changed = anyio.Event()

    async def on_message(message) -> None:
        nonlocal changed
        if getattr(message, "method", None) == "notifications/resources/updated":
            updated.append(str(message.params.uri))
            changed.set()

    small = {**SUITE, "repeat": 2, "cases": SUITE["cases"][2:]}
    async with harness(tmp_path, sandbox=STAGE, client_kwargs={"mode": "legacy", "message_handler": on_message},
                       **SETTINGS) as h:
        await _fast_custom(h)
        started = await h.ok("run_eval", suite=small)
        assert not started["finished"] and started["status"] == "running" and started["items"] == 4
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # subscribe_resource is deprecated for 2026 servers
            await h.client.subscribe_resource(started["resource_uri"])
        with anyio.fail_after(30):
            while True:
                changed = anyio.Event()  # before the read: an update in between still wakes us
                body = json.loads((await h.client.read_resource(started["resource_uri"])).contents[0].text)
                if body["status"] == "completed":
                    break
                await changed.wait()
        assert started["resource_uri"] in updated
        assert body["scored"] == body["passed"] == 4
