"""Retry policies (issue 12): which outcomes dial again, how often, how long after. A policy travels in the
request's metadata, so every attempt knows it after a restart. Kept apart from the service so the tool schemas
can use it without importing the dialer."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["busy", "no_answer", "voicemail", "failed"]


class RetryPolicy(BaseModel):
    """When a call that did not reach the person is dialled again."""

    model_config = ConfigDict(extra="forbid")
    on: list[Outcome] = Field(min_length=1)
    max_attempts: int = Field(3, ge=2, le=10, description="Calls in all, the first included.")
    delay_minutes: float = Field(60, ge=0, le=10_080)


RETRY_KEY = "uponai_retry"  # the request's metadata carries its retry policy (so every attempt knows it)


def with_retry(metadata: dict[str, Any] | None, policy: RetryPolicy | None) -> dict[str, Any] | None:
    if policy is None:
        return metadata
    return {**(metadata or {}), RETRY_KEY: policy.model_dump(mode="json")}


def policy_of(request_json: str) -> RetryPolicy | None:
    try:
        raw = (json.loads(request_json).get("metadata") or {}).get(RETRY_KEY)
        return None if raw is None else RetryPolicy.model_validate(raw)
    except (ValueError, AttributeError):
        return None


