"""The platform's own simulation tests, by agent: the test API is keyed by an agent's response engine (its LLM at
a version), so each use case first resolves the agent, then drives test case definitions and batch tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, Field

from uponai_mcp.api import errors as api_errors
from uponai_mcp.api.testing import MetricResult, TestBatch, TestCase, TestCaseInput, TestRun
from uponai_mcp.errors import Refused

if TYPE_CHECKING:
    from uponai_mcp.api import UponAIClient

POLL_S = 1.0
Report = Callable[[float, float, str], Awaitable[None]]


class TestCaseList(BaseModel):
    agent_id: str
    test_cases: list[TestCase]


class RunView(BaseModel):
    test_case_job_id: str
    test_case_definition_id: str
    name: str | None = None
    status: str = Field(description="in_progress | pass | fail | error")
    result_explanation: str | None = None
    metric_results: list[MetricResult] | None = None
    transcript: list[dict[str, Any]] | None = Field(None, description="Simulated conversation (untrusted text).")


class AgentTestRun(BaseModel):
    batch: TestBatch
    runs: list[RunView]
    finished: bool = Field(description="True when every run has a result.")


def _view(run: TestRun) -> RunView:
    snap = run.test_case_definition_snapshot or {}
    transcript = (run.transcript_snapshot or {}).get("transcript")
    return RunView(test_case_job_id=run.test_case_job_id, test_case_definition_id=run.test_case_definition_id,
                   name=snap.get("name"), status=run.status, result_explanation=run.result_explanation,
                   metric_results=run.metric_results, transcript=transcript if isinstance(transcript, list) else None)


class AgentTests:
    def __init__(self, api: UponAIClient) -> None:
        self.api = api

    async def _engine(self, agent_id: str, version: int | None):
        try:
            return await self.api.agent_response_engine(agent_id, version)
        except api_errors.NotFound as exc:
            raise Refused("not_found", f"There is no agent {agent_id}"
                          + (f" version {version}" if version is not None else "") + "; list_agents shows them.") from exc

    async def list_cases(self, agent_id: str, version: int | None = None) -> TestCaseList:
        engine = await self._engine(agent_id, version)
        return TestCaseList(agent_id=agent_id, test_cases=await self.api.list_test_cases(engine))

    async def create_case(self, agent_id: str, *, name: str, user_prompt: str, metrics: list[str],
                          version: int | None = None, dynamic_variables: dict[str, str] | None = None) -> TestCase:
        engine = await self._engine(agent_id, version)
        return await self.api.create_test_case(TestCaseInput(
            name=name, response_engine=engine, user_prompt=user_prompt, metrics=metrics,
            dynamic_variables=dynamic_variables or {}))

    async def run(self, agent_id: str, *, version: int | None = None,
                  test_case_ids: list[str] | None = None) -> TestBatch:
        engine = await self._engine(agent_id, version)
        if not test_case_ids:
            test_case_ids = [c.test_case_definition_id for c in await self.api.list_test_cases(engine)]
            if not test_case_ids:
                raise Refused("not_found", f"Agent {agent_id} has no test cases yet; create_test_case adds one.")
        return await self.api.create_test_batch(test_case_ids, engine)

    async def view(self, batch_id: str) -> AgentTestRun:
        try:
            batch = await self.api.get_test_batch(batch_id)
        except api_errors.NotFound as exc:
            raise Refused("not_found", f"There is no test run {batch_id}.") from exc
        runs = [_view(r) for r in await self.api.list_test_runs(batch_id)]
        finished = batch.status == "complete" and all(r.status != "in_progress" for r in runs)
        return AgentTestRun(batch=batch, runs=runs, finished=finished)

    async def wait(self, batch_id: str, timeout_s: float, report: Report | None = None) -> AgentTestRun:
        """The batch once every run has a result, or as it is at the timeout (finished=False)."""
        view = await self.view(batch_id)
        done = -1
        with anyio.move_on_after(timeout_s):
            while True:
                settled = sum(r.status != "in_progress" for r in view.runs)
                if report is not None and settled > done:
                    done = settled
                    await report(settled, max(len(view.runs), 1), f"{settled}/{len(view.runs)} test runs finished")
                if view.finished:
                    return view
                await anyio.sleep(POLL_S)
                view = await self.view(batch_id)
        return view
