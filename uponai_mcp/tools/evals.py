"""Evaluation tools: run_eval, get_eval_run, list_eval_runs, and the `uponai://evals/{run_id}` resource."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server import MCPServer
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from pydantic import BaseModel, Field

from uponai_mcp.api import errors as api_errors
from uponai_mcp.errors import CODES, Refused
from uponai_mcp.evals import plan
from uponai_mcp.evals.suite import SuiteInvalid, from_data
from uponai_mcp.evals.views import EvalRunList, EvalRunView, EvalStarted, ResultFilter
from uponai_mcp.store import StoreUnavailable
from uponai_mcp.tools._common import DIAL, LOCAL_READ, NoQuestion, services

if TYPE_CHECKING:
    from uponai_mcp.evals.service import EvalService

SuiteArg = Annotated[dict[str, Any], Field(description=(
    "{name, from_number, repeat?, variants?: [{agent_id, version?}], cases: [{name, to_number, dynamic_variables?, "
    "metadata?, expect?}]}; expect keys: status, disconnection_reason, call_successful, in_voicemail, "
    "transcript_contains, transcript_not_contains, tool_called, max_duration_s, max_latency_p50_ms, "
    "custom_analysis."))]
RunId = Annotated[str, Field(min_length=1, max_length=64, description="The run id, e.g. eval_3f2a...")]


class ConfirmEval(BaseModel):
    confirm: bool = Field(description="Place these evaluation calls now?")


def _evals(ctx: Context) -> EvalService:
    svc = services(ctx)
    if svc.evals is None:
        raise Refused("configuration_error", "Evaluations are not available on this server.")
    return svc.evals


def _parse(suite: dict[str, Any], repeat: int | None):
    try:
        parsed = from_data(suite, file="suite")
    except SuiteInvalid as exc:
        lines = "; ".join(str(p) for p in exc.problems[:10])
        raise Refused("invalid_argument", f"The suite is invalid, nothing was dialled: {lines}",
                      problems=[p.model_dump() for p in exc.problems]) from None
    return parsed, plan.expand(parsed, repeat=repeat)


async def ask_to_confirm_eval(ctx: Context, suite: dict[str, Any], repeat: int | None = None,
                              confirm_token: str | None = None) -> Elicit[ConfirmEval] | NoQuestion:
    """Ask the person (elicitation) when the confirmation policy wants it, as for a batch."""
    if confirm_token is not None:
        return NoQuestion(reason="token")  # approved already; the body redeems the token
    hub = ctx.request_context.lifespan_context
    if hub.services is None or hub.services.evals is None or hub.services.settings.effective_confirm == "never":
        return NoQuestion(reason="not_required" if hub.services is not None else "refused")
    try:
        parsed, items = _parse(suite, repeat)
        checked = await hub.services.evals.check(parsed, items, file="suite")
    except (Refused, api_errors.ApiError):
        return NoQuestion(reason="refused")  # the body refuses with the coded reason
    if checked.problems or not checked.needs_confirmation:
        return NoQuestion(reason="not_required")
    caps = ctx.client_capabilities
    if caps is None or caps.elicitation is None:
        return NoQuestion(reason="unsupported")
    return Elicit(f"Evaluation {parsed.name!r}: {len(items)} calls, e.g. {checked.summary}. Place them? Every call "
                  "rings a real phone and costs money.", ConfirmEval)


def _reporter(ctx: Context):
    async def report(done: float, total: float, message: str) -> None:
        await ctx.report_progress(done, total, message)

    return report


def register(mcp: MCPServer) -> None:
    @mcp.tool(title="Run an agent evaluation", annotations=DIAL)
    async def run_eval(
        ctx: Context,
        suite: SuiteArg,
        decision: Annotated[ElicitationResult[ConfirmEval], Resolve(ask_to_confirm_eval)],
        repeat: Annotated[int | None, Field(ge=1, le=1000, description="Run each case this many times.")] = None,
        wait_s: Annotated[float, Field(ge=0, le=600, description="Wait up to this long, with progress.")] = 0,
        confirm_token: Annotated[str | None, Field(max_length=200, description=(
            "Token from a confirmation_required answer, after the user approved."))] = None,
    ) -> EvalStarted:
        """Place an evaluation suite's calls (case x repeat x variant) and score each analyzed call; returns a run id."""
        evals = _evals(ctx)
        parsed, items = _parse(suite, repeat)
        checked = await evals.check(parsed, items, file="suite")
        if checked.problems:
            lines = "; ".join(str(p) for p in checked.problems[:10])
            raise Refused(_problem_code(checked.problems), f"Nothing was dialled: {lines}",
                          problems=[p.model_dump() for p in checked.problems])
        if not isinstance(decision, AcceptedElicitation) or (
                isinstance(decision.data, ConfirmEval) and not decision.data.confirm):
            raise Refused("declined", "The person declined this evaluation; nothing was dialled.")
        if checked.needs_confirmation and not isinstance(decision.data, ConfirmEval):
            if confirm_token is None:
                raise await evals.ask_confirmation(parsed, items, checked)
            await evals.redeem(confirm_token, parsed, items)
        run_id = await evals.create_run(parsed, repeat=repeat, seed=None, file="suite", total=len(items))
        evals.start(run_id, parsed, items)
        finished = await evals.wait(run_id, wait_s, report=_reporter(ctx)) if wait_s > 0 else False
        view = await evals.view(run_id, results="none")
        return EvalStarted(**view.model_dump(exclude={"summary", "results", "results_total"}), finished=finished,
                           summary=view.summary if finished else None)

    @mcp.tool(title="Get an evaluation run", annotations=LOCAL_READ)
    async def get_eval_run(
        ctx: Context, run_id: RunId,
        results: Annotated[ResultFilter, Field(description="Per-call results to include.")] = "failed",
        limit: Annotated[int, Field(ge=0, le=1000, description="At most this many results.")] = 100,
    ) -> EvalRunView:
        """A run's status, pass rates with 95% intervals, flaky cases, variant verdicts and per-call results."""
        return await _evals(ctx).view(run_id, results=results, limit=limit)

    @mcp.tool(title="List evaluation runs", annotations=LOCAL_READ)
    async def list_eval_runs(
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=100, description="Runs to list, newest first.")] = 20,
    ) -> EvalRunList:
        """Evaluation runs, newest first, with status and pass counts."""
        return EvalRunList(runs=await _evals(ctx).list(limit))

    @mcp.resource("uponai://evals/{run_id}", name="eval_run", title="Evaluation run", mime_type="application/json",
                  description="An evaluation run's scores and failed results; subscribe to follow it live.")
    async def eval_resource(run_id: str, ctx: Context) -> str:
        try:
            view = await _evals(ctx).view(run_id)
        except Refused as refusal:
            if refusal.code == "not_found":
                raise ResourceNotFoundError(refusal.message) from refusal
            raise ResourceError(str(refusal)) from refusal
        except StoreUnavailable as exc:
            raise ResourceError(f"Cannot read evaluation run {run_id} now: {exc}") from exc
        return json.dumps(view.model_dump(mode="json"), separators=(",", ":"))


def _problem_code(problems: list[Any]) -> str:
    """The guardrail's code when every problem has the same one, else invalid_argument."""
    codes = {p.message.split(":", 1)[0] for p in problems}
    code = codes.pop() if len(codes) == 1 else "invalid_argument"
    return code if code in CODES else "invalid_argument"
