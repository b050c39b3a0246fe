"""Batch tools: create_batch_call, confirm_batch, get_batch, list_batches, cancel_batch, wait_for_batch, and the
`uponai://batches/{batch_id}` resource."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server import MCPServer
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.types import CallToolResult, ResourceLink, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from uponai_mcp.api import errors as api_errors
from uponai_mcp.batches.csv_tasks import MAX_CSV_BYTES, MAX_TASKS
from uponai_mcp.batches.views import BatchCreated, BatchList, BatchView
from uponai_mcp.batches.window import CallTimeWindow
from uponai_mcp.errors import Refused
from uponai_mcp.models import AgentOverride
from uponai_mcp.outreach.retry import RetryPolicy
from uponai_mcp.store import StoreUnavailable
from uponai_mcp.tools._common import DIAL, LOCAL_READ, NoQuestion, services
from uponai_mcp.tools.contract import result_text

if TYPE_CHECKING:
    from uponai_mcp.batches.service import BatchService

CANCEL = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
TASK_STATES = Literal["pending", "dialing", "placed", "refused", "cancelled", "failed", "unknown"]


class BatchTaskSpec(BaseModel):
    """One call: the parameters of create_phone_call except from_number (described there, not repeated here:
    the tool list is read by the model on every turn)."""

    model_config = ConfigDict(extra="forbid")
    to_number: str = Field(min_length=1, max_length=64)
    retell_llm_dynamic_variables: dict[str, str] | None = None
    metadata: dict[str, Any] | None = None
    override_agent_id: str | None = Field(None, max_length=128)
    override_agent_version: int | None = Field(None, ge=0)
    agent_override: AgentOverride | None = None
    custom_sip_headers: dict[str, str] | None = None
    ignore_e164_validation: bool = False


FromNumber = Annotated[str, Field(min_length=1, max_length=64, description=(
    "Caller ID for every call: an E.164 number of this account with an outbound agent."))]
Tasks = Annotated[list[BatchTaskSpec] | None, Field(None, max_length=MAX_TASKS, description=(
    f"The calls, one task per callee (at most {MAX_TASKS:,}). Give this or tasks_csv."))]
TasksCsv = Annotated[str | None, Field(None, max_length=MAX_CSV_BYTES, description=(
    "The calls as the dashboard's batch CSV: a phone_number column, optional call-parameter columns, other "
    "columns are dynamic variables. Or tasks."))]
Name = Annotated[str | None, Field(None, max_length=200, description="A name for the batch.")]
ScheduledAt = Annotated[str | None, Field(None, max_length=64, description=(
    "When to start, ISO 8601 with an offset (e.g. 2026-11-23T09:00:00-05:00); now when omitted."))]
Window = Annotated[CallTimeWindow | None, Field(None, description=(
    "Weekly calling windows (Retell's call_time_window)."))]
WaitS = Annotated[float, Field(0, ge=0, le=600, description=(
    "Wait up to this long for every task to be dialled; 0 = return now."))]
Pool = Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]] | None, Field(None, max_length=50, description=(
    "More caller IDs (a pool with from_number); each callee keeps one."))]
Local = Annotated[bool, Field(False, description="Prefer a pool number in the callee's area code/region.")]
Retry = Annotated[RetryPolicy | None, Field(None, description="Dial a task again after these outcomes.")]
BatchId = Annotated[str, Field(min_length=1, max_length=64, description="The batch id, e.g. batch_3f2a...")]


class ConfirmBatch(BaseModel):
    """The question put to the person when the client supports elicitation."""

    confirm: bool = Field(description="Start this batch of calls now?")


class CancelledBatch(BaseModel):
    batch: BatchView
    cancelled_tasks: int = Field(description="Tasks cancelled before they were dialled; calls in flight finish.")


class WaitResult(BaseModel):
    batch: BatchView
    finished: bool = Field(description="False when the timeout came first; call again to keep waiting.")


def _batches(ctx: Context) -> BatchService:
    svc = services(ctx)
    if svc.batches is None:
        raise Refused("configuration_error", "Batches are not available on this server.")
    return svc.batches


def _task_dicts(tasks: list[BatchTaskSpec] | None) -> list[dict[str, Any]] | None:
    return None if tasks is None else [t.model_dump(exclude_none=True) for t in tasks]


async def ask_to_confirm_batch(
    ctx: Context, from_number: str, tasks: list[BatchTaskSpec] | None, tasks_csv: str | None, name: str | None,
    scheduled_at: str | None, call_time_window: CallTimeWindow | None, retry_policy: RetryPolicy | None = None,
    from_numbers: list[str] | None = None, local_presence: bool = False,
) -> Elicit[ConfirmBatch] | NoQuestion:
    """Ask the person (elicitation) before a batch that the confirmation policy says needs confirming."""
    hub = ctx.request_context.lifespan_context
    if hub.services is None or hub.services.batches is None:
        return NoQuestion(reason="refused")
    svc = hub.services
    if svc.settings.effective_confirm == "never":
        return NoQuestion(reason="not_required")
    try:
        plan = await svc.batches.plan(from_number=from_number, tasks=_task_dicts(tasks), tasks_csv=tasks_csv,
                                      name=name, scheduled_at=scheduled_at, call_time_window=call_time_window,
                                      retry_policy=retry_policy, from_numbers=from_numbers,
                                      local_presence=local_presence)
    except (Refused, api_errors.ApiError):
        return NoQuestion(reason="refused")  # the body refuses with the coded reason
    if not plan.needs_confirmation:
        return NoQuestion(reason="not_required")
    caps = ctx.client_capabilities
    if caps is None or caps.elicitation is None:
        return NoQuestion(reason="unsupported")
    return Elicit(f"{plan.summary()}. Start this batch? Every call rings a real phone and costs money.",
                  ConfirmBatch)


def _result(out: BatchCreated) -> CallToolResult:
    data = out.model_dump(mode="json")
    content: list[Any] = [TextContent(type="text", text=result_text(out, data))]
    if out.resource_uri:
        content.append(ResourceLink(type="resource_link", uri=out.resource_uri, name=f"batch {out.batch_id}",
                                    mime_type="application/json", description="Live batch progress, per task"))
    return CallToolResult(content=content, structured_content=data)


def _reporter(ctx: Context):
    async def report(done: float, total: float, message: str) -> None:
        await ctx.report_progress(done, total, message)

    return report


def register(mcp: MCPServer) -> None:
    _register_mutating(mcp)

    @mcp.tool(title="Get a batch", annotations=LOCAL_READ)
    async def get_batch(
        ctx: Context, batch_id: BatchId,
        task_state: Annotated[TASK_STATES | None, Field(description="Only tasks in this state.")] = None,
        tasks_offset: Annotated[int, Field(ge=0, description="Skip this many tasks.")] = 0,
        tasks_limit: Annotated[int, Field(ge=0, le=1000, description="Tasks to list.")] = 100,
    ) -> BatchView:
        """A batch's status and counts with a page of its tasks (state, refusal code, call id, final status)."""
        return await _batches(ctx).view(batch_id, state=task_state, offset=tasks_offset, limit=tasks_limit)

    @mcp.tool(title="List batches", annotations=LOCAL_READ)
    async def list_batches(
        ctx: Context,
        status: Annotated[Literal["pending", "running", "paused", "completed", "cancelled"] | None,
                          Field(description="Only batches in this status.")] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="Batches to list, newest first.")] = 20,
    ) -> BatchList:
        """Batches, newest first, with their status and task counts."""
        return BatchList(batches=await _batches(ctx).list(status=status, limit=limit))

    @mcp.tool(title="Wait for a batch", annotations=LOCAL_READ)
    async def wait_for_batch(
        ctx: Context, batch_id: BatchId,
        timeout_s: Annotated[float, Field(ge=0, le=600, description="Wait at most this long.")] = 60,
        until: Annotated[Literal["dialled", "ended"], Field(description=(
            "dialled: every task was dialled or settled; ended: and every call has ended."))] = "dialled",
    ) -> WaitResult:
        """Wait while a batch runs, sending progress notifications (tasks settled / total) as it moves."""
        view, finished = await _batches(ctx).wait(batch_id, timeout_s, until=until, report=_reporter(ctx))
        return WaitResult(batch=view, finished=finished)

    @mcp.resource("uponai://batches/{batch_id}", name="batch", title="Batch progress", mime_type="application/json",
                  description="A batch with every task's state, call id and the call's final status. Subscribe to "
                  "follow it live.")
    async def batch_resource(batch_id: str, ctx: Context) -> str:
        try:
            batches = _batches(ctx)
            view = await batches.view(batch_id)
        except Refused as refusal:
            if refusal.code == "not_found":
                raise ResourceNotFoundError(refusal.message) from refusal
            raise ResourceError(str(refusal)) from refusal
        except StoreUnavailable as exc:
            raise ResourceError(f"Cannot read batch {batch_id} now: {exc}") from exc
        return json.dumps(view.model_dump(mode="json"), separators=(",", ":"))


def _register_mutating(mcp: MCPServer) -> None:
    @mcp.tool(title="Place a batch of outbound calls", annotations=DIAL)
    async def create_batch_call(
        ctx: Context,
        from_number: FromNumber,
        decision: Annotated[ElicitationResult[ConfirmBatch], Resolve(ask_to_confirm_batch)],
        tasks: Tasks = None,
        tasks_csv: TasksCsv = None,
        name: Name = None,
        scheduled_at: ScheduledAt = None,
        call_time_window: Window = None,
        retry_policy: Retry = None,
        from_numbers: Pool = None,
        local_presence: Local = False,
        wait_s: WaitS = 0,
    ) -> Annotated[CallToolResult, BatchCreated]:
        """Place many outbound calls, paced to the provider's CPS. Every call rings a real person and costs
        money: only when the user asked for this batch. Each task is checked like create_phone_call; may answer
        confirmation_required with a token for confirm_batch. Follow with get_batch or wait_for_batch."""
        batches = _batches(ctx)
        plan = await batches.plan(from_number=from_number, tasks=_task_dicts(tasks), tasks_csv=tasks_csv,
                                  name=name, scheduled_at=scheduled_at, call_time_window=call_time_window,
                                  consume=True, retry_policy=retry_policy, from_numbers=from_numbers,
                                  local_presence=local_presence)
        if not plan.accepted:
            return _result(batches.created_answer(plan, None, "not_created"))
        if not isinstance(decision, AcceptedElicitation) or (
            isinstance(decision.data, ConfirmBatch) and not decision.data.confirm
        ):
            await batches.record_declined(plan)
            raise Refused("declined", "The person declined this batch; nothing was created or dialled.")
        confirmed = isinstance(decision.data, ConfirmBatch)
        if plan.needs_confirmation and not confirmed:
            batch, issued = await batches.create(plan, awaiting_confirmation=True)
            assert issued is not None
            refused = "; ".join(f"{t.source} {t.request.to_number}: {t.code}" for t in plan.refused[:10])
            raise Refused(
                "confirmation_required",
                f"{plan.summary()}. Show this to the user; if they approve, call confirm_batch with token "
                f"{issued.token} (single use, expires {issued.expires_at.strftime('%H:%M:%S')} UTC). Batch "
                f"{batch.batch_id} waits, nothing is dialled before that."
                + (f" Refused tasks: {refused}{' ...' if len(plan.refused) > 10 else ''}." if refused else ""),
                batch_id=batch.batch_id, **issued.details(),
            )
        batch, _ = await batches.create(plan, awaiting_confirmation=False,
                                           confirmed_by="elicitation" if confirmed else None)
        out = batches.created_answer(plan, batch, batch.status)
        if wait_s > 0:
            out.progress, _ = await batches.wait(batch.batch_id, wait_s, report=_reporter(ctx))
            out.status = out.progress.status
        return _result(out)

    @mcp.tool(title="Confirm and start a batch", annotations=DIAL)
    async def confirm_batch(
        ctx: Context,
        token: Annotated[str, Field(min_length=1, max_length=200, description=(
            "The token from create_batch_call's confirmation_required answer."))],
        wait_s: WaitS = 0,
    ) -> BatchView:
        """Start the batch a confirmation_required answer described, once the user approved (single-use token,
        5 minutes; an unconfirmed batch is cancelled then)."""
        batches = _batches(ctx)
        batch = await batches.confirm(token)
        if wait_s > 0:
            view, _ = await batches.wait(batch.batch_id, wait_s, report=_reporter(ctx))
            return view
        return await batches.view(batch.batch_id, with_tasks=False)

    @mcp.tool(title="Cancel a batch", annotations=CANCEL)
    async def cancel_batch(ctx: Context, batch_id: BatchId) -> CancelledBatch:
        """Stop a batch: every task not dialled yet is cancelled at once; calls already dialled (or being
        dialled right now) go on."""
        batch, cancelled = await _batches(ctx).cancel(batch_id)
        view = await _batches(ctx).view(batch.batch_id, with_tasks=False)
        return CancelledBatch(batch=view, cancelled_tasks=cancelled)
