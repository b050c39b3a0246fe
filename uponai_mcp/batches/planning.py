"""Planning a batch: parse the tasks, judge every one with the dialer's own checks, decide what runs.

Every task goes through `Dialer.evaluate`, the same checks as create_phone_call (destination, own number,
from-number, agent, country, calling window, budgets). Two verdicts do not refuse a batch task, because a
batch runs later and over time; they defer it instead and the runner checks them again at dial time:
  - outside_calling_window (the callee's local hours): the task waits until its window opens;
  - budget_exceeded for the hourly cap only: the batch slows down to the cap.
Budgets are also counted across the batch itself, in task order, since its tasks are not in the ledger yet:
the per-destination cap (the same number listed twice) and the daily cap (ledger + pending tasks of other
batches + earlier tasks of this batch). Tasks beyond them are refused up front with budget_exceeded, so the
person sees at creation what will not run rather than a batch that stalls for a day.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
from pydantic import ValidationError

from uponai_mcp import guardrails, params
from uponai_mcp.dialer import Dialer, Preflight
from uponai_mcp.errors import Refused
from uponai_mcp.models import CallRequest

from .csv_tasks import MAX_TASKS, CsvError, parse_tasks_csv
from .window import CallTimeWindow

EVALUATE_CONCURRENCY = 8
MAX_PROBLEMS_SHOWN = 5
MAX_SCHEDULE_AHEAD = timedelta(days=90)
# Refusals of the whole request, not of one task: the platform or the configuration failed.
_FATAL = frozenset({"upstream_error", "configuration_error"})


@dataclass
class TaskPlan:
    idx: int
    source: str  # "task 3" (the tasks argument, 1-based) or "row 7" (the CSV line)
    request: CallRequest
    region: str | None = None
    e164: str | None = None
    code: str | None = None  # the refusal code; None = accepted
    message: str | None = None
    note: str | None = None  # why an accepted task may wait (callee's calling window, hourly budget)
    caller_id: str | None = None  # with a caller-ID pool: the number chosen for this callee, and why

    @property
    def accepted(self) -> bool:
        return self.code is None


@dataclass
class BatchPlan:
    name: str
    from_number: str
    scope: str | None  # the from-number's provider (CPS scope); None when no task is accepted
    scheduled_at: datetime | None
    window: CallTimeWindow | None
    tasks: list[TaskPlan]
    needs_confirmation: bool = False
    fingerprint: str = ""
    counts_by_code: Counter[str] = field(default_factory=Counter)
    caller_pool: list[str] | None = None  # from_number and from_numbers, when a pool was given

    @property
    def accepted(self) -> list[TaskPlan]:
        return [t for t in self.tasks if t.accepted]

    @property
    def refused(self) -> list[TaskPlan]:
        return [t for t in self.tasks if not t.accepted]

    def countries(self) -> Counter[str]:
        return Counter(t.region or "unknown" for t in self.accepted)

    def summary(self) -> str:
        accepted = self.accepted
        countries = ", ".join(f"{r} x{n}" for r, n in self.countries().most_common(8))
        more = len(self.countries()) - 8
        if more > 0:
            countries += f" and {more} more countries"
        frm = f"{self.from_number} ({self.scope or 'unknown'} number)" if not self.caller_pool else \
            f"a pool of {len(self.caller_pool)} numbers ({', '.join(self.caller_pool[:4])}{' ...' if len(self.caller_pool) > 4 else ''})"
        text = (f"Batch {self.name!r}: {len(accepted)} call{'s' if len(accepted) != 1 else ''} from "
                f"{frm} to {countries or 'nobody'}")
        if self.refused:
            codes = ", ".join(f"{c} x{n}" for c, n in self.counts_by_code.most_common())
            text += f"; {len(self.refused)} task(s) refused ({codes})"
        waiting = sum(1 for t in accepted if t.note)
        if waiting:
            text += f"; {waiting} will wait for the callee's calling window or the hourly budget"
        text += f"; window: {self.window.describe() if self.window else 'any time'}"
        when = self.scheduled_at.isoformat(timespec="minutes") if self.scheduled_at else "now"
        return text + f"; starts {when}"


def task_specs(tasks: Sequence[dict[str, Any]] | None, tasks_csv: str | None) -> list[tuple[str, dict[str, Any]]]:
    """(source label, task fields) from the `tasks` list or the CSV text; exactly one must be given."""
    if (tasks is None) == (tasks_csv is None):
        raise Refused("invalid_argument", "Give the calls either as `tasks` (a list) or as `tasks_csv` (CSV text), "
                      "exactly one of them.")
    if tasks_csv is not None:
        try:
            return [(f"row {t.row}", t.fields) for t in parse_tasks_csv(tasks_csv)]
        except CsvError as exc:
            raise Refused("invalid_argument", str(exc), problem="csv") from exc
    assert tasks is not None
    if not tasks:
        raise Refused("invalid_argument", "`tasks` is empty: give at least one task with a to_number.")
    if len(tasks) > MAX_TASKS:
        raise Refused("invalid_argument", f"A batch holds at most {MAX_TASKS:,} tasks; split it into several.")
    return [(f"task {i + 1}", dict(t)) for i, t in enumerate(tasks)]


def build_requests(from_number: str, specs: list[tuple[str, dict[str, Any]]]) -> list[TaskPlan]:
    """CallRequest per task (the documented parameters, validated by the shared model)."""
    plans: list[TaskPlan] = []
    problems: list[str] = []
    for idx, (source, fields) in enumerate(specs):
        try:
            request = CallRequest(from_number=from_number, **fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "task"
            problems.append(f"{source}: {where}: {err['msg']}")
            continue
        except TypeError as exc:  # a field given twice, e.g. from_number inside a task
            problems.append(f"{source}: {exc}")
            continue
        plans.append(TaskPlan(idx, source, request))
    if problems:
        shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
        more = f" (and {len(problems) - MAX_PROBLEMS_SHOWN} more)" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        raise Refused("invalid_argument", f"Some tasks are malformed: {shown}{more}. Fix them and send the batch "
                      "again; nothing was created or dialled.")
    return plans


def parse_schedule(scheduled_at: str | None, now: datetime) -> datetime | None:
    """An ISO 8601 time with a zone (or None / "now"); a past time means now."""
    if scheduled_at is None or scheduled_at.strip().lower() in ("", "now"):
        return None
    try:
        when = datetime.fromisoformat(scheduled_at.strip())
    except ValueError as exc:
        raise Refused("invalid_argument", f"scheduled_at {scheduled_at[:40]!r} is not an ISO 8601 time such as "
                      "2026-11-23T09:00:00-05:00.") from exc
    if when.tzinfo is None or when.utcoffset() is None:
        raise Refused("invalid_argument", "scheduled_at needs a UTC offset or Z, e.g. 2026-11-23T09:00:00-05:00.")
    if when <= now:
        return None
    if when - now > MAX_SCHEDULE_AHEAD:
        raise Refused("invalid_argument", f"scheduled_at is more than {MAX_SCHEDULE_AHEAD.days} days ahead.")
    return when


def fingerprint(from_number: str, name: str, scheduled_at: datetime | None, window: CallTimeWindow | None,
                tasks: list[TaskPlan]) -> str:
    """What a confirmation is bound to: every parameter of the batch."""
    h = hashlib.sha256()
    head = {"from_number": from_number, "name": name,
            "scheduled_at": scheduled_at.isoformat() if scheduled_at else None,
            "window": window.model_dump(mode="json") if window else None}
    h.update(json.dumps(head, sort_keys=True).encode())
    for t in tasks:
        h.update(b"\n" + params.canonical_json(t.request).encode())
    return h.hexdigest()


async def judge(dialer: Dialer, plans: list[TaskPlan], *, pending_elsewhere: int) -> None:
    """Fill in each task's verdict (in place). Raises the refusal when the platform or configuration fails."""
    verdicts: list[Preflight | Refused | None] = [None] * len(plans)
    limiter = anyio.CapacityLimiter(EVALUATE_CONCURRENCY)

    async def one(i: int) -> None:
        async with limiter:
            try:
                verdicts[i] = await dialer.evaluate(plans[i].request)
            except Refused as refusal:
                verdicts[i] = refusal

    async with anyio.create_task_group() as tg:
        for i in range(len(plans)):
            tg.start_soon(one, i)
    for v in verdicts:
        if isinstance(v, Refused) and v.code in _FATAL:
            raise v

    store, budgets = dialer.store, dialer.budgets
    now_ms = int(dialer.wall().timestamp() * 1000)
    day_ago = now_ms - 86_400_000
    day_count = await store.count_attempts(since_ms=day_ago) + pending_elsewhere
    ledger_dest: dict[str, int] = {}
    in_batch: Counter[str] = Counter()
    accepted = 0
    for plan, verdict in zip(plans, verdicts, strict=True):
        budgets_checked = isinstance(verdict, Preflight)
        if isinstance(verdict, Refused):
            deferred = _deferral(verdict)
            if deferred is None:
                plan.code, plan.message = verdict.code, verdict.message
                continue
            plan.note = deferred
            budgets_checked = verdict.code == guardrails.BUDGET_EXCEEDED
        dest = verdict.destination if isinstance(verdict, Preflight) else guardrails.check_destination(
            plan.request.to_number)
        if isinstance(dest, guardrails.Refusal):  # cannot happen: evaluate checked it first
            plan.code, plan.message = dest.code, dest.message
            continue
        plan.region, plan.e164 = dest.region, dest.e164
        if in_batch[dest.e164] or not budgets_checked:
            if dest.e164 not in ledger_dest:
                ledger_dest[dest.e164] = await store.count_attempts(to_number=dest.e164, since_ms=day_ago)
        # The hourly cap never refuses a batch task (the runner slows down to it): count 0 for it here.
        refusal = guardrails.check_budgets(
            budgets, attempts_to_destination_24h=ledger_dest.get(dest.e164, 0) + in_batch[dest.e164],
            calls_last_hour=0, calls_last_day=day_count + accepted,
        )
        if refusal is not None:
            plan.code = refusal.code
            plan.message = (f"{refusal.message} (counting the earlier tasks of this batch and the tasks other "
                            "batches have yet to dial)")
            plan.note = None
            continue
        in_batch[dest.e164] += 1
        accepted += 1


def _deferral(refusal: Refused) -> str | None:
    """The note for a verdict that defers a batch task instead of refusing it; None = refuse."""
    details = refusal.details
    if refusal.code == guardrails.OUTSIDE_CALLING_WINDOW and details.get("problem") == "outside_window" \
            and details.get("next_allowed_at"):
        return f"waits for the callee's calling window {details.get('window')} (opens {details['next_allowed_at']})"
    if refusal.code == guardrails.BUDGET_EXCEEDED and set(details.get("exceeded") or ()) == {guardrails.PER_HOUR}:
        return "waits for the hourly call budget"
    return None
