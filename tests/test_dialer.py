"""The dialer against the real sandbox, without MCP: one pass through the pipeline."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.server_harness import TELNYX, TWILIO, settings_for
from uponai_mcp.models import CallRequest
from uponai_mcp.sandbox import SandboxConfig, running_sandbox
from uponai_mcp.services import build_services

pytestmark = pytest.mark.anyio
POLLER_ROUTES = {"get_call", "list_calls"}


async def test_a_warm_create_is_exactly_one_platform_request(tmp_path: Path) -> None:
    async with running_sandbox(SandboxConfig(speed=100)) as sb, \
            httpx.AsyncClient(base_url=sb.url, headers={"Authorization": "Bearer sk_sandbox"}) as http, \
            build_services(settings_for(sb.url, tmp_path)) as hub:
        dialer = hub.require().dialer

        async def requests() -> int:
            """Platform requests, less the reads the event poller makes on its own schedule."""
            by_route = (await http.get("/_sandbox/stats")).json()["requests_by_route"]
            return sum(n for route, n in by_route.items() if route not in POLLER_ROUTES)

        # Cold: the number list and the agent list are fetched once, then cached.
        await dialer.place(CallRequest(from_number=TWILIO, to_number="+14155552671", override_agent_id="agent_sales"))
        cases = [
            CallRequest(from_number=TELNYX, to_number="+14155552672"),
            CallRequest(from_number=TELNYX, to_number="+14155552673", override_agent_id="agent_support"),
            CallRequest(from_number=TWILIO, to_number="+14155552674", override_agent_id="agent_sales",
                        override_agent_version=3),
        ]
        for request in cases:
            before = await requests()
            placement = await dialer.place(request)
            assert await requests() - before == 1, request
            # the agent the decision chose is the one the platform placed the call with
            assert placement.preflight is not None and placement.call.agent_id == placement.preflight.agent_id


async def test_a_refused_create_sends_nothing(tmp_path: Path) -> None:
    async with running_sandbox(SandboxConfig(speed=100)) as sb, \
            httpx.AsyncClient(base_url=sb.url, headers={"Authorization": "Bearer sk_sandbox"}) as http, \
            build_services(settings_for(sb.url, tmp_path)) as hub:
        dialer = hub.require().dialer
        await dialer.directory.numbers()  # warm
        before = (await http.get("/_sandbox/stats")).json()["requests"]
        with pytest.raises(Exception, match="emergency_number"):
            await dialer.place(CallRequest(from_number=TWILIO, to_number="911"))
        assert (await http.get("/_sandbox/stats")).json()["requests"] == before
