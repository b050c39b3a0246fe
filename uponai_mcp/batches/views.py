"""What the batch tools and the `uponai://batches/{batch_id}` resource return."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from uponai_mcp.store import Batch, BatchTask

from .window import CallTimeWindow

DONE_STATES = frozenset({"placed", "refused", "cancelled", "failed"})


def batch_uri(batch_id: str) -> str:
    return f"uponai://batches/{batch_id}"


def call_uri(call_id: str) -> str:
    return f"uponai://calls/{call_id}"


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class AcceptedTask(BaseModel):
    index: int = Field(description="The task's position in the batch (0-based).")
    source: str = Field(description="Where it came from: 'task N' of the tasks list or 'row N' of the CSV.")
    to_number: str
    region: str | None = None
    note: str | None = Field(None, description="Why it may wait: the callee's calling window or the hourly budget.")
    caller_id: str | None = Field(None, description="With from_numbers: the number calling it, and why.")


class RefusedTask(BaseModel):
    index: int
    source: str
    to_number: str
    code: str = Field(description="The refusal code, the same as create_phone_call would give.")
    message: str


class RetryView(BaseModel):
    """A later attempt of a task (its retry policy)."""

    attempt: int
    state: str = Field(description="scheduled, dialing, placed, refused, cancelled, failed.")
    scheduled_at: str | None = None
    call_id: str | None = None
    code: str | None = None


class TaskView(BaseModel):
    index: int
    to_number: str
    state: str = Field(description="pending (not dialled yet), dialing, placed (dialled; see call_id), refused, "
                       "cancelled, failed, unknown (outcome being reconciled).")
    code: str | None = Field(None, description="Why it was refused or failed.")
    attempt_id: str | None = None
    call_id: str | None = None
    call_status: str | None = Field(None, description="The call's final status once it ended (ended, "
                                    "not_connected, error).")
    call_uri: str | None = None
    retries: list[RetryView] | None = Field(None, description="Attempts after the first (retry_policy).")

    @classmethod
    def of(cls, t: BatchTask, retries: list[RetryView] | None = None) -> TaskView:
        return cls(index=t.idx, to_number=t.to_number, state=t.state, code=t.refusal_code, attempt_id=t.attempt_id,
                   call_id=t.call_id, call_status=t.final_status,
                   call_uri=call_uri(t.call_id) if t.call_id else None, retries=retries or None)


class BatchView(BaseModel):
    """A batch and its progress."""

    batch_id: str
    name: str
    from_number: str
    status: str = Field(description="pending (waiting to start), running, paused (awaiting confirmation), "
                        "completed (every task settled), cancelled.")
    created_at: str | None = None
    scheduled_at: str | None = None
    call_time_window: CallTimeWindow | None = None
    window_open_now: bool | None = None
    next_window_open_at: str | None = None
    awaiting_confirmation: bool = False
    total: int
    counts: dict[str, int] = Field(description="Tasks per state.")
    dialled: int = Field(description="Tasks whose call was placed.")
    ended: int | None = Field(None, description="Placed calls whose final status is known (with tasks).")
    resource_uri: str
    tasks: list[TaskView] | None = Field(None, description="Per-task status (a page of them; see tasks_offset).")
    tasks_offset: int = 0
    note: str | None = None

    @classmethod
    def of(cls, batch: Batch, *, now: datetime, tasks: list[BatchTask] | None = None, offset: int = 0,
           ended: int | None = None, retries: dict[int, list[RetryView]] | None = None) -> BatchView:
        window = CallTimeWindow.model_validate(batch.window) if batch.window else None
        confirm = batch.confirm if isinstance(batch.confirm, dict) else {}
        awaiting = batch.status == "paused" and confirm.get("state") == "awaiting"
        nxt = window.next_open(now) if window and batch.status in ("pending", "running") else None
        if ended is None and tasks is not None:
            ended = sum(1 for t in tasks if t.final_status)
        return cls(
            batch_id=batch.batch_id, name=batch.name, from_number=batch.from_number, status=batch.status,
            created_at=iso(batch.created_at_ms), scheduled_at=iso(batch.scheduled_at_ms), call_time_window=window,
            window_open_now=window.is_open(now) if window else None,
            next_window_open_at=nxt.isoformat(timespec="seconds").replace("+00:00", "Z") if nxt else None,
            awaiting_confirmation=awaiting, total=batch.total, counts=dict(batch.counts),
            dialled=batch.counts.get("placed", 0), ended=ended, resource_uri=batch_uri(batch.batch_id),
            tasks=None if tasks is None else [TaskView.of(t, (retries or {}).get(t.idx)) for t in tasks],
            tasks_offset=offset,
            note=confirm.get("note"),
        )


class BatchCreated(BaseModel):
    """The batch as created: what runs, what was refused and why."""

    batch_id: str | None = Field(None, description="None when no task could be accepted (nothing was created).")
    status: str
    summary: str
    accepted: list[AcceptedTask]
    refused: list[RefusedTask]
    resource_uri: str | None = Field(None, description="Read or subscribe to follow the batch task by task.")
    progress: BatchView | None = Field(None, description="The batch after waiting (when wait_s was given).")


class BatchList(BaseModel):
    batches: list[BatchView]
