"""The platform's simulation tests (no phone call): list_test_cases, create_test_case, run_agent_tests,
get_agent_test_run."""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations
from pydantic import Field

from uponai_mcp.errors import Refused
from uponai_mcp.evals.platform_tests import AgentTestRun, AgentTests, TestCaseList
from uponai_mcp.tools._common import READ, services

WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
AgentId = Annotated[str, Field(min_length=1, max_length=128, description="The agent, e.g. agent_sales.")]
Version = Annotated[int | None, Field(ge=0, description="Agent version; the latest when omitted.")]
WaitS = Annotated[float, Field(ge=0, le=600, description="Wait up to this long for results, with progress.")]
BatchId = Annotated[str, Field(min_length=1, max_length=128, description="The test run id from run_agent_tests.")]


def _tests(ctx: Context) -> AgentTests:
    svc = services(ctx)
    if svc.evals is None:
        raise Refused("configuration_error", "Agent tests are not available on this server.")
    return svc.evals.platform


def _reporter(ctx: Context):
    async def report(done: float, total: float, message: str) -> None:
        await ctx.report_progress(done, total, message)

    return report


def register(mcp: MCPServer) -> None:
    @mcp.tool(title="List an agent's test cases", annotations=READ)
    async def list_test_cases(ctx: Context, agent_id: AgentId, version: Version = None) -> TestCaseList:
        """The platform's simulation test cases of an agent (no phone call)."""
        return await _tests(ctx).list_cases(agent_id, version)

    @mcp.tool(title="Create a test case", annotations=WRITE)
    async def create_test_case(
        ctx: Context, agent_id: AgentId,
        name: Annotated[str, Field(min_length=1, max_length=200, description="A name for the test case.")],
        user_prompt: Annotated[str, Field(min_length=1, max_length=10_000, description=(
            "How the simulated user behaves."))],
        metrics: Annotated[list[str], Field(min_length=1, max_length=50, description="Criteria the run is judged by.")],
        version: Version = None,
        dynamic_variables: Annotated[dict[str, str] | None, Field(description="Prompt variables.")] = None,
    ) -> TestCaseList:
        """Add a simulation test case (simulated user and metrics) to an agent on the platform."""
        case = await _tests(ctx).create_case(agent_id, name=name, user_prompt=user_prompt, metrics=metrics,
                                             version=version, dynamic_variables=dynamic_variables)
        return TestCaseList(agent_id=agent_id, test_cases=[case])

    @mcp.tool(title="Run an agent's test cases", annotations=WRITE)
    async def run_agent_tests(
        ctx: Context, agent_id: AgentId, version: Version = None,
        test_case_ids: Annotated[list[str] | None, Field(min_length=1, max_length=1000, description=(
            "Test cases to run; all of the agent's when omitted."))] = None,
        wait_s: WaitS = 0,
    ) -> AgentTestRun:
        """Run the platform's simulation tests against an agent version (no phone call); returns the test run."""
        tests = _tests(ctx)
        batch = await tests.run(agent_id, version=version, test_case_ids=test_case_ids)
        if wait_s > 0:
            return await tests.wait(batch.test_case_batch_job_id, wait_s, _reporter(ctx))
        return await tests.view(batch.test_case_batch_job_id)

    @mcp.tool(title="Get an agent test run", annotations=READ)
    async def get_agent_test_run(ctx: Context, batch_id: BatchId, wait_s: WaitS = 0) -> AgentTestRun:
        """A test run's status, each test case's result per metric, and the simulated transcripts."""
        tests = _tests(ctx)
        if wait_s > 0:
            return await tests.wait(batch_id, wait_s, _reporter(ctx))
        return await tests.view(batch_id)
