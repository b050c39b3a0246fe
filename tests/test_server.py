"""The MCP server through a real `mcp.Client`, against the real sandbox over loopback HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest
from mcp.types import ElicitResult

from tests.server_harness import CUSTOM, TELNYX, TWILIO, WallClock, harness, sandbox_process

pytestmark = pytest.mark.anyio

CALLEE = "+14155552671"  # US, San Francisco; the sandbox answers it
MUTATING = {"create_phone_call", "confirm_call", "bind_agent", "set_cps", "create_batch_call", "confirm_batch",
            "cancel_batch"}
ALL_TOOLS = {"create_phone_call", "confirm_call", "bind_agent", "set_cps", "get_call", "list_calls", "list_phone_numbers", "list_agents", "get_cps", "preflight_call",
                         "wait_for_call"}


async def test_tools_have_titles_annotations_and_output_schemas(tmp_path):
    async with harness(tmp_path) as h:
        tools = {t.name: t for t in (await h.client.list_tools()).tools}
    assert ALL_TOOLS <= set(tools)
    for tool in tools.values():
        assert tool.title and tool.description, tool.name
        assert tool.output_schema and tool.output_schema.get("type") == "object", tool.name
        ann = tool.annotations
        assert ann is not None and ann.read_only_hint is not None and ann.open_world_hint is not None, tool.name
    dial = tools["create_phone_call"].annotations
    assert (dial.read_only_hint, dial.destructive_hint, dial.idempotent_hint, dial.open_world_hint) == (
        False, True, False, True)
    for name in ("bind_agent", "set_cps"):
        assert tools[name].annotations.read_only_hint is False and tools[name].annotations.idempotent_hint is True
    for name in (ALL_TOOLS - MUTATING) | {"wait_for_call"}:
        assert tools[name].annotations.read_only_hint is True and tools[name].annotations.idempotent_hint is True
    params = tools["create_phone_call"].input_schema["properties"]
    documented = {"from_number", "to_number", "override_agent_id", "override_agent_version", "agent_override",
                  "metadata", "retell_llm_dynamic_variables", "custom_sip_headers", "ignore_e164_validation"}
    assert documented <= set(params) and "decision" not in params
    assert all(params[p].get("description") for p in documented)


async def test_read_only_mode_lists_no_mutating_tools(tmp_path):
    async with harness(tmp_path, read_only=True) as h:
        names = {t.name for t in (await h.client.list_tools()).tools}
        assert ALL_TOOLS - MUTATING <= names and not names & MUTATING
        assert (await h.call("create_phone_call", from_number=TWILIO, to_number=CALLEE)).is_error
        assert await h.sandbox_calls() == []


@pytest.mark.parametrize("dialect", ["uponai", "retell"])
async def test_place_call_and_follow_it_to_the_end(tmp_path, dialect):
    async with harness(tmp_path, dialect=dialect) as h:
        placed = await h.ok("create_phone_call", from_number=TWILIO, to_number=CALLEE,
                            retell_llm_dynamic_variables={"customer_name": "Ada"}, metadata={"ticket": "42"})
        assert placed["call_id"] and placed["resource_uri"] == f"uponai://calls/{placed['call_id']}"
        assert placed["attempt_id"].startswith("att_") and "US" in placed["destination"]
        waited = await h.ok("wait_for_call", call_id=placed["call_id"], until="ended", timeout_s=20)
        assert waited["reached"] is True
        call = await h.ok("get_call", call_id=placed["call_id"])
        assert call["call_status"] == "ended"
        assert call["from_number"] == TWILIO and call["to_number"] == CALLEE and call["duration_ms"] > 0
        if dialect == "retell":  # the native get-call carries no transcript; events bring it (issue 4)
            assert "Ada" in call["untrusted"]["transcript"] and call["recording_url"]
            assert call["untrusted"]["tool_calls"] and call["latency"]["e2e_p50_ms"] > 0
        listed = await h.ok("list_calls", to_number=CALLEE)
        assert [c["call_id"] for c in listed["calls"]] == [placed["call_id"]]
        sandbox_call = (await h.sandbox_calls())[0]
        assert sandbox_call["metadata"]["ticket"] == "42"
        assert sandbox_call["metadata"]["uponai_attempt_id"] == placed["attempt_id"]


async def test_get_call_of_unknown_id_is_not_found(tmp_path):
    async with harness(tmp_path) as h:
        assert await h.refused("get_call", call_id="call_doesnotexist") == "not_found"


@pytest.mark.parametrize(("to_number", "code"), [
    ("+1 415 555 2671", "invalid_number"),
    ("14155552671", "invalid_number"),
    ("+1415555267１", "invalid_number"),  # a full-width digit
    ("+14155552671\u200b", "invalid_number"),
    ("tel:+14155552671", "invalid_number"),
    ("+18765550123", "destination_not_allowed"),  # +1 876 is Jamaica, not the US
    ("+19005550123", "number_type_blocked"),  # premium rate
    ("+447024000000", "number_type_blocked"),  # UK personal number
    ("+80012345678", "number_type_blocked"),  # non-geographic 001
    (TELNYX, "destination_not_allowed"),  # our own number
])
async def test_destination_refusals(tmp_path, to_number, code):
    async with harness(tmp_path) as h:
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=to_number) == code
        verdict = await h.ok("preflight_call", from_number=TWILIO, to_number=to_number)
        assert verdict["allowed"] is False and verdict["code"] == code
        assert await h.sandbox_calls() == []


async def test_emergency_numbers_are_refused(tmp_path):
    async with harness(tmp_path) as h:
        for number in ("+1911", "+112", "+44999"):
            code = await h.refused("create_phone_call", from_number=TWILIO, to_number=number)
            assert code == "emergency_number"
        assert await h.sandbox_calls() == []


async def test_from_number_rules(tmp_path):
    async with harness(tmp_path) as h:
        assert await h.refused("create_phone_call", from_number="+14155550199",
                               to_number=CALLEE) == "from_number_not_usable"
        # the imported number has no outbound agent: usable only with override_agent_id
        assert await h.refused("create_phone_call", from_number=CUSTOM, to_number=CALLEE) == \
            "from_number_not_usable"
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=CALLEE,
                               ignore_e164_validation=True) == "from_number_not_usable"
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=CALLEE,
                               override_agent_id="agent_nope") == "not_found"
        placed = await h.ok("create_phone_call", from_number=CUSTOM, to_number=CALLEE,
                            override_agent_id="agent_support")
        assert placed["agent_id"] == "agent_support"


async def test_imported_number_follows_operator_allowlist(tmp_path):
    async with harness(tmp_path, imported_countries=("US", "CA", "JM")) as h:
        jamaica = "+18765550123"
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=jamaica) == \
            "destination_not_allowed"
        await h.ok("create_phone_call", from_number=CUSTOM, to_number=jamaica, override_agent_id="agent_support")


async def test_operator_narrows_countries(tmp_path):
    async with harness(tmp_path, allowed_countries=("GB",)) as h:
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=CALLEE) == \
            "destination_not_allowed"


async def test_calling_window_in_the_callees_time_zone(tmp_path):
    night_in_sf = datetime(2026, 11, 21, 11, 0, tzinfo=UTC)  # 03:00 in Los Angeles
    async with harness(tmp_path, wall=WallClock(night_in_sf), calling_window="08:00-21:00") as h:
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=CALLEE) == \
            "outside_calling_window"
        h.wall.now = datetime(2026, 11, 21, 20, 0, tzinfo=UTC)  # 12:00 in Los Angeles
        await h.ok("create_phone_call", from_number=TWILIO, to_number=CALLEE)


async def test_attempts_per_destination_budget(tmp_path):
    async with harness(tmp_path, max_attempts_per_destination_24h=2) as h:
        for _ in range(2):
            await h.ok("create_phone_call", from_number=TELNYX, to_number=CALLEE)
        assert await h.refused("create_phone_call", from_number=TELNYX, to_number=CALLEE) == "budget_exceeded"
        await h.ok("create_phone_call", from_number=TELNYX, to_number="+14155552681")
        assert len(await h.sandbox_calls()) == 3


async def test_upstream_error_with_a_wrong_key(tmp_path):
    async with harness(tmp_path, api_key="sk_wrong") as h:
        assert await h.refused("list_phone_numbers") == "upstream_error"
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=CALLEE) == "upstream_error"


async def test_bad_configuration_fails_inside_the_tool_not_at_listing(tmp_path):
    async with harness(tmp_path, workspace_id=None) as h:
        assert ALL_TOOLS <= {t.name for t in (await h.client.list_tools()).tools}
        assert await h.refused("list_phone_numbers") == "configuration_error"


async def test_invalid_arguments_are_coded(tmp_path):
    async with harness(tmp_path) as h:
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=CALLEE,
                               custom_sip_headers={"Bad-Header": "1"}) == "invalid_argument"
        assert await h.sandbox_calls() == []


# --- confirmation -------------------------------------------------------------------------------

async def _accept(_ctx, params):
    assert CALLEE in params.message and "US" in params.message
    return ElicitResult(action="accept", content={"confirm": True})


async def _decline(_ctx, _params):
    return ElicitResult(action="decline")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_confirmation_by_elicitation(tmp_path, mode):
    async with harness(tmp_path, confirm="always",
                       client_kwargs={"mode": mode, "elicitation_callback": _accept}) as h:
        await h.ok("create_phone_call", from_number=TWILIO, to_number=CALLEE)
        assert len(await h.sandbox_calls()) == 1
    async with harness(tmp_path / "declined", confirm="always",
                       client_kwargs={"mode": mode, "elicitation_callback": _decline}) as h:
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=CALLEE) == "declined"
        assert await h.sandbox_calls() == []


async def test_confirmation_by_token(tmp_path):
    wall = WallClock(datetime(2026, 11, 21, 20, 0, tzinfo=UTC))
    async with harness(tmp_path, confirm="always", wall=wall) as h:
        result = await h.call("create_phone_call", from_number=TWILIO, to_number=CALLEE)
        assert result.is_error and "confirmation_required: " in result.content[0].text
        token = result.content[0].text.split("token ")[1].split()[0]
        assert await h.sandbox_calls() == []
        # a forged "decision" argument does not bypass the question
        forged = await h.call("create_phone_call", from_number=TWILIO, to_number=CALLEE,
                              decision={"confirm": True})
        assert forged.is_error and await h.sandbox_calls() == []
        placed = await h.ok("confirm_call", token=token)
        assert placed["to_number"] == CALLEE
        assert await h.refused("confirm_call", token=token) == "confirmation_invalid"  # single use
        assert await h.refused("confirm_call", token="cfm_forged") == "confirmation_invalid"
        assert len(await h.sandbox_calls()) == 1

        # altered parameters: a token for one number cannot dial another
        result = await h.call("create_phone_call", from_number=TWILIO, to_number=CALLEE)
        token = result.content[0].text.split("token ")[1].split()[0]
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number="+14155552681",
                               confirmation_token=token) == "confirmation_invalid"
        # expired
        result = await h.call("create_phone_call", from_number=TWILIO, to_number=CALLEE)
        token = result.content[0].text.split("token ")[1].split()[0]
        wall.now += timedelta(minutes=6)
        assert await h.refused("confirm_call", token=token) == "confirmation_invalid"
        assert len(await h.sandbox_calls()) == 1


async def test_international_policy_confirms_only_abroad(tmp_path):
    async with harness(tmp_path, confirm="international") as h:
        await h.ok("create_phone_call", from_number=TWILIO, to_number=CALLEE)
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number="+442079460958") == \
            "confirmation_required"


# --- idempotency and ambiguous outcomes ---------------------------------------------------------

async def test_idempotency_replay_and_conflict(tmp_path):
    async with harness(tmp_path) as h:
        first = await h.ok("create_phone_call", from_number=TELNYX, to_number=CALLEE, idempotency_key="k-1")
        again = await h.ok("create_phone_call", from_number=TELNYX, to_number=CALLEE, idempotency_key="k-1")
        assert again["call_id"] == first["call_id"] and again["replayed"] is True
        assert await h.refused("create_phone_call", from_number=TELNYX, to_number="+14155552681",
                               idempotency_key="k-1") == "idempotency_conflict"
        assert len(await h.sandbox_calls()) == 1


async def test_outcome_unknown_is_reconciled_not_redialled(tmp_path):
    async with harness(tmp_path, create_timeout_s=0.5) as h:
        await h.fault(kind="hang_after_create", count=1, path_prefix="/api/v1/calls/initiate")
        placed = await h.ok("create_phone_call", from_number=TELNYX, to_number=CALLEE)
        calls = await h.sandbox_calls()
        assert len(calls) == 1 and calls[0]["call_id"] == placed["call_id"]
        assert any("reconciled" in n for n in placed["notes"])


async def test_outcome_unknown_when_nothing_is_found(tmp_path):
    async with harness(tmp_path, create_timeout_s=0.5) as h:
        await h.fault(kind="hang", count=1, path_prefix="/api/v1/calls/initiate")
        assert await h.refused("create_phone_call", from_number=TELNYX, to_number=CALLEE) == "outcome_unknown"
        assert await h.sandbox_calls() == []


# --- bindings -----------------------------------------------------------------------------------

async def test_bind_agent_every_case_of_the_guide(tmp_path):
    async with harness(tmp_path) as h:
        change = await h.ok("bind_agent", phone_number=TELNYX, inbound_agent_id="agent_support",
                            outbound_agent_id="agent_sales", outbound_agent_version=2)
        assert change["after"]["inbound_agents"][0]["agent_id"] == "agent_support"
        assert change["after"]["outbound_agents"] == [{"agent_id": "agent_sales", "agent_version": 2, "weight": 1.0}]
        change = await h.ok("bind_agent", phone_number=TELNYX, unset_inbound=True)  # outbound-only
        assert change["before"]["inbound_agents"] and change["after"]["inbound_agents"] == []
        assert change["after"]["outbound_agents"][0]["agent_version"] == 2  # untouched direction kept
        split = [{"agent_id": "agent_sales", "agent_version": 1, "weight": 0.5},
                 {"agent_id": "agent_sales", "agent_version": 3, "weight": 0.5}]
        change = await h.ok("bind_agent", phone_number=TELNYX, outbound_agents=split)
        assert change["after"]["outbound_agents"] == split
        change = await h.ok("bind_agent", phone_number=TELNYX, unset_outbound=True,
                            inbound_agent_id="agent_support")  # inbound-only
        assert change["after"]["outbound_agents"] == [] and change["after"]["can_call_out"] is False
        assert await h.refused("create_phone_call", from_number=TELNYX, to_number=CALLEE) == \
            "from_number_not_usable"
        bad = [{"agent_id": "agent_sales", "weight": 0.7}, {"agent_id": "agent_support", "weight": 0.7}]
        assert await h.refused("bind_agent", phone_number=TELNYX, outbound_agents=bad) == "invalid_argument"
        assert await h.refused("bind_agent", phone_number=TELNYX, outbound_agent_id="agent_nope") == "not_found"
        assert await h.refused("bind_agent", phone_number=TELNYX, outbound_agent_id="agent_sales",
                               outbound_agent_version=9) == "not_found"
        assert await h.refused("bind_agent", phone_number="+14155550199",
                               outbound_agent_id="agent_sales") == "not_found"
        assert await h.refused("bind_agent", phone_number=TELNYX) == "invalid_argument"


async def test_lists(tmp_path):
    async with harness(tmp_path) as h:
        numbers = {n["phone_number"]: n for n in (await h.ok("list_phone_numbers"))["numbers"]}
        assert numbers[TWILIO]["kind"] == "twilio" and numbers[TELNYX]["kind"] == "telnyx"
        assert numbers[CUSTOM]["kind"] == "custom" and numbers[CUSTOM]["can_call_out"] is False
        agents = {a["agent_id"]: a for a in (await h.ok("list_agents"))["agents"]}
        assert {"agent_sales", "agent_support"} <= set(agents)


# --- CPS ----------------------------------------------------------------------------------------

async def test_set_and_get_cps_follow_the_provider_table(tmp_path):
    async with harness(tmp_path) as h:
        assert await h.refused("set_cps", provider="twilio", cps=6) == "cps_above_provider_max"
        assert await h.refused("set_cps", provider="telnyx", cps=17) == "cps_above_provider_max"
        # the sandbox's concurrency is 20, so custom telephony allows 20 // 20 = 1
        assert await h.refused("set_cps", provider="custom", cps=2) == "cps_above_provider_max"
        telnyx = await h.ok("set_cps", provider="telnyx", cps=16)
        assert telnyx["effective_cps"] == 16
        twilio = await h.ok("set_cps", provider="twilio", cps=5)
        assert twilio["effective_cps"] == 1 and twilio["pending_cps"] == 5  # a raise waits 10 minutes
        scopes = {s["provider"]: s for s in (await h.ok("get_cps"))["scopes"]}
        assert scopes["telnyx"]["configured_cps"] == 16 and scopes["twilio"]["pending_effective_in_s"] > 590


async def place_at_once(h, from_number: str, n: int) -> list:
    """n create_phone_call requests at the same moment, to distinct answered numbers."""
    results = []

    async def one(i: int) -> None:
        results.append(await h.call("create_phone_call", from_number=from_number, to_number=f"+1415555{2600 + i}"))

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return results


async def test_pacing_keeps_the_platform_from_rejecting(tmp_path):
    """Real time: our pacer at the CPS the sandbox (its own process, like the platform) enforces."""
    async with (
        sandbox_process("--speed", "100", "--cps", "telnyx=4") as url,
        harness(tmp_path, sandbox_url=url, max_attempts_per_destination_24h=50) as h,
    ):
        await h.ok("set_cps", provider="telnyx", cps=4)
        results = await place_at_once(h, TELNYX, 10)
        assert all(not r.is_error for r in results), [r.content[0].text for r in results if r.is_error]
        stats = (await h.http.get("/_sandbox/stats")).json()
        assert stats["rate_limited_by_scope"].get("telnyx", 0) == 0 and len(await h.sandbox_calls()) == 10
        assert stats["max_accepted_in_any_second"]["telnyx"] <= 4


async def test_rate_limited_beyond_the_horizon(tmp_path):
    async with harness(tmp_path, pacing_horizon_s=0.5, max_attempts_per_destination_24h=50) as h:
        results = await place_at_once(h, TWILIO, 3)
        refused = [r for r in results if r.is_error]
        assert refused and all("rate_limited: " in r.content[0].text for r in refused)
        assert len(await h.sandbox_calls()) == len(results) - len(refused)
