"""Outreach that respects people (issue 12): the do-not-call list, opt-outs honoured automatically, the daily
spend cap, scheduled calls and retries by outcome. Nothing here knows MCP: `tools/outreach.py` adapts it."""

from uponai_mcp import lazy

__getattr__ = lazy.exports(__name__, {"OutreachService": ".service", "DNC_URI": ".views", "SCHEDULED_URI": ".views",
                                      "SPEND_URI": ".views"})

__all__ = ["DNC_URI", "SCHEDULED_URI", "SPEND_URI", "OutreachService"]
