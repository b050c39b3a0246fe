"""The platform's own simulation tests (no phone call): test case definitions, batch tests, test runs.

Canonical shapes are Retell's (snake_case, `retell-openapi.yaml`: TestCaseDefinition, TestCaseBatchJob,
TestCaseJob). The native dialect documents only `POST/GET /api/test-case-definitions` and
`GET /api/test-runs/batches/{testCaseBatchJobId}`; every other native path, every native body and envelope here
is a guess (docs/wire.md marks them). Pure mapping, no I/O: `client.py` sequences the requests.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .dialects import camel_keys

_OPEN = ConfigDict(extra="allow")


class ResponseEngine(BaseModel):
    """What Retell's test API is keyed by: an agent's LLM (or conversation flow) at a version."""

    model_config = _OPEN
    type: str = "retell-llm"
    llm_id: str | None = None
    conversation_flow_id: str | None = None
    version: int | None = None

    def query(self) -> dict[str, Any]:
        kind = "conversation-flow" if self.conversation_flow_id else "retell-llm"
        return {"type": kind, "llm_id": self.llm_id, "conversation_flow_id": self.conversation_flow_id,
                "version": self.version}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "conversation-flow" if self.conversation_flow_id else "retell-llm"}
        if self.conversation_flow_id:
            out["conversation_flow_id"] = self.conversation_flow_id
        else:
            out["llm_id"] = self.llm_id
        if self.version is not None:
            out["version"] = self.version
        return out


class TestCaseInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    response_engine: ResponseEngine
    user_prompt: str
    metrics: list[str] = Field(default_factory=list)
    dynamic_variables: dict[str, str] = Field(default_factory=dict)
    tool_mocks: list[dict[str, Any]] = Field(default_factory=list)
    llm_model: str | None = None

    def body(self) -> dict[str, Any]:
        out = self.model_dump(exclude_none=True, mode="json")
        out["response_engine"] = self.response_engine.body()
        return out


class TestCase(BaseModel):
    model_config = _OPEN
    test_case_definition_id: str
    name: str
    response_engine: ResponseEngine | None = None
    user_prompt: str | None = None
    metrics: list[str] = Field(default_factory=list)
    dynamic_variables: dict[str, Any] = Field(default_factory=dict)
    tool_mocks: list[dict[str, Any]] = Field(default_factory=list)
    llm_model: str | None = None
    type: str | None = None
    creation_timestamp: int | None = None
    user_modified_timestamp: int | None = None


class TestBatch(BaseModel):
    model_config = _OPEN
    test_case_batch_job_id: str
    status: Literal["in_progress", "complete"] | str
    response_engine: ResponseEngine | None = None
    pass_count: int = 0
    fail_count: int = 0
    error_count: int = 0
    total_count: int = 0
    creation_timestamp: int | None = None
    user_modified_timestamp: int | None = None


class MetricResult(BaseModel):
    """One metric's verdict in a test run (not in Retell's schema: a sandbox and native field, [guess])."""

    model_config = _OPEN
    metric: str
    passed: bool
    explanation: str | None = None


class TestRun(BaseModel):
    model_config = _OPEN
    test_case_job_id: str
    status: Literal["in_progress", "pass", "fail", "error"] | str
    test_case_definition_id: str
    test_case_definition_snapshot: dict[str, Any] | None = None
    transcript_snapshot: dict[str, Any] | None = None
    result_explanation: str | None = None
    metric_results: list[MetricResult] | None = None
    test_case_batch_job_id: str | None = None
    creation_timestamp: int | None = None
    user_modified_timestamp: int | None = None


# --- native (camelCase) readers and writers: every shape below is a guess ------------------------------------

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def snake(key: str) -> str:
    return _CAMEL.sub("_", key).lower()


def snake_keys(value: Any, *, keep: frozenset[str] = frozenset({"dynamic_variables", "dynamicVariables"})) -> Any:
    """camelCase -> snake_case keys, recursively; the user's own maps (dynamic variables) are left alone."""
    if isinstance(value, dict):
        return {(snake(k) if isinstance(k, str) else k): (v if k in keep else snake_keys(v, keep=keep))
                for k, v in value.items()}
    if isinstance(value, list):
        return [snake_keys(v, keep=keep) for v in value]
    return value


def native_body(body: dict[str, Any], workspace_id: int) -> dict[str, Any]:
    out = camel_keys({k: v for k, v in body.items() if k != "dynamic_variables"})
    if "dynamic_variables" in body:
        out["dynamicVariables"] = body["dynamic_variables"]
    return {"workspaceId": workspace_id, **out}


def native_query(engine: ResponseEngine, workspace_id: int) -> dict[str, Any]:
    return {"workspaceId": workspace_id, **{camelize(k): v for k, v in engine.query().items()}}


def camelize(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def unwrap_native(body: Any, *keys: str) -> Any:
    """`{"success": true, <key>: X}` -> X (snake-cased); a bare value passes through."""
    if isinstance(body, dict):
        for key in keys:
            if key in body:
                return snake_keys(body[key])
    return snake_keys(body)


def items(body: Any, *keys: str) -> list[dict[str, Any]]:
    value = unwrap_native(body, *keys)
    if isinstance(value, dict) and isinstance(value.get("items"), list):
        value = value["items"]
    return value if isinstance(value, list) else []
