"""The async platform client: one method per operation, in either dialect.

`Transport` does HTTP, retries and errors; `dialects` maps bodies; this module sequences the
calls an operation needs (e.g. the native create-call first reads the from-number's binding).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable
from typing import Any, Literal, ParamSpec, TypeVar
from urllib.parse import quote

import anyio
import httpx
from pydantic import ValidationError

from uponai_mcp.config import Settings
from uponai_mcp.models import (
    Agent,
    BindingUpdate,
    Call,
    CallFilter,
    CallPage,
    CallRequest,
    Concurrency,
    PhoneNumber,
)

from . import dialects as d
from . import testing as t
from .errors import ConfigurationError, InvalidRequest, NotFound, OutcomeUnknown, ServerError
from .transport import DEFAULT_TIMEOUT, Ambiguous, Transport, now_ms

Dialect = Literal["uponai", "retell"]

RECONCILE_MARGIN_MS = 5 * 60 * 1000  # clock skew between us and the platform
RECONCILE_MAX_PAGES = 50  # bound the native scan: 50 pages x 100 calls
PAGE_SIZE = 1000  # numbers/agents per page (Retell max)
NATIVE_AGENT_LIMIT = 1000  # the native maximum; paging keys are followed if the platform sends them


# A 2xx body we cannot map (missing fields, wrong types).
SHAPE_ERRORS = (ValidationError, KeyError, TypeError, AttributeError)

_T = TypeVar("_T")
_P = ParamSpec("_P")


def _shaped(fn: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[_T]]:
    """A read whose answer does not have the expected shape raises ServerError, not a mapping error."""

    @functools.wraps(fn)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await fn(*args, **kwargs)
        except SHAPE_ERRORS as exc:
            raise ServerError(f"unexpected response from the platform in {fn.__name__}: {exc}"[:500]) from exc

    return wrapper


def _seg(value: str) -> str:
    """A path segment; `+` of E.164 stays literal (it is legal in a path). `.` and `..` are refused: URL
    normalisation would turn them into another route of the platform."""
    if value.strip(".") == "":
        raise NotFound(f"{value!r} is not an id", None)
    return quote(value, safe="+")


class UponAIClient:
    def __init__(
        self, *, base_url: str, api_key: str, dialect: Dialect = "uponai", workspace_id: int | None = None,
        account_sid: str | None = None, timeout: httpx.Timeout | None = None, create_timeout_s: float = 60.0,
        max_retries: int = 3, backoff_base_s: float = 0.25, backoff_cap_s: float = 8.0,
        retry_after_cap_s: float = 60.0, transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None, sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
    ) -> None:
        if dialect not in ("uponai", "retell"):
            raise ConfigurationError(f"unknown dialect {dialect!r}: use 'uponai' or 'retell'")
        self.dialect: Dialect = dialect
        self.workspace_id = workspace_id
        self.account_sid = account_sid
        self.rng = rng or random.Random()
        base = timeout or DEFAULT_TIMEOUT
        # The create waits longer for its answer; connecting is as quick as for any request.
        self.create_timeout = httpx.Timeout(
            connect=base.connect, read=create_timeout_s, write=create_timeout_s, pool=base.pool
        )
        self._t = Transport(
            base_url=base_url, api_key=api_key, timeout=base, max_retries=max_retries,
            backoff_base_s=backoff_base_s, backoff_cap_s=backoff_cap_s, retry_after_cap_s=retry_after_cap_s,
            transport=transport, rng=self.rng, sleep=sleep,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> UponAIClient:
        kwargs: dict[str, Any] = {
            "base_url": settings.base_url,
            "api_key": settings.effective_api_key,
            "dialect": settings.dialect,
            "workspace_id": settings.workspace_id,
            "account_sid": settings.account_sid,
            "timeout": httpx.Timeout(
                connect=settings.connect_timeout_s, read=settings.read_timeout_s,
                write=settings.read_timeout_s, pool=settings.connect_timeout_s,
            ),
            "create_timeout_s": settings.create_timeout_s,
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    def __repr__(self) -> str:  # never the key
        return f"UponAIClient(base_url={self._t.base_url!r}, dialect={self.dialect!r})"

    @property
    def base_url(self) -> str:
        return self._t.base_url

    async def __aenter__(self) -> UponAIClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._t.aclose()

    # --- settings the native dialect needs ---------------------------------------------------------

    def _workspace(self) -> int:
        if self.workspace_id is None:
            raise ConfigurationError(
                "the uponai dialect needs a workspace id: set UPONAI_WORKSPACE_ID (GET /api/workspaces lists yours)"
            )
        return self.workspace_id

    def _account(self) -> str:
        if not self.account_sid:
            raise ConfigurationError(
                "the uponai dialect needs the account SID for phone numbers: set UPONAI_ACCOUNT_SID"
            )
        return self.account_sid

    # --- calls -------------------------------------------------------------------------------------

    async def create_call(
        self, request: CallRequest, *, attempt_id: str, retry_rate_limited: bool = True,
        before_send: Callable[[], Awaitable[None]] | None = None, agent: tuple[str, int | None] | None = None,
    ) -> Call:
        """Place one call, tagged with `attempt_id`. Never retried once it may have executed.

        `retry_rate_limited=False` raises RateLimited on the first 429 (the dialer paces itself).
        `before_send` is awaited right before the create request leaves, after any lookups, so a
        pacer slot taken there times the request itself. `agent`: the (agent_id, version) the caller
        already resolved for the native dialect (the create is then exactly one request); without it the
        client looks the from-number's agent up itself.
        """
        if self.dialect == "retell":
            method, path, body = "POST", "/v2/create-phone-call", d.retell_create_body(request, attempt_id)
        else:
            workspace = self._workspace()
            agent_id, version = agent if agent is not None else await self._native_agent_for(request)
            method, path = "POST", "/api/v1/calls/initiate"
            body = d.native_create_body(request, attempt_id, workspace_id=workspace, agent_id=agent_id,
                                        agent_version=version)
        if before_send is not None:
            await before_send()
        try:
            data = await self._t.request(method, path, json=body, idempotent=False, http_timeout=self.create_timeout,
                                         retry_rate_limited=retry_rate_limited)
        except Ambiguous as exc:
            raise OutcomeUnknown(
                f"the platform may or may not have placed the call ({exc.cause}); reconcile before dialing again",
                exc.status, attempt_id=attempt_id, request=request, sent_at_ms=exc.sent_at_ms, cause=exc.cause,
            ) from exc
        try:
            return Call.model_validate(data) if self.dialect == "retell" else d.native_create_response(data)
        except SHAPE_ERRORS as exc:  # accepted, but we cannot read which call: as unknown as a timeout
            cause = f"unreadable create response: {exc}"[:300]
            raise OutcomeUnknown(
                f"the platform accepted the call but its answer could not be read; reconcile ({cause})",
                None, attempt_id=attempt_id, request=request, sent_at_ms=now_ms(), cause=cause,
            ) from exc

    async def _native_agent_for(self, request: CallRequest) -> tuple[str, int | None]:
        """agentId and overrideAgentVersion: the override, else the from-number's outbound agent."""
        if request.override_agent_id:
            return request.override_agent_id, request.override_agent_version
        try:
            number = await self.get_phone_number(request.from_number)
        except NotFound as exc:
            raise NotFound(f"from_number {request.from_number} is not a number of this account", exc.status) from exc
        if not number.outbound_agents:
            raise InvalidRequest(
                f"{request.from_number} has no outbound agent: bind one (bind_agents with outbound_agents) "
                "or pass override_agent_id"
            )
        chosen = d.pick_weighted(number.outbound_agents, self.rng)
        version = request.override_agent_version
        return chosen.agent_id, version if version is not None else chosen.agent_version

    @_shaped
    async def get_call(self, call_id: str) -> Call:
        if self.dialect == "retell":
            return Call.model_validate(await self._t.request("GET", f"/v2/get-call/{_seg(call_id)}"))
        data = await self._t.request("GET", f"/api/v1/calls/{_seg(call_id)}")
        return d.native_call(d.unwrap(data, "call"))

    @_shaped
    async def list_calls(self, filter: CallFilter) -> CallPage:
        """One page, newest first where the platform sorts. Native: filters it cannot apply
        (from/to number, metadata) are applied to the page, so a page may hold fewer calls."""
        if self.dialect == "retell":
            body: dict[str, Any] = {"filter_criteria": d.retell_list_filter(filter), "limit": filter.limit,
                                    "sort_order": "descending"}
            if filter.page_token:
                body["pagination_key"] = filter.page_token
            data = await self._t.request("POST", "/v3/list-calls", json=body)
            calls = [Call.model_validate(c) for c in d.items_of(data, "items")]
            more = isinstance(data, dict) and data.get("has_more") and data.get("pagination_key")
            return CallPage(calls=calls, next_page_token=str(data["pagination_key"]) if more else None)
        page = _page_number(filter.page_token)
        params = d.native_list_params(filter, workspace_id=self.workspace_id, page=page)
        data = await self._t.request("GET", "/api/v1/calls", params=params)
        records = d.items_of(data, "calls", "items")
        calls = [c for c in (d.native_call(r) for r in records) if d.matches_client_side(c, filter)]
        more = d.native_has_more(data, page, filter.limit, len(records))
        return CallPage(calls=calls, next_page_token=str(page + 1) if more else None)

    @_shaped
    async def find_call_by_attempt(
        self, attempt_id: str, *, since_ms: int, to_number: str | None = None,
    ) -> Call | None:
        """The call a (possibly failed) create with this attempt_id placed, or None if there is none.

        Matches on the attempt id alone: `to_number` is accepted but not filtered on, since a number
        the platform normalised differently would hide the call and invite a second dial.
        """
        del to_number
        wanted = {d.ATTEMPT_KEY: attempt_id}
        if self.dialect == "retell":
            # The server-side metadata filter is exact; no time filter, a registered call may lack start_timestamp.
            page = await self.list_calls(CallFilter(metadata=wanted, limit=10))
            return next((c for c in page.calls if (c.metadata or {}).get(d.ATTEMPT_KEY) == attempt_id), None)
        flt = CallFilter(start_after_ms=max(0, since_ms - RECONCILE_MARGIN_MS), metadata=wanted, limit=100)
        for _ in range(RECONCILE_MAX_PAGES):
            page = await self.list_calls(flt)
            if page.calls:
                return page.calls[0]
            if not page.next_page_token:
                return None
            flt = flt.model_copy(update={"page_token": page.next_page_token})
        # Saying "no call" after a truncated scan could cause a double dial: refuse to answer instead.
        raise ServerError(f"reconciliation gave up after {RECONCILE_MAX_PAGES} pages of calls; try again later")

    # --- numbers -----------------------------------------------------------------------------------

    @_shaped
    async def list_phone_numbers(self) -> list[PhoneNumber]:
        if self.dialect == "retell":
            return [d.retell_number(r) for r in await self._retell_all("GET", "/v2/list-phone-numbers")]
        data = await self._t.request("GET", f"/api/numbers/{_seg(self._account())}",
                                     params={"workspaceId": self._workspace()})
        return [d.native_number(r) for r in d.items_of(data, "numbers", "items")]

    @_shaped
    async def get_phone_number(self, number: str) -> PhoneNumber:
        if self.dialect == "retell":
            return d.retell_number(await self._t.request("GET", f"/get-phone-number/{_seg(number)}"))
        # No single-number read in the native API: list and pick.
        for candidate in await self.list_phone_numbers():
            if candidate.phone_number == number:
                return candidate
        raise NotFound(f"phone number {number} not found in this account")

    @_shaped
    async def bind_agents(self, number: str, update: BindingUpdate) -> PhoneNumber:
        """Set inbound/outbound agents; None leaves a direction, [] unsets it. Returns the number after."""
        if self.dialect == "retell":
            data = await self._t.request("PATCH", f"/update-phone-number/{_seg(number)}", json=d.binding_body(update))
            return d.retell_number(data)
        body = d.native_binding_body(update, account_sid=self._account(), workspace_id=self._workspace())
        # Setting bindings is idempotent (same body, same state), so it is retried like a read.
        data = await self._t.request("PUT", f"/api/numbers/{_seg(number)}/agent", json=body)
        for record in d.items_of(data, "numbers"):
            if (record.get("number") or record.get("phone_number")) == number:
                return d.native_number(record)
        return await self.get_phone_number(number)

    # --- agents, concurrency -----------------------------------------------------------------------

    @_shaped
    async def list_agents(self) -> list[Agent]:
        if self.dialect == "retell":
            return d.agents_from_records(await self._retell_all("POST", "/v2/list-agents"))
        records: list[dict[str, Any]] = []
        params: dict[str, Any] = {"workspaceId": self._workspace(), "limit": NATIVE_AGENT_LIMIT}
        for _ in range(100):  # paginationKey paging, if the platform pages at all
            data = await self._t.request("GET", "/api/agents", params=params)
            records += d.items_of(data, "agents", "items")
            key = isinstance(data, dict) and (data.get("paginationKey") or data.get("pagination_key"))
            if not (key and isinstance(data, dict) and (data.get("has_more") or data.get("hasMore"))):
                break
            params = {**params, "paginationKey": key}
        return d.agents_from_records(records)

    @_shaped
    async def get_agent(self, agent_id: str, version: int | None = None) -> Agent:
        if self.dialect == "retell":
            data = await self._t.request("GET", f"/get-agent/{_seg(agent_id)}", params={"version": version})
        else:
            data = d.unwrap(await self._t.request(
                "GET", f"/api/agents/{_seg(agent_id)}", params={"workspaceId": self._workspace(), "version": version}
            ), "agent")
        return Agent.model_validate(data)

    @_shaped
    async def get_concurrency(self) -> Concurrency:
        if self.dialect == "retell":
            return d.retell_concurrency(await self._t.request("GET", "/get-concurrency"))
        data = await self._t.request("GET", "/api/concurrency", params={"workspaceId": self._workspace()})
        return d.native_concurrency(data)

    async def _retell_all(self, method: str, path: str) -> list[dict[str, Any]]:
        """Every item of a Retell `{items, has_more, pagination_key}` listing (or a bare legacy array)."""
        items: list[dict[str, Any]] = []
        key: str | None = None
        seen: set[str] = set()
        while True:
            params = {"limit": PAGE_SIZE, "pagination_key": key}
            data = await self._t.request(method, path, params=params, json={} if method == "POST" else None)
            items += d.items_of(data, "items")
            key = data.get("pagination_key") if isinstance(data, dict) and data.get("has_more") else None
            if not key or key in seen:  # a repeated key would loop forever
                return items
            seen.add(key)


    # --- simulation tests (no phone call; api/testing.py; native paths beyond three are guesses) ------------

    @_shaped
    async def agent_response_engine(self, agent_id: str, version: int | None = None) -> t.ResponseEngine:
        """The response engine (LLM or conversation flow, at the agent's version) the test API is keyed by."""
        if self.dialect == "retell":
            data = await self._t.request("GET", f"/get-agent/{_seg(agent_id)}", params={"version": version})
        else:
            data = d.unwrap(await self._t.request("GET", f"/api/agents/{_seg(agent_id)}",
                                                  params={"workspaceId": self._workspace(), "version": version}),
                            "agent")
        raw = t.snake_keys(data.get("response_engine") or data.get("responseEngine") or {})
        engine = t.ResponseEngine.model_validate(raw)
        if engine.version is None and isinstance(data.get("version"), int):
            engine.version = data["version"]
        if not (engine.llm_id or engine.conversation_flow_id):
            raise ServerError(f"agent {agent_id} has no LLM or conversation flow the test API can use")
        return engine

    @_shaped
    async def list_test_cases(self, engine: t.ResponseEngine) -> list[t.TestCase]:
        if self.dialect == "retell":
            data = await self._t.request("GET", "/list-test-case-definitions", params=engine.query())
            return [t.TestCase.model_validate(x) for x in d.items_of(data, "items")]
        data = await self._t.request("GET", "/api/test-case-definitions",
                                     params=t.native_query(engine, self._workspace()))
        return [t.TestCase.model_validate(x) for x in t.items(data, "testCaseDefinitions", "items")]

    @_shaped
    async def get_test_case(self, test_case_id: str) -> t.TestCase:
        if self.dialect == "retell":
            return t.TestCase.model_validate(
                await self._t.request("GET", f"/get-test-case-definition/{_seg(test_case_id)}"))
        data = await self._t.request("GET", f"/api/test-case-definitions/{_seg(test_case_id)}",
                                     params={"workspaceId": self._workspace()})
        return t.TestCase.model_validate(t.unwrap_native(data, "testCaseDefinition"))

    @_shaped
    async def create_test_case(self, case: t.TestCaseInput) -> t.TestCase:
        """Not retried once sent (a retry could create a duplicate definition)."""
        if self.dialect == "retell":
            data = await self._t.request("POST", "/create-test-case-definition", json=case.body(), idempotent=False)
            return t.TestCase.model_validate(data)
        data = await self._t.request("POST", "/api/test-case-definitions",
                                     json=t.native_body(case.body(), self._workspace()), idempotent=False)
        return t.TestCase.model_validate(t.unwrap_native(data, "testCaseDefinition"))

    @_shaped
    async def update_test_case(self, test_case_id: str, case: t.TestCaseInput) -> t.TestCase:
        if self.dialect == "retell":
            data = await self._t.request("PUT", f"/update-test-case-definition/{_seg(test_case_id)}", json=case.body())
            return t.TestCase.model_validate(data)
        data = await self._t.request("PUT", f"/api/test-case-definitions/{_seg(test_case_id)}",
                                     json=t.native_body(case.body(), self._workspace()))
        return t.TestCase.model_validate(t.unwrap_native(data, "testCaseDefinition"))

    async def delete_test_case(self, test_case_id: str) -> None:
        if self.dialect == "retell":
            await self._t.request("DELETE", f"/delete-test-case-definition/{_seg(test_case_id)}")
        else:
            await self._t.request("DELETE", f"/api/test-case-definitions/{_seg(test_case_id)}",
                                  params={"workspaceId": self._workspace()})

    @_shaped
    async def create_test_batch(self, test_case_ids: list[str], engine: t.ResponseEngine) -> t.TestBatch:
        """Start the simulated runs of these test cases against `engine`. Not retried once sent."""
        body = {"test_case_definition_ids": test_case_ids, "response_engine": engine.body()}
        if self.dialect == "retell":
            data = await self._t.request("POST", "/create-batch-test", json=body, idempotent=False)
            return t.TestBatch.model_validate(data)
        data = await self._t.request("POST", "/api/test-runs/batches", json=t.native_body(body, self._workspace()),
                                     idempotent=False)
        return t.TestBatch.model_validate(t.unwrap_native(data, "batch", "testCaseBatchJob"))

    @_shaped
    async def get_test_batch(self, batch_id: str) -> t.TestBatch:
        if self.dialect == "retell":
            return t.TestBatch.model_validate(await self._t.request("GET", f"/get-batch-test/{_seg(batch_id)}"))
        data = await self._t.request("GET", f"/api/test-runs/batches/{_seg(batch_id)}",
                                     params={"workspaceId": self._workspace()})
        return t.TestBatch.model_validate(t.unwrap_native(data, "batch", "testCaseBatchJob"))

    @_shaped
    async def list_test_batches(self, engine: t.ResponseEngine) -> list[t.TestBatch]:
        if self.dialect == "retell":
            data = await self._t.request("GET", "/list-batch-tests", params=engine.query())
            return [t.TestBatch.model_validate(x) for x in d.items_of(data, "items")]
        data = await self._t.request("GET", "/api/test-runs/batches", params=t.native_query(engine, self._workspace()))
        return [t.TestBatch.model_validate(x) for x in t.items(data, "batches", "items")]

    @_shaped
    async def list_test_runs(self, batch_id: str) -> list[t.TestRun]:
        if self.dialect == "retell":
            data = await self._t.request("GET", f"/list-test-runs/{_seg(batch_id)}")
            return [t.TestRun.model_validate(x) for x in d.items_of(data, "items")]
        data = await self._t.request("GET", f"/api/test-runs/batches/{_seg(batch_id)}/runs",
                                     params={"workspaceId": self._workspace()})
        return [t.TestRun.model_validate(x) for x in t.items(data, "testRuns", "runs", "items")]

    @_shaped
    async def get_test_run(self, run_id: str) -> t.TestRun:
        if self.dialect == "retell":
            return t.TestRun.model_validate(await self._t.request("GET", f"/get-test-run/{_seg(run_id)}"))
        data = await self._t.request("GET", f"/api/test-runs/{_seg(run_id)}", params={"workspaceId": self._workspace()})
        return t.TestRun.model_validate(t.unwrap_native(data, "testRun", "testCaseJob"))

def _page_number(token: str | None) -> int:
    if not token:
        return 1
    try:
        page = int(token)
    except ValueError:
        raise InvalidRequest(f"page_token {token!r} is not one this server issued") from None
    if page < 1:
        raise InvalidRequest(f"page_token {token!r} is not one this server issued")
    return page
