"""The platform's simulation tests, simulated: test case definitions, batch tests and their runs.

A batch's runs finish `RUN_S` nominal seconds after creation (divided by the sandbox speed). Each run's result is
deterministic: every metric passes with the agent version's `success_rate` (fixture behaviour, 1.0 without one),
drawn from (seed, agent, version, test case content, metric), so the same definitions against the same version
always give the same verdicts, and a version with a lower success rate fails more of them.
State is Retell-shaped (snake_case); the native routes camelCase it on the way out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from typing import TYPE_CHECKING, Any

from .conversation import substitute
from .errors import ApiError

if TYPE_CHECKING:
    from .engine import Engine

RUN_S = 3.0
MAX_CASES = 1000


def _now() -> int:
    return int(time.time() * 1000)


def _unit(*parts: Any) -> float:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SimTests:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.cases: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}  # in creation order
        self._n = 0

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{hashlib.sha256(f'{self.engine.config.seed}:{prefix}:{self._n}'.encode()).hexdigest()[:24]}"

    # --- validation ---------------------------------------------------------------------------------

    def engine_of(self, raw: Any, label: str = "response_engine") -> dict[str, Any]:
        """A response engine body -> {type, llm_id|conversation_flow_id, version?}; it must be an agent's."""
        if not isinstance(raw, dict):
            raise ApiError(400, f"{label} is required: {{type: retell-llm, llm_id, version?}}.")
        kind = raw.get("type")
        key = {"retell-llm": "llm_id", "uponai-llm": "llm_id", "conversation-flow": "conversation_flow_id"}.get(kind)
        if key is None:
            raise ApiError(400, f"{label}.type must be retell-llm or conversation-flow (custom LLM is not supported).")
        ident = raw.get(key)
        if not isinstance(ident, str) or not ident:
            raise ApiError(400, f"{label}.{key} is required.")
        version = raw.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int | float) or version < 0):
            raise ApiError(400, f"{label}.version must be a non-negative integer.")
        self.agent_of({key: ident}, label)
        out = {"type": "retell-llm" if key == "llm_id" else kind, key: ident}
        if version is not None:
            out["version"] = int(version)
        return out

    def agent_of(self, engine: dict[str, Any], label: str = "response_engine") -> tuple[str, Any]:
        ident = engine.get("llm_id") or engine.get("conversation_flow_id") or ""
        agent_id = re.sub(r"^(llm|flow)_", "", ident)
        agent = self.engine.agents.get(agent_id)
        if agent is None:
            raise ApiError(404, f"{label}: no agent uses {ident!r} (the sandbox's LLMs are llm_<agent_id>).")
        return agent_id, agent

    def definition(self, body: dict[str, Any], *, existing: dict[str, Any] | None = None) -> dict[str, Any]:
        base = dict(existing or {})
        for key in ("name", "user_prompt"):
            value = body.get(key, base.get(key))
            if not isinstance(value, str) or not value.strip():
                raise ApiError(400, f"{key} is required and must be a non-empty string.")
            base[key] = value
        metrics = body.get("metrics", base.get("metrics", []))
        if not isinstance(metrics, list) or not all(isinstance(m, str) and m for m in metrics) or len(metrics) > 50:
            raise ApiError(400, "metrics must be a list of at most 50 non-empty strings.")
        dyn = body.get("dynamic_variables", base.get("dynamic_variables", {}))
        if not isinstance(dyn, dict) or not all(isinstance(v, str) for v in dyn.values()):
            raise ApiError(400, "dynamic_variables must be an object of strings.")
        mocks = body.get("tool_mocks", base.get("tool_mocks", []))
        if not isinstance(mocks, list) or not all(isinstance(m, dict) and isinstance(m.get("tool_name"), str)
                                                  and isinstance(m.get("output"), str) for m in mocks):
            raise ApiError(400, "tool_mocks must be a list of {tool_name, input_match_rule, output}.")
        engine = self.engine_of(body["response_engine"]) if "response_engine" in body or existing is None \
            else base["response_engine"]
        llm_model = body.get("llm_model", base.get("llm_model", "gpt-4.1"))
        if not isinstance(llm_model, str):
            raise ApiError(400, "llm_model must be a string.")
        now = _now()
        base.update(metrics=metrics, dynamic_variables=dyn, tool_mocks=mocks, response_engine=engine,
                    llm_model=llm_model, type="simulation", user_modified_timestamp=now)
        base.setdefault("creation_timestamp", now)
        return base

    # --- operations ---------------------------------------------------------------------------------

    def create_case(self, body: dict[str, Any]) -> dict[str, Any]:
        case = self.definition(body)
        case["test_case_definition_id"] = self._id("test_case")
        self.cases[case["test_case_definition_id"]] = case
        return case

    def case_or_404(self, case_id: str) -> dict[str, Any]:
        case = self.cases.get(case_id)
        if case is None:
            raise ApiError(404, f"Test case definition {case_id} not found.")
        return case

    def update_case(self, case_id: str, body: dict[str, Any]) -> dict[str, Any]:
        case = self.definition(body, existing=self.case_or_404(case_id))
        self.cases[case_id] = case
        return case

    def delete_case(self, case_id: str) -> None:
        self.case_or_404(case_id)
        del self.cases[case_id]

    def list_cases(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        ident = query.get("llm_id") or query.get("conversation_flow_id")
        if not ident:
            raise ApiError(400, "llm_id (type retell-llm) or conversation_flow_id (type conversation-flow) is required.")
        # A definition belongs to the LLM; every version of it can run it (so versions can be compared).
        return [c for c in self.cases.values()
                if ident in (c["response_engine"].get("llm_id"), c["response_engine"].get("conversation_flow_id"))]

    def create_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = body.get("test_case_definition_ids")
        if not isinstance(ids, list) or not ids or len(ids) > MAX_CASES or not all(isinstance(i, str) for i in ids):
            raise ApiError(400, f"test_case_definition_ids must be a list of 1 to {MAX_CASES} ids.")
        cases = [self.case_or_404(i) for i in ids]
        engine = self.engine_of(body.get("response_engine"))
        agent_id, agent = self.agent_of(engine)
        version = engine.get("version")
        if version is not None and agent.get(version) is None:
            raise ApiError(404, f"response_engine.version: agent {agent_id} has no version {version}.")
        now = _now()
        batch = {"test_case_batch_job_id": self._id("test_batch"), "status": "in_progress", "response_engine": engine,
                 "pass_count": 0, "fail_count": 0, "error_count": 0, "total_count": len(cases),
                 "creation_timestamp": now, "user_modified_timestamp": now}
        self.batches[batch["test_case_batch_job_id"]] = batch
        runs = []
        for case in cases:
            run = {"test_case_job_id": self._id("test_run"), "status": "in_progress",
                   "test_case_definition_id": case["test_case_definition_id"],
                   "test_case_definition_snapshot": json.loads(json.dumps(case)), "transcript_snapshot": None,
                   "result_explanation": None, "metric_results": None,
                   "test_case_batch_job_id": batch["test_case_batch_job_id"],
                   "creation_timestamp": now, "user_modified_timestamp": now}
            self.runs[run["test_case_job_id"]] = run
            runs.append(run)
        self.engine.spawn(self._finish(batch, runs, agent_id, agent.get(version).version))
        return batch

    def batch_or_404(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise ApiError(404, f"Batch test {batch_id} not found.")
        return batch

    def run_or_404(self, run_id: str) -> dict[str, Any]:
        run = self.runs.get(run_id)
        if run is None:
            raise ApiError(404, f"Test run {run_id} not found.")
        return run

    def list_batches(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        ident = query.get("llm_id") or query.get("conversation_flow_id")
        return [b for b in self.batches.values()
                if not ident or ident in (b["response_engine"].get("llm_id"),
                                          b["response_engine"].get("conversation_flow_id"))]

    def runs_of(self, batch_id: str) -> list[dict[str, Any]]:
        self.batch_or_404(batch_id)
        return [r for r in self.runs.values() if r["test_case_batch_job_id"] == batch_id]

    # --- the simulation -----------------------------------------------------------------------------

    async def _finish(self, batch: dict[str, Any], runs: list[dict[str, Any]], agent_id: str, version: int) -> None:
        await asyncio.sleep(RUN_S / self.engine.config.speed)
        behaviour = self.engine.behaviours.get((agent_id, version))
        rate = behaviour.success_rate if behaviour is not None else 1.0
        av = self.engine.agents[agent_id].get(version)
        for run in runs:
            case = run["test_case_definition_snapshot"]
            metrics = case["metrics"] or ["the agent handles the conversation"]
            results = []
            for metric in metrics:
                passed = _unit(self.engine.config.seed, agent_id, version, case["name"], case["user_prompt"],
                               metric) < rate
                results.append({"metric": metric, "passed": passed,
                                "explanation": f"The agent {'met' if passed else 'did not meet'} this criterion."})
            failed = [r["metric"] for r in results if not r["passed"]]
            run.update(
                status="fail" if failed else "pass", metric_results=results,
                result_explanation=(f"{len(results) - len(failed)}/{len(results)} metrics passed"
                                    + (f"; failed: {'; '.join(failed)}" if failed else "")),
                transcript_snapshot={"transcript": _transcript(av.begin_message if av else "Hello.", case)},
                user_modified_timestamp=_now())
            batch["pass_count" if not failed else "fail_count"] += 1
        batch.update(status="complete", user_modified_timestamp=_now())


def _transcript(begin: str, case: dict[str, Any]) -> list[dict[str, Any]]:
    """A short simulated conversation: the agent's greeting, the simulated user, any mocked tool, a close."""
    dyn = case.get("dynamic_variables") or {}
    first = re.split(r"(?<=[.!?])\s", case["user_prompt"].strip(), maxsplit=1)[0]
    turns: list[dict[str, Any]] = [{"role": "agent", "content": substitute(begin, dyn)},
                                   {"role": "user", "content": first}]
    for i, mock in enumerate(case.get("tool_mocks") or []):
        call_id = f"tool_{i}"
        turns.append({"role": "tool_call_invocation", "tool_call_id": call_id, "name": mock["tool_name"],
                      "arguments": "{}"})
        turns.append({"role": "tool_call_result", "tool_call_id": call_id, "content": mock["output"]})
    turns.append({"role": "agent", "content": "Thanks, that is all set. Goodbye!"})
    return turns
