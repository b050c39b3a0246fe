"""The platform's simulation-test API (test case definitions, batch tests, test runs) through the real client in
both dialects against the real sandbox, and through the MCP tools."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from tests.server_harness import harness
from uponai_mcp.api import UponAIClient
from uponai_mcp.api import errors as api_errors
from uponai_mcp.api import testing as wire
from uponai_mcp.sandbox import SandboxConfig
from uponai_mcp.sandbox.seed import ACCOUNT_SID, WORKSPACE_ID

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parent / "fixtures" / "eval_sandbox.json"
METRICS = ["greets the caller by name", "offers a demo slot", "confirms the booking", "stays polite",
           "does not claim to be human", "ends the call cleanly"]


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(speed=200, seed=3, fixture=FIXTURE)


def client_for(url: str, dialect: str) -> UponAIClient:
    return UponAIClient(base_url=url, api_key="sk_sandbox", dialect=dialect, workspace_id=WORKSPACE_ID,
                        account_sid=ACCOUNT_SID)


async def finished(api: UponAIClient, batch_id: str):
    with anyio.fail_after(10):
        while True:  # the platform has no push for test runs: poll it
            batch = await api.get_test_batch(batch_id)
            if batch.status == "complete":
                break
            await anyio.sleep(0.02)
    return batch, await api.list_test_runs(batch_id)


@pytest.mark.parametrize("dialect", ["uponai", "retell"])
async def test_test_cases_and_batch_tests_round_trip_in_both_dialects(sandbox, dialect):
    async with client_for(sandbox.url, dialect) as api:
        v2 = await api.agent_response_engine("agent_sales", 2)
        assert v2.llm_id == "llm_agent_sales" and v2.version == 2
        made = [await api.create_test_case(wire.TestCaseInput(
            name=f"case {i}", response_engine=v2, user_prompt=f"You are Ada, customer {i}. Ask about pricing.",
            metrics=METRICS, dynamic_variables={"customer_name": "Ada"})) for i in range(3)]
        assert all(c.test_case_definition_id and c.metrics == METRICS for c in made)
        assert made[0].dynamic_variables == {"customer_name": "Ada"}  # the user's keys are never re-cased
        listed = await api.list_test_cases(v2)
        assert [c.test_case_definition_id for c in listed] == [c.test_case_definition_id for c in made]
        got = await api.get_test_case(made[0].test_case_definition_id)
        assert got.name == "case 0" and got.user_prompt.startswith("You are Ada")
        renamed = await api.update_test_case(made[0].test_case_definition_id, wire.TestCaseInput(
            name="case zero", response_engine=v2, user_prompt=got.user_prompt, metrics=METRICS))
        assert renamed.name == "case zero"
        await api.delete_test_case(made[2].test_case_definition_id)
        assert len(await api.list_test_cases(v2)) == 2
        with pytest.raises(api_errors.NotFound):
            await api.get_test_case(made[2].test_case_definition_id)

        ids = [c.test_case_definition_id for c in made[:2]]
        verdicts = {}
        for version in (2, 3, 2):
            engine = await api.agent_response_engine("agent_sales", version)
            batch = await api.create_test_batch(ids, engine)
            assert batch.status == "in_progress" and batch.total_count == 2
            batch, runs = await finished(api, batch.test_case_batch_job_id)
            assert batch.pass_count + batch.fail_count == 2 and batch.error_count == 0
            assert {r.test_case_definition_id for r in runs} == set(ids)
            for run in runs:
                assert run.status in ("pass", "fail") and len(run.metric_results) == len(METRICS)
                assert (run.status == "pass") == all(m.passed for m in run.metric_results)
                roles = [t["role"] for t in run.transcript_snapshot["transcript"]]
                assert roles[:2] == ["agent", "user"]
                greeting = run.transcript_snapshot["transcript"][0]["content"]
                # The greeting fills {{customer_name}} from the case's variables (the renamed case has none).
                assert ("Hi Ada," in greeting) == (run.test_case_definition_id == ids[1]), greeting
            one = await api.get_test_run(runs[0].test_case_job_id)
            assert one.test_case_job_id == runs[0].test_case_job_id and one.status == runs[0].status
            verdicts.setdefault(version, []).append(
                [(r.test_case_definition_id, [m.passed for m in r.metric_results]) for r in runs])
        # v3 (success rate 1.0 in the fixture) passes every metric; v2 (0.5) fails some; the same version gives
        # the same verdicts every time.
        assert all(all(p) for _, p in verdicts[3][0])
        assert not all(all(p) for _, p in verdicts[2][0])
        assert verdicts[2][0] == verdicts[2][1]
        batches = await api.list_test_batches(v2)
        assert len(batches) == 3

        with pytest.raises(api_errors.NotFound):
            await api.agent_response_engine("agent_nobody")
        with pytest.raises(api_errors.NotFound):
            await api.create_test_batch(["test_case_nope"], v2)
        with pytest.raises(api_errors.NotFound):
            await api.get_test_batch("test_batch_nope")


async def test_native_routes_need_the_workspace_and_answer_camel_case(sandbox, sandbox_client: httpx.AsyncClient):
    body = {"name": "x", "userPrompt": "hi", "metrics": ["m"],
            "responseEngine": {"type": "retell-llm", "llmId": "llm_agent_sales"}}
    missing = await sandbox_client.post("/api/test-case-definitions", json=body)
    assert missing.status_code == 400 and missing.json()["success"] is False
    created = await sandbox_client.post("/api/test-case-definitions", json={**body, "workspaceId": WORKSPACE_ID})
    assert created.status_code == 201
    record = created.json()["testCaseDefinition"]
    assert record["testCaseDefinitionId"] and record["userPrompt"] == "hi" and record["responseEngine"]["llmId"]
    retell = await sandbox_client.get("/list-test-case-definitions", params={"type": "retell-llm",
                                                                             "llm_id": "llm_agent_sales"})
    assert retell.json()[0]["test_case_definition_id"] == record["testCaseDefinitionId"]
    bad = await sandbox_client.post("/create-test-case-definition", json={"name": "x", "user_prompt": "y",
                                                                         "response_engine": {"type": "custom-llm"}})
    assert bad.status_code == 400 and bad.json()["status"] == "error"


@pytest.mark.parametrize("dialect", ["uponai", "retell"])
async def test_agent_test_tools_over_mcp(tmp_path, dialect):
    progress = []

    async def on_progress(done, total, message):
        progress.append(done)

    async with harness(tmp_path, sandbox=SandboxConfig(speed=200, seed=3, fixture=FIXTURE), dialect=dialect) as h:
        assert (await h.ok("list_test_cases", agent_id="agent_sales"))["test_cases"] == []
        assert await h.refused("run_agent_tests", agent_id="agent_sales") == "not_found"
        for i in range(2):
            made = await h.ok("create_test_case", agent_id="agent_sales", name=f"books {i}",
                              user_prompt="You are Ada. You want a demo next week.", metrics=METRICS[: 3 + i],
                              dynamic_variables={"customer_name": "Ada"})
            assert made["test_cases"][0]["test_case_definition_id"]
        listed = await h.ok("list_test_cases", agent_id="agent_sales", version=2)
        assert [c["name"] for c in listed["test_cases"]] == ["books 0", "books 1"]
        result = await h.client.call_tool("run_agent_tests", {"agent_id": "agent_sales", "version": 3, "wait_s": 30},
                                          progress_callback=on_progress)
        out = result.structured_content
        assert not result.is_error and out["finished"] and out["batch"]["pass_count"] == 2
        assert [len(r["metric_results"]) for r in out["runs"]] == [3, 4] and progress[-1] == 2
        assert all(r["transcript"] and r["status"] == "pass" for r in out["runs"])
        started = await h.ok("run_agent_tests", agent_id="agent_sales", version=2)
        batch_id = started["batch"]["test_case_batch_job_id"]
        done = await h.ok("get_agent_test_run", batch_id=batch_id, wait_s=30)
        assert done["finished"] and done["batch"]["fail_count"] >= 1
        assert await h.refused("get_agent_test_run", batch_id="test_batch_nope") == "not_found"
        assert await h.refused("run_agent_tests", agent_id="agent_sales", version="2") == "invalid_argument"
        assert await h.refused("list_test_cases", agent_id="agent_nobody") == "not_found"
        assert await h.sandbox_calls() == []  # no phone call anywhere
