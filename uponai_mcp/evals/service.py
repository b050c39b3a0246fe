"""The evaluation use case: check a suite against the guardrails, run its items through the dialer, wait for
each call's analysis, score, and keep the results (store) so a run can be read, followed and resumed.

Every call goes through `Dialer.place` (guardrails, budgets, ledger, pacer, API, record), with an idempotency key
derived from (run, case, repeat, variant): a run killed and resumed replays the calls it already placed and dials
only the rest. A key whose attempt provably never left (failed before dialling: a crash, a full pacing horizon)
is followed by the next key of the same item (`<key>#1`, ...), never by a blind retry of a sent request.
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from uponai_mcp.api import errors as api_errors
from uponai_mcp.config import Settings
from uponai_mcp.dialer import Dialer
from uponai_mcp.errors import Refused, from_api_error
from uponai_mcp.store import Store
from uponai_mcp.store.evals import EvalRunRow, EvalRuns

from . import plan
from .plan import Item
from .platform_tests import AgentTests
from .report import REASON_REFUSED, REASON_TIMEOUT, EvalReport, ItemResult, Summary, item_result, summarize
from .suite import Problem, Suite
from .views import EvalRunBrief, EvalRunView

log = logging.getLogger(__name__)

Report = Callable[[int, int, str], Awaitable[None]]
MAX_KEY_TRIES = 6  # next keys of one item after tries that never reached the platform
MAX_WORKERS = 64  # items being checked and dialled at once (the pacer spaces them)
RECHECK_S = 5.0  # store re-read while waiting for an analysis when no change was announced
NOT_CONNECTED_GRACE_S = 60.0  # a call that never connected may get no analysis: score it after this
RECONCILE_TRIES = 3  # lookups by attempt tag of a try an earlier process left in flight
RECONCILE_DELAY_S = 1.0
_REDIAL_CODES = frozenset({"rate_limited", "outcome_unknown"})  # failed tries that are dialled again


def resource_uri(run_id: str) -> str:
    return f"uponai://evals/{run_id}"


@dataclass
class Checked:
    """What `check` learned: problems (nothing may dial while any exists), and the confirmation question."""

    problems: list[Problem]
    needs_confirmation: bool = False
    scope: str | None = None
    summary: str = ""


@dataclass
class _Live:
    done: int = 0
    total: int = 0
    changed: anyio.Event = field(default_factory=anyio.Event)

    def touch(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


class EvalService:
    def __init__(self, settings: Settings, dialer: Dialer, store: Store, *, feed: Any = None,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC),
                 publish: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.dialer = dialer
        self.store = store
        self.feed = feed
        self.wall = wall
        self.publish = publish
        self.runs = EvalRuns(store)
        self.platform = AgentTests(dialer.api)  # the platform's own simulation tests (no phone call)
        self._tg: anyio.abc.TaskGroup | None = None
        self._live: dict[str, _Live] = {}
        self._fresh: set[str] = set()  # runs created here that have not started

    def _now_ms(self) -> int:
        return int(self.wall().timestamp() * 1000)

    # --- checking ---------------------------------------------------------------------------------

    async def check(self, suite: Suite, items: list[Item], *, file: str = "<suite>",
                    run_id: str | None = None) -> Checked:
        """Every guardrail for every distinct call, and the run's budget totals, before anything dials.
        All problems at once, each located by file, case and key. `run_id`: items already placed by that run
        (a resume) do not count against the budgets again."""
        problems: dict[tuple[str | None, str, str], Problem] = {}
        needs, scope, summary = False, None, ""

        def add(case: str | None, key: str, message: str) -> None:
            problems.setdefault((case, key, message), Problem(file=file, case=case, key=key, message=message))

        seen: set[tuple[int, int]] = set()
        e164: dict[str, str] = {}  # as written -> as the ledger stores it
        for item in items:
            if (item.case_idx, item.variant_idx) in seen:
                continue
            seen.add((item.case_idx, item.variant_idx))
            try:
                pf = await self.dialer.evaluate(item.request)
            except Refused as refusal:
                if refusal.code == "budget_exceeded":
                    continue  # reported below with the run's own totals
                add(*_locate(item, refusal.code), f"{refusal.code}: {refusal.message}")
                continue
            except api_errors.ApiError as exc:
                refusal = from_api_error(exc)
                add(None, "(platform)", f"{refusal.code}: {refusal.message}")
                continue
            needs = needs or pf.needs_confirmation
            scope = scope or pf.from_number.kind.value
            summary = summary or pf.summary
            e164[item.request.to_number] = pf.destination.e164
        await self._check_budgets(items, add, run_id, e164)
        return Checked(list(problems.values()), needs, scope, summary)

    async def _check_budgets(self, items: list[Item], add: Callable[[str | None, str, str], None],
                             run_id: str | None, e164: dict[str, str]) -> None:
        todo = items
        if run_id is not None:
            todo = [i for i in items if await self.store.get_attempt_by_key(plan.idempotency_key(run_id, i)) is None]
        if not todo:
            return
        s, now = self.settings, self._now_ms()
        per_dest: dict[str, list[Item]] = {}
        for item in todo:
            number = item.request.to_number
            per_dest.setdefault(e164.get(number, number), []).append(item)
        for number, mine in per_dest.items():
            before = await self.store.count_attempts(to_number=number, since_ms=now - 86_400_000)
            if before + len(mine) > s.max_attempts_per_destination_24h:
                add(mine[0].case.name, "to_number",
                    f"budget_exceeded: this run calls {number} {len(mine)} times"
                    + (f" (and it was called {before} times in the last 24 h)" if before else "")
                    + f"; the per-destination budget is {s.max_attempts_per_destination_24h} per 24 h "
                    "(UPONAI_MAX_ATTEMPTS_PER_DESTINATION)")
        for label, since, cap, env in (("hour", 3_600_000, s.max_calls_per_hour, "UPONAI_MAX_CALLS_PER_HOUR"),
                                       ("day", 86_400_000, s.max_calls_per_day, "UPONAI_MAX_CALLS_PER_DAY")):
            before = await self.store.count_attempts(since_ms=now - since)
            if before + len(todo) > cap:
                add(None, "cases", f"budget_exceeded: this run places {len(todo)} calls and {before} were placed "
                                   f"in the last {label}; the budget is {cap} per {label} ({env})")

    # --- confirmation tokens (clients without elicitation) ---------------------------------------

    async def ask_confirmation(self, suite: Suite, items: list[Item], checked: Checked) -> Refused:
        """A single-use token bound to this exact suite, as the refusal to answer (run_eval again with it)."""
        summary = (f"Evaluation {suite.name!r}: {len(items)} calls ({len(suite.cases)} case(s), "
                   f"{len(suite.variant_list())} variant(s)), e.g. {checked.summary}")
        issued = await self.dialer.confirmations.issue("eval", params_hash=suite_hash(suite, items),
                                                       request_json=suite.model_dump_json(), summary=summary)
        return Refused(
            "confirmation_required",
            f"{summary}. Every call rings a real phone and costs money. Show this to the user; if they approve, "
            f"call run_eval again with the same suite and confirm_token {issued.token} (single use, expires "
            f"{issued.expires_at.strftime('%H:%M:%S')} UTC). Nothing was dialled.", **issued.details())

    async def redeem(self, token: str, suite: Suite, items: list[Item]) -> None:
        await self.dialer.confirmations.redeem("eval", token, params_hash=suite_hash(suite, items))

    # --- runs -------------------------------------------------------------------------------------

    async def create_run(self, suite: Suite, *, repeat: int | None, seed: int | None, file: str,
                         total: int) -> str:
        run_id = "eval_" + uuid.uuid4().hex[:20]
        await self.runs.create(run_id, name=suite.name, suite=suite.model_dump(mode="json", exclude_none=True),
                               options={"repeat": repeat, "seed": seed, "file": file}, total=total,
                               now_ms=self._now_ms())
        self._fresh.add(run_id)
        return run_id

    async def load_run(self, run_id: str) -> tuple[EvalRunRow, Suite, list[Item]]:
        row = await self.runs.get(run_id)
        if row is None:
            raise Refused("not_found", f"There is no evaluation run {run_id}; list_eval_runs shows recent ones.")
        suite = Suite.model_validate(row.suite)
        return row, suite, plan.expand(suite, repeat=row.options.get("repeat"))

    async def execute(self, run_id: str, suite: Suite, items: list[Item], *, report: Report | None = None) -> EvalReport:
        """Run (or finish) every item of a run in the foreground and return its report."""
        await self.runs.set_status(run_id, "running", now_ms=self._now_ms())
        live = self._live.setdefault(run_id, _Live())
        try:
            done = await self.runs.results(run_id)
            todo = [i for i in items if i.key not in done]
            live.total, live.done = len(items), len(items) - len(todo)
            if report is not None:
                await report(live.done, live.total, "resuming" if live.done else "starting")
            # Created by this process and never run: no item can have an attempt yet, so skip looking for one.
            resumed = run_id not in self._fresh
            self._fresh.discard(run_id)
            workers = await self._workers(items)
            slots = anyio.Semaphore(workers)
            async with anyio.create_task_group() as tg:
                for item in todo:
                    await slots.acquire()
                    tg.start_soon(self._run_item, run_id, suite, item, slots, live, report, resumed)
            summary = await self.summary(run_id, suite, len(items))
            await self.runs.set_status(run_id, "completed", summary=summary.model_dump(mode="json"),
                                       now_ms=self._now_ms())
        except BaseException:
            with anyio.CancelScope(shield=True):
                try:
                    await self.runs.set_status(run_id, "interrupted", now_ms=self._now_ms())
                except Exception:  # the store may be what failed; the run resumes either way
                    log.warning("could not mark eval run %s interrupted", run_id)
            raise
        finally:
            live.touch()
            self._changed(run_id)
        return await self.report(run_id)

    async def _workers(self, items: list[Item]) -> int:
        """Enough items in flight to keep the scope's pacer busy (a dial takes a few ms of work and a round trip),
        few enough that a single call placed meanwhile is not queued behind many booked slots, and that the
        client's connection pool stays small."""
        try:
            pf = await self.dialer.evaluate(items[0].request) if items else None
            cps = 1 / max(self.dialer.pacer.get_state(pf.from_number.kind.value).spacing_s, 1e-6) if pf else 1
        except (Refused, api_errors.ApiError):
            cps = 1
        return max(2, min(MAX_WORKERS, math.ceil(cps / 8)))

    async def _run_item(self, run_id: str, suite: Suite, item: Item, slots: anyio.Semaphore, live: _Live,
                        report: Report | None, resumed: bool) -> None:
        released = False
        try:
            try:
                call_id = await self._place(run_id, item, resumed=resumed)
            except Refused as refusal:
                result = item_result(item, None, reason=REASON_REFUSED, refusal_code=refusal.code,
                                     message=str(refusal))
            else:
                slots.release()
                released = True
                call, reason = await self._analyzed(call_id, suite.timeout_s)
                result = item_result(item, call, reason=reason)
            await self.runs.save_result(run_id, item.key, call_id=result.call_id, passed=result.passed,
                                        result=result.model_dump(mode="json"), now_ms=self._now_ms())
        finally:
            if not released:
                slots.release()
        live.done += 1
        live.touch()
        self._changed(run_id)
        if report is not None:
            await report(live.done, live.total, f"{item.case.name} [{item.variant_label} #{item.repeat + 1}]: "
                                                f"{'pass' if result.passed else result.reason}")

    async def _place(self, run_id: str, item: Item, *, resumed: bool) -> str:
        base = plan.idempotency_key(run_id, item)
        last: Refused | None = None
        for n in range(MAX_KEY_TRIES):
            key = base if n == 0 else f"{base}#{n}"
            existing = await self.store.get_attempt_by_key(key) if resumed or n else None
            if existing is not None and existing.state in ("pending", "dialing", "unknown"):
                # Left in flight by an earlier process (each item runs once per process): settle it from the
                # platform by its attempt tag before anything else. Found: that is the item's call.
                call = await self.dialer.reconcile(existing.attempt_id, tries=RECONCILE_TRIES,
                                                   delay_s=RECONCILE_DELAY_S)
                if call is not None:
                    return call.call_id
                await self.store.mark_attempt(
                    existing.attempt_id, "failed", error_code="outcome_unknown",
                    error_message="not found on the platform by its attempt tag after a restart; dialled again",
                    now_ms=self._now_ms())
                continue
            if existing is not None and existing.state == "failed" and (
                    existing.dialed_at_ms is None or existing.error_code in _REDIAL_CODES):
                continue  # that try provably never reached the platform (or was not found there): the next key
            try:
                placement = await self.dialer.place(item.request, idempotency_key=key, confirmed=True,
                                                    source=f"eval:{run_id}")
            except Refused as refusal:
                last = refusal
                if refusal.code == "rate_limited":
                    await anyio.sleep(min(30.0, float(refusal.details.get("retry_after_s") or 1.0)))
                    continue
                raise
            return placement.call.call_id
        raise last or Refused("upstream_error", "The call could not be placed after several tries.")

    async def _analyzed(self, call_id: str, timeout_s: float) -> tuple[dict[str, Any], str | None]:
        """The call once analyzed (reason None), or as it is at the timeout (reason "timeout"). Polls the call's
        flags (cheap) on each change; the snapshot is read once, at the end."""
        deadline = anyio.current_time() + timeout_s
        terminal_at: float | None = None
        reason: str | None = REASON_TIMEOUT
        while True:
            changed = self.feed.changed_event(call_id) if self.feed is not None else None
            progress = await self.runs.call_progress(call_id)
            now = anyio.current_time()
            if progress is not None:
                status, terminal, analyzed = progress
                if analyzed:
                    reason = None
                    break
                if terminal:
                    terminal_at = terminal_at or now
                    if status != "ended" and now - terminal_at >= NOT_CONNECTED_GRACE_S:
                        reason = None
                        break
            if now >= deadline:
                break
            with anyio.move_on_after(min(deadline - now, RECHECK_S)):
                if changed is not None:
                    await changed.wait()
                else:
                    await anyio.sleep(RECHECK_S)
        record = await self.store.get_call_record(call_id)
        return (record.call if record is not None else {"call_id": call_id}), reason

    def _changed(self, run_id: str) -> None:
        if self.publish is not None:
            self.publish(resource_uri(run_id))

    # --- reading ----------------------------------------------------------------------------------

    async def results(self, run_id: str) -> list[ItemResult]:
        return [ItemResult.model_validate(r) for r in (await self.runs.results(run_id)).values()]

    async def summary(self, run_id: str, suite: Suite, total: int) -> Summary:
        return summarize(suite, await self.results(run_id), total=total)

    async def view(self, run_id: str, *, results: str = "failed", limit: int = 100) -> EvalRunView:
        row, suite, items = await self.load_run(run_id)
        every = sorted(await self.results(run_id), key=lambda r: (r.case_idx, r.variant_idx, r.repeat))
        chosen = [] if results == "none" else [r for r in every if results == "all" or not r.passed]
        return EvalRunView(**EvalRunBrief.of(row).model_dump(), summary=summarize(suite, every, total=len(items)),
                           results=chosen[:limit], results_total=len(chosen))

    async def list(self, limit: int = 20) -> list[EvalRunBrief]:
        return [EvalRunBrief.of(row) for row in await self.runs.list(limit)]

    async def report(self, run_id: str) -> EvalReport:
        row, suite, items = await self.load_run(run_id)
        results = sorted(await self.results(run_id), key=lambda r: (r.case_idx, r.variant_idx, r.repeat))
        return EvalReport(
            run_id=run_id, suite=suite.name, status=row.status, seed=row.options.get("seed"),
            started_at=_iso(row.created_at_ms), finished_at=_iso(row.updated_at_ms) if row.status != "running"
            else None, summary=summarize(suite, results, total=len(items)), results=results)

    # --- background runs (MCP) --------------------------------------------------------------------

    def start(self, run_id: str, suite: Suite, items: list[Item], report: Report | None = None) -> None:
        if self._tg is None:
            raise Refused("configuration_error", "Evaluations are not running on this server.")
        self._live[run_id] = _Live(total=len(items))
        self._tg.start_soon(self._background, run_id, suite, items, report)

    async def _background(self, run_id: str, suite: Suite, items: list[Item], report: Report | None) -> None:
        try:
            await self.execute(run_id, suite, items, report=report)
        except Exception:
            log.exception("evaluation run %s stopped; resume it with `uponai-mcp eval --resume %s`", run_id, run_id)

    async def wait(self, run_id: str, timeout_s: float, report: Report | None = None) -> bool:
        """Wait until a background run finishes (True) or the timeout (False), reporting progress."""
        reported = -1
        with anyio.move_on_after(timeout_s):
            while True:
                live = self._live.get(run_id)
                changed = live.changed if live is not None else None
                row = await self.runs.get(run_id)
                if live is not None and report is not None and live.done > reported:  # progress only increases
                    reported = live.done
                    await report(live.done, live.total, f"{live.done}/{live.total} calls scored")
                if row is None or row.status != "running" or changed is None:
                    return True
                with anyio.move_on_after(RECHECK_S):
                    await changed.wait()
        return False

    @asynccontextmanager
    async def running(self) -> AsyncIterator[EvalService]:
        """Background runs (run_eval) live in this block; leaving it interrupts them (resumable)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield self
            finally:
                self._tg = None
                tg.cancel_scope.cancel()


def _locate(item: Item, code: str) -> tuple[str | None, str]:
    """Which suite key a refusal is about."""
    if code == "from_number_not_usable":
        return None, "from_number"
    if code == "not_found" and item.variant is not None:
        return item.case.name, f"variants[{item.variant_idx}]"
    return item.case.name, "to_number"


def suite_hash(suite: Suite, items: list[Item]) -> str:
    """What a confirmation approves: the suite and how many calls it makes (a --repeat changes that)."""
    return hashlib.sha256(f"{len(items)}:{suite.model_dump_json()}".encode()).hexdigest()


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
