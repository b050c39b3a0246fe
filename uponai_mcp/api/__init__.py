"""Async client for the UponAI platform API (native `uponai` dialect or Retell-compatible `retell`).

Knows the wire and nothing about MCP; returns the canonical models of `uponai_mcp.models`.
"""

from uponai_mcp import lazy

_ERRORS = ("ApiError", "ConfigurationError", "ConnectError", "InvalidRequest", "NotFound", "OutcomeUnknown",
           "RateLimited", "ServerError", "Unauthorized")
__getattr__ = lazy.exports(__name__, {"UponAIClient": ".client", "ATTEMPT_KEY": ".dialects",
                                      **{name: ".errors" for name in _ERRORS}})

__all__ = ["ATTEMPT_KEY", "UponAIClient", *_ERRORS]
