"""Canonical forms of a call request: the hash that binds tokens and idempotency keys to parameters."""

from __future__ import annotations

import hashlib
import json

from uponai_mcp.models import CallRequest


def canonical_json(request: CallRequest) -> str:
    return json.dumps(request.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":"))


def params_hash(request: CallRequest) -> str:
    return hashlib.sha256(canonical_json(request).encode()).hexdigest()


def from_json(text: str) -> CallRequest:
    return CallRequest.model_validate_json(text)
