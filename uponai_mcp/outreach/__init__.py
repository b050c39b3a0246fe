"""Outreach that respects people (issue 12): the do-not-call list, opt-outs honoured automatically, the daily
spend cap, scheduled calls and retries by outcome. Nothing here knows MCP: `tools/outreach.py` adapts it."""

from .service import OutreachService
from .views import DNC_URI, SCHEDULED_URI, SPEND_URI

__all__ = ["DNC_URI", "SCHEDULED_URI", "SPEND_URI", "OutreachService"]
