"""The one simulation both dialects drive: account state, call admission and each call's lifecycle.

create_call is synchronous on purpose: admission (idempotency, CPS, concurrency, id draw) happens
atomically on the event loop, so concurrent requests can neither overshoot a limit nor race an id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

from uponai_mcp.models import ProviderKind, WeightedAgent

from . import behaviour as behaviours
from . import rules
from .config import SCOPES, SandboxConfig
from .conversation import Plan, plan_call, substitute
from .cps import CpsLimiter, retry_headers
from .delivery import Deliverer
from .errors import RATE_LIMITED, ApiError
from .faults import RequestFaults
from .records import AgentRec, CallRec, NumberRec
from .seed import DEFAULT_SEED, build_seed, load_fixture
from .testing import SimTests

log = logging.getLogger("uponai_mcp.sandbox")

IDEMPOTENCY_WINDOW_S = 3600
LIVE = ("registered", "ongoing")


def now_ms() -> int:
    return int(time.time() * 1000)


class Engine:
    def __init__(self, config: SandboxConfig) -> None:
        self.startup_config = config
        self.config = dataclasses.replace(config, cps=dict(config.cps))
        self.seed_data = load_fixture(config.fixture) if config.fixture else DEFAULT_SEED
        self.behaviours = behaviours.parse(self.seed_data)  # per-version behaviour (evaluation stage)
        self.base_url: str | None = None  # set by the server once bound, else from the first request
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing: asyncio.Event | None = None
        self.deliverer = Deliverer(api_key=lambda: self.config.api_key, speed=lambda: self.config.speed,
                                   spawn=self.spawn)
        self._load()

    # --- state ----------------------------------------------------------------------------------

    def _load(self) -> None:
        seed = build_seed(self.seed_data)
        self.workspace_id, self.account_sid = seed.workspace_id, seed.account_sid
        self.agents: dict[str, AgentRec] = seed.agents
        self.numbers: dict[str, NumberRec] = seed.numbers
        self.calls: dict[str, CallRec] = {}
        self._slot_holders: set[str] = set()  # calls holding a concurrency slot, possibly still live
        self.rng = random.Random(self.config.seed)
        self.idempotency: dict[str, tuple[str, float]] = {}
        self.cps = CpsLimiter()
        self.faults = RequestFaults()
        self.counters: Counter[str] = Counter()
        self.deliverer.reset()
        self.testing = SimTests(self)  # the platform's simulation tests (no phone call)

    def agent_or_404(self, agent_id: str) -> AgentRec:
        """The agent, or the platform's 404 naming it (both dialects' routes look agents up this way)."""
        agent = self.agents.get(agent_id)
        if agent is None:
            raise ApiError(404, f"Agent {agent_id} not found.")
        return agent

    def reset(self) -> None:
        """Back to the seeded state and the start-up settings; pending timers and deliveries stop."""
        for task in list(self._tasks):
            task.cancel()
        self.config = dataclasses.replace(self.startup_config, cps=dict(self.startup_config.cps))
        self._load()

    # --- tasks ----------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def pending_tasks(self) -> int:
        """Lifecycle timers and webhook deliveries still running (0 after shutdown)."""
        return sum(1 for t in self._tasks if not t.done())

    async def start(self) -> None:
        self._closing = asyncio.Event()

    def release_hangs(self) -> None:
        if self._closing is not None:
            self._closing.set()

    async def hang(self, seconds: float) -> None:
        """Sleep like a stuck server, but wake at once when the sandbox shuts down."""
        if self._closing is None:
            self._closing = asyncio.Event()
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            pass

    async def aclose(self) -> None:
        self.release_hangs()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.deliverer.aclose()

    # --- calls ----------------------------------------------------------------------------------

    def active_calls(self) -> int:
        # Only calls that took a slot and may still be live are looked at (pruned as they end): a scan of every
        # call ever made would cost O(calls) per create, quadratic over a long evaluation run.
        ended = [cid for cid in self._slot_holders if self.calls[cid].status not in LIVE]
        self._slot_holders.difference_update(ended)
        return len(self._slot_holders)

    def create_call(self, spec: rules.CreateSpec, dialect: str) -> tuple[CallRec, bool]:
        """Admit a call or raise ApiError. Returns (call, replayed) where replayed = idempotent repeat."""
        wall = time.time()
        key = spec.idempotency_key
        if key:
            hit = self.idempotency.get(key)
            if hit and wall - hit[1] < IDEMPOTENCY_WINDOW_S and hit[0] in self.calls:
                self.counters["idempotent_replays"] += 1
                return self.calls[hit[0]], True
        number = self._from_number(spec)
        region = rules.check_to_number(spec.to_number)
        rules.check_country(number.kind, region, spec.to_number, spec.from_number,
                            number.allowed_outbound_country_list)
        candidates = self._agent_candidates(spec, number)
        scope = number.kind.value
        wait = self.cps.admit(scope, self.config.cps[scope])
        if wait is not None:
            raise ApiError(429, RATE_LIMITED, retry_headers(wait))
        # Random draws only after every check passed: rejected requests never shift later ids.
        agent_id, version = self._draw(candidates)
        call_id = f"call_{self.rng.getrandbits(112):028x}"
        over_limit = self.active_calls() >= self.config.concurrency_limit
        outcome = "concurrency" if over_limit else rules.outcome_for(spec)
        rec = CallRec(seq=len(self.calls) + 1, call_id=call_id, created_at_ms=int(wall * 1000), scope=scope,
                      outcome=outcome, holds_slot=not over_limit, dialect=dialect,
                      data=self._call_object(call_id, spec, number, agent_id, version))
        crng = random.Random(f"{self.config.seed}:{call_id}")
        if number.kind is ProviderKind.TWILIO:
            rec.data["telephony_identifier"] = {"twilio_call_sid": f"CA{crng.getrandbits(128):032x}"}
        self.calls[call_id] = rec
        if rec.holds_slot:
            self._slot_holders.add(call_id)
        if key:
            self.idempotency[key] = (call_id, wall)
        self.counters["creates_accepted"] += 1
        self.counters[f"creates_accepted.{scope}"] += 1
        self.spawn(self._lifecycle(rec, self._plan(rec, spec, number, crng)))
        return rec, False

    def _from_number(self, spec: rules.CreateSpec) -> NumberRec:
        number = self.numbers.get(spec.from_number)
        if spec.ignore_e164_validation:
            if number is not None and number.kind.platform_bought:
                raise ApiError(400, f"ignore_e164_validation only applies to custom telephony (imported) numbers; "
                                    f"{spec.from_number} is a {number.kind.to_wire()} number.")
            if number is not None:
                return number
            # A pseudo number / extension (e.g. "334") goes out over the account's imported SIP trunk.
            trunk = next((n for n in self.numbers.values() if n.kind is ProviderKind.CUSTOM), None)
            if trunk is None or rules.E164.fullmatch(spec.from_number):
                raise ApiError(404, f"from_number {spec.from_number!r} is not a phone number of this account"
                                    + ("" if trunk else " and the account has no custom telephony number") + ".")
            return trunk
        rules.check_from_format(spec.from_number)
        if number is None:
            raise ApiError(404, f"from_number {spec.from_number} is not a phone number of this account "
                                "(buy or import it first).")
        return number

    def _check_agent(self, agent_id: str, version: int | None, label: str) -> AgentRec:
        agent = self.agents.get(agent_id)
        if agent is None:
            raise ApiError(404, f"{label}: agent {agent_id!r} not found.")
        if agent.get(version) is None:
            known = ", ".join(str(v) for v in sorted(agent.versions))
            raise ApiError(404, f"{label}: agent {agent_id} has no version {version} (versions: {known}).")
        return agent

    def _agent_candidates(self, spec: rules.CreateSpec, number: NumberRec) -> list[tuple[str, int | None, float]]:
        v = spec.override_agent_version
        if spec.override_agent_id:
            self._check_agent(spec.override_agent_id, v, "override_agent_id")
            return [(spec.override_agent_id, v, 1.0)]
        if not number.outbound_agents:
            raise ApiError(400, f"from_number {number.phone_number} has no outbound agent; bind one "
                                "(outbound_agents) or pass override_agent_id.")
        out = []
        for a in number.outbound_agents:
            version = v if v is not None else a.agent_version
            self._check_agent(a.agent_id, version, "override_agent_version" if v is not None else "outbound agent")
            out.append((a.agent_id, version, a.weight))
        return out

    def _draw(self, candidates: list[tuple[str, int | None, float]]) -> tuple[str, int | None]:
        if len(candidates) == 1:
            return candidates[0][0], candidates[0][1]
        point = self.rng.random() * sum(c[2] for c in candidates)
        for agent_id, version, weight in candidates:
            point -= weight
            if point < 0:
                return agent_id, version
        return candidates[-1][0], candidates[-1][1]

    def _call_object(self, call_id: str, spec: rules.CreateSpec, number: NumberRec, agent_id: str,
                     version: int | None) -> dict[str, Any]:
        av = self.agents[agent_id].get(version)
        assert av is not None
        data: dict[str, Any] = {
            "call_id": call_id, "call_type": "phone_call", "agent_id": agent_id, "agent_version": av.version,
            "agent_name": av.agent_name, "call_status": "registered", "direction": "outbound",
            "from_number": spec.from_number, "to_number": spec.to_number, "metadata": spec.metadata or {},
            "retell_llm_dynamic_variables": spec.dynamic_variables or {},
            "data_storage_setting": "everything", "opt_in_signed_url": False,
        }
        if spec.custom_sip_headers:
            data["custom_sip_headers"] = spec.custom_sip_headers
        return data

    def _plan(self, rec: CallRec, spec: rules.CreateSpec, number: NumberRec, crng: random.Random) -> Plan:
        av = self.agents[rec.data["agent_id"]].get(rec.data["agent_version"])
        assert av is not None
        override = spec.agent_override or {}
        begin = (override.get("retell_llm") or {}).get("begin_message") or \
            (override.get("conversation_flow") or {}).get("begin_message") or av.begin_message
        dyn = spec.dynamic_variables or {}
        variables = {"user_number": spec.to_number, "agent_number": spec.from_number, "call_id": rec.call_id,
                     "direction": "outbound", **dyn}
        behave = self.behaviours.get((rec.data["agent_id"], rec.data["agent_version"]))
        if behaviours.wants_request_rng(spec, behave):
            crng = behaviours.request_rng(self.config.seed, rec.data["agent_id"], rec.data["agent_version"], spec)
        plan = plan_call(crng, rec.outcome, begin_message=substitute(begin, variables),
                         customer=dyn.get("customer_name"), kind=number.kind,
                         max_call_duration_ms=(override.get("agent") or {}).get("max_call_duration_ms"),
                         user_says=rules.user_says(spec))
        return behaviours.apply(plan, behave, crng) if behave is not None else plan

    async def _sleep(self, nominal_s: float) -> None:
        await asyncio.sleep(nominal_s / self.config.speed)

    async def _lifecycle(self, rec: CallRec, plan: Plan) -> None:
        try:
            await self._sleep(plan.ring_s)
            if plan.connected:
                rec.data.update(call_status="ongoing", start_timestamp=now_ms())
                self._emit(rec, "call_started")
                await self._sleep(plan.duration_ms / 1000)
            rec.data.update(plan.ended_fields)
            rec.data.update(call_status="ended" if plan.connected else "not_connected", end_timestamp=now_ms(),
                            disconnection_reason=plan.disconnection_reason)
            if plan.connected:
                rec.data["recording_url"] = f"{self.base_url or ''}/_sandbox/recordings/{rec.call_id}.wav"
            self._emit(rec, "call_ended")
            if not plan.connected and self.config.call_failed_events:
                self._emit(rec, "call_failed")
            await self._sleep(plan.analysis_s)
            rec.data["call_analysis"] = plan.analysis
            self._emit(rec, "call_analyzed", final=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("lifecycle of %s failed", rec.call_id)

    def _emit(self, rec: CallRec, event: str, final: bool = False) -> None:
        rec.events.append(event)
        self.deliverer.emit(self.config.webhook_url, rec.call_id, event, rec.data, final)

    # --- numbers --------------------------------------------------------------------------------

    def set_bindings(self, number: NumberRec, changes: dict[str, list[WeightedAgent] | None]) -> None:
        """Apply binding changes (key present = change, None = unset) after checking every agent exists."""
        for key, items in changes.items():
            for i, a in enumerate(items or []):
                self._check_agent(a.agent_id, a.agent_version, f"{key}[{i}]")
        for key, items in changes.items():
            setattr(number, key, items)
        number.modified_ms = now_ms()

    # --- reporting ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.counters["requests"],
            "requests_by_dialect": {d: self.counters[f"requests.{d}"] for d in ("retell", "uponai")},
            "requests_by_route": {k.removeprefix("route."): v for k, v in self.counters.items() if k.startswith("route.")},
            "creates_accepted": self.counters["creates_accepted"],
            "creates_accepted_by_scope": {s: self.counters[f"creates_accepted.{s}"] for s in SCOPES},
            "idempotent_replays": self.counters["idempotent_replays"],
            "rate_limited_by_scope": dict(self.cps.rejected),
            "max_accepted_in_any_second": {s: self.cps.max_per_second(s) for s in SCOPES},
            "faults_injected": {k.removeprefix("fault."): v for k, v in self.counters.items() if k.startswith("fault.")},
            "active_calls": self.active_calls(),
            "calls_by_status": dict(Counter(c.status for c in self.calls.values())),
            "webhooks": dict(self.deliverer.stats.counts),
            "webhook_log": list(self.deliverer.stats.log),
        }
