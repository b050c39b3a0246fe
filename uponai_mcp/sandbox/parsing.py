"""Reading request bodies and query strings strictly: bad input becomes a 400 that names the field."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from .errors import ApiError

MAX_BODY_BYTES = 1024 * 1024


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request, *, required: bool = True) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        if required:
            raise ApiError(400, "Invalid request format: the request body must be a JSON object.")
        return {}
    try:
        data = json.loads(body, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"Invalid request format: body is not valid JSON ({exc.msg} at position {exc.pos}).") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, f"Invalid request format: body is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"Invalid request format: the body must be a JSON object, not {type(data).__name__}.")
    return data


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def opt_str(body: dict[str, Any], key: str, *, label: str | None = None, max_len: int = 4096) -> str | None:
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or not v or len(v) > max_len:
        raise ApiError(400, f"{label or key} must be a non-empty string of at most {max_len} characters.")
    return v


def req_str(body: dict[str, Any], key: str, *, label: str | None = None, max_len: int = 4096) -> str:
    v = opt_str(body, key, label=label, max_len=max_len)
    if v is None:
        raise ApiError(400, f"{label or key} is required.")
    return v


def opt_int(body: dict[str, Any], key: str, *, label: str | None = None, lo: int | None = None,
            hi: int | None = None) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if not is_int(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        bounds = f" between {lo} and {hi}" if lo is not None and hi is not None else (
            f" >= {lo}" if lo is not None else "")
        raise ApiError(400, f"{label or key} must be an integer{bounds}.")
    return v


def opt_bool(body: dict[str, Any], key: str, *, label: str | None = None) -> bool | None:
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise ApiError(400, f"{label or key} must be a boolean.")
    return v


def opt_obj(body: dict[str, Any], key: str, *, label: str | None = None) -> dict[str, Any] | None:
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ApiError(400, f"{label or key} must be a JSON object.")
    return v


def query_int(request: Request, key: str, default: int | None, lo: int, hi: int | None = None) -> int | None:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {key} must be an integer, got {raw[:40]!r}.") from None
    if v < lo or (hi is not None and v > hi):
        raise ApiError(400, f"query parameter {key} must be between {lo} and {hi}." if hi is not None
                       else f"query parameter {key} must be >= {lo}.")
    return v
