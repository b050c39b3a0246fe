"""Async client for the UponAI platform API (native `uponai` dialect or Retell-compatible `retell`).

Knows the wire and nothing about MCP; returns the canonical models of `uponai_mcp.models`.
"""

from .client import UponAIClient
from .dialects import ATTEMPT_KEY
from .errors import (
    ApiError,
    ConfigurationError,
    ConnectError,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    Unauthorized,
)

__all__ = [
    "ATTEMPT_KEY",
    "ApiError",
    "ConfigurationError",
    "ConnectError",
    "InvalidRequest",
    "NotFound",
    "OutcomeUnknown",
    "RateLimited",
    "ServerError",
    "Unauthorized",
    "UponAIClient",
]
