"""Routes of the platform's simulation-test API in both dialects (docs/wire.md "Simulation tests").

Retell's paths as documented; the native ones beyond `POST/GET /api/test-case-definitions` and
`GET /api/test-runs/batches/{testCaseBatchJobId}` are guesses, as are the native envelopes (camelCase, like
the rest of the native API, with `workspaceId`)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .engine import Engine
from .errors import ApiError
from .parsing import read_json

Wrap = Callable[[Callable[[Request], Awaitable[Response]]], Callable[[Request], Awaitable[Response]]]
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_KEEP = frozenset({"dynamic_variables", "dynamicVariables"})  # the user's own keys are never renamed


def _camel(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            head, *rest = k.split("_")
            out[head + "".join(p[:1].upper() + p[1:] for p in rest)] = v if k in _KEEP else _camel(v)
        return out
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def _snake(value: Any) -> Any:
    if isinstance(value, dict):
        return {_CAMEL.sub("_", k).lower(): (v if k in _KEEP else _snake(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake(v) for v in value]
    return value


def _query(request: Request, *, native: bool) -> dict[str, Any]:
    q = dict(request.query_params)
    return _snake(q) if native else q


def retell_routes(engine: Engine, wrap: Wrap) -> list[Route]:
    @wrap
    async def create_case(request: Request) -> Response:
        return JSONResponse(engine.testing.create_case(await read_json(request)), status_code=201)

    @wrap
    async def list_cases(request: Request) -> Response:
        return JSONResponse(engine.testing.list_cases(_query(request, native=False)))

    @wrap
    async def get_case(request: Request) -> Response:
        return JSONResponse(engine.testing.case_or_404(request.path_params["id"]))

    @wrap
    async def update_case(request: Request) -> Response:
        return JSONResponse(engine.testing.update_case(request.path_params["id"], await read_json(request)))

    @wrap
    async def delete_case(request: Request) -> Response:
        engine.testing.delete_case(request.path_params["id"])
        return Response(status_code=204)

    @wrap
    async def create_batch(request: Request) -> Response:
        return JSONResponse(engine.testing.create_batch(await read_json(request)), status_code=201)

    @wrap
    async def get_batch(request: Request) -> Response:
        return JSONResponse(engine.testing.batch_or_404(request.path_params["id"]))

    @wrap
    async def list_batches(request: Request) -> Response:
        return JSONResponse(engine.testing.list_batches(_query(request, native=False)))

    @wrap
    async def list_runs(request: Request) -> Response:
        return JSONResponse(engine.testing.runs_of(request.path_params["id"]))

    @wrap
    async def get_run(request: Request) -> Response:
        return JSONResponse(engine.testing.run_or_404(request.path_params["id"]))

    return [
        Route("/create-test-case-definition", create_case, methods=["POST"]),
        Route("/list-test-case-definitions", list_cases, methods=["GET"]),
        Route("/get-test-case-definition/{id}", get_case, methods=["GET"]),
        Route("/update-test-case-definition/{id}", update_case, methods=["PUT"]),
        Route("/delete-test-case-definition/{id}", delete_case, methods=["DELETE"]),
        Route("/create-batch-test", create_batch, methods=["POST"]),
        Route("/get-batch-test/{id}", get_batch, methods=["GET"]),
        Route("/list-batch-tests", list_batches, methods=["GET"]),
        Route("/list-test-runs/{id}", list_runs, methods=["GET"]),
        Route("/get-test-run/{id}", get_run, methods=["GET"]),
    ]


def native_routes(engine: Engine, wrap: Wrap) -> list[Route]:
    def workspace(raw: Any) -> None:
        if raw is None or raw == "":
            raise ApiError(400, "workspaceId is required (GET /api/workspaces lists yours).")
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ApiError(400, "workspaceId must be an integer.") from None
        if isinstance(raw, bool) or value != engine.workspace_id:
            raise ApiError(403, f"Workspace {raw} is not accessible with this API key.")

    async def body_of(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        workspace(body.pop("workspaceId", None))
        return _snake(body)

    def query_of(request: Request) -> dict[str, Any]:
        q = _query(request, native=True)
        workspace(q.pop("workspace_id", None))
        return q

    def ok(key: str, value: Any, status: int = 200) -> Response:
        return JSONResponse({"success": True, key: _camel(value)}, status_code=status)

    @wrap
    async def cases(request: Request) -> Response:
        if request.method == "POST":
            return ok("testCaseDefinition", engine.testing.create_case(await body_of(request)), 201)
        return ok("testCaseDefinitions", engine.testing.list_cases(query_of(request)))

    @wrap
    async def one_case(request: Request) -> Response:
        case_id = request.path_params["id"]
        if request.method == "PUT":
            return ok("testCaseDefinition", engine.testing.update_case(case_id, await body_of(request)))
        query_of(request)
        if request.method == "DELETE":
            engine.testing.delete_case(case_id)
            return JSONResponse({"success": True})
        return ok("testCaseDefinition", engine.testing.case_or_404(case_id))

    @wrap
    async def batches(request: Request) -> Response:
        if request.method == "POST":
            return ok("batch", engine.testing.create_batch(await body_of(request)), 201)
        return ok("batches", engine.testing.list_batches(query_of(request)))

    @wrap
    async def one_batch(request: Request) -> Response:
        query_of(request)
        return ok("batch", engine.testing.batch_or_404(request.path_params["id"]))

    @wrap
    async def batch_runs(request: Request) -> Response:
        query_of(request)
        return ok("testRuns", engine.testing.runs_of(request.path_params["id"]))

    @wrap
    async def one_run(request: Request) -> Response:
        query_of(request)
        return ok("testRun", engine.testing.run_or_404(request.path_params["id"]))

    return [
        Route("/api/test-case-definitions", cases, methods=["GET", "POST"]),
        Route("/api/test-case-definitions/{id}", one_case, methods=["GET", "PUT", "DELETE"]),
        Route("/api/test-runs/batches", batches, methods=["GET", "POST"]),
        Route("/api/test-runs/batches/{id}", one_batch, methods=["GET"]),
        Route("/api/test-runs/batches/{id}/runs", batch_runs, methods=["GET"]),
        Route("/api/test-runs/{id}", one_run, methods=["GET"]),
    ]
