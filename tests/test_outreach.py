"""Outreach through the real MCP server and the real sandbox (issue 12): the do-not-call list on every path and in
any formatting, opt-outs honoured automatically from a scripted transcript, the spend cap under concurrent callers,
retries by outcome, and scheduled calls."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import anyio
import pytest

from tests.server_harness import TELNYX, TWILIO, harness, refusal_code
from uponai_mcp.errors import ERROR_META_KEY
from uponai_mcp.sandbox import SandboxConfig

pytestmark = pytest.mark.anyio

# retell dialect: its get-call returns transcripts and costs, so the poller (no webhook receiver here) sees them
BUDGETS = dict(dialect="retell", max_attempts_per_destination_24h=50, max_calls_per_hour=100_000, max_calls_per_day=100_000)
FAST = SandboxConfig(speed=100, cps={"twilio": 20, "telnyx": 20, "custom": 1}, concurrency_limit=1000)
LISTED = "+14155552671"
VARIANTS = [
    LISTED, "+1 415 555 2671", "+1 (415) 555-2671", "+1-415-555-2671", "+1.415.555.2671", "tel:+1-415-555-2671",
    "0014155552671", "\uff0b\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff12\uff16\uff17\uff11",  # full-width
    "+1\u200b415\u00a0555\u20112671",  # zero-width space, no-break space, non-breaking hyphen
    "+\u0661\u0664\u0661\u0665\u0665\u0665\u0665\u0662\u0666\u0667\u0661",  # Arabic-Indic digits
    "\u202a+14155552671\u202c",  # bidi embedding marks
]


async def eventually(check, *, within_s: float, interval: float = 0.1):
    with anyio.fail_after(within_s):
        while True:
            value = await check()
            if value:
                return value
            await anyio.sleep(interval)


async def read(h, uri: str) -> dict:
    result = await h.client.read_resource(uri)
    return json.loads(result.contents[0].text)


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def calls_to(h, number: str) -> list[dict]:
    return [c for c in await h.sandbox_calls() if c.get("to_number") == number]


# --- do-not-call --------------------------------------------------------------------------------------------


async def test_do_not_call_refuses_every_path_in_any_formatting_before_confirmation(tmp_path):
    async with harness(tmp_path, sandbox=FAST, confirm="always", **BUDGETS) as h:
        added = await h.ok("add_do_not_call", phone_number="+1 (415) 555-2671", reason="asked us by email")
        assert added["changed"] and added["entry"]["phone_number"] == LISTED and added["entry"]["source"] == "manual"
        again = await h.ok("add_do_not_call", phone_number="\uff0b14155552671", reason="again")
        assert not again["changed"] and again["entry"]["reason"] == "asked us by email"

        for v in VARIANTS:
            verdict = await h.ok("preflight_call", from_number=TWILIO, to_number=v)
            assert (verdict["allowed"], verdict["code"]) == (False, "do_not_call"), (v, verdict)
            # confirm=always: the refusal comes before any confirmation is asked
            result = await h.call("create_phone_call", from_number=TWILIO, to_number=v, idempotency_key=f"k-{v}")
            assert refusal_code(result) == "do_not_call", (v, result.content[0].text)
            details = result.meta[ERROR_META_KEY]["details"]
            assert details["e164"] == LISTED and details["reason"] == "asked us by email"
        # scheduled calls are refused when scheduled
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number="+1 415-555-2671",
                               scheduled_at=later(hours=1)) == "do_not_call"
        # a batch refuses the task (here every task: nothing is created)
        batch = await h.ok("create_batch_call", from_number=TWILIO, tasks=[{"to_number": VARIANTS[2]},
                                                                           {"to_number": VARIANTS[7]}])
        assert batch["batch_id"] is None and {t["code"] for t in batch["refused"]} == {"do_not_call"}
        # evaluations refuse it before dialling
        suite = {"name": "dnc", "from_number": TWILIO, "repeat": 1,
                 "cases": [{"name": "listed", "to_number": LISTED, "expect": {"status": "ended"}}]}
        assert await h.refused("run_eval", suite=suite) == "do_not_call"
        assert await h.sandbox_calls() == []

        # the audit log says why
        audit = await read(h, "uponai://audit")
        assert any(e["code"] == "do_not_call" and e["decision"] == "refused" for e in audit["entries"])

        # removed: dialable again (the confirmation policy applies as usual)
        removed = await h.ok("remove_do_not_call", phone_number="+1 415 555 2671")
        assert removed["changed"] and removed["entry"]["phone_number"] == LISTED
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=LISTED) == "confirmation_required"
        assert not (await h.ok("remove_do_not_call", phone_number=LISTED))["changed"]
        assert await h.refused("add_do_not_call", phone_number="call me maybe", reason="x") == "invalid_number"


async def test_listing_a_number_cancels_its_pending_batch_tasks_and_scheduled_calls(tmp_path):
    async with harness(tmp_path, sandbox=FAST, **BUDGETS) as h:
        other = "+14155552672"
        batch = await h.ok("create_batch_call", from_number=TWILIO, scheduled_at=later(hours=1),
                           tasks=[{"to_number": LISTED}, {"to_number": other}])
        scheduled = await h.ok("create_phone_call", from_number=TWILIO, to_number=LISTED, scheduled_at=later(hours=2))
        assert scheduled["call_status"] == "scheduled" and scheduled["scheduled"]["state"] == "scheduled"

        added = await h.ok("add_do_not_call", phone_number=LISTED, reason="complaint")
        assert added["cancelled_tasks"] == 2
        tasks = (await h.ok("get_batch", batch_id=batch["batch_id"]))["tasks"]
        assert [(t["state"], t["code"]) for t in tasks] == [("cancelled", "do_not_call"), ("pending", None)]
        listed = await h.ok("list_scheduled_calls")
        assert [(s["state"], s["code"]) for s in listed["scheduled"]] == [("cancelled", "do_not_call")]


async def test_do_not_call_csv_import_export_and_resource(tmp_path):
    async with harness(tmp_path, sandbox=FAST, **BUDGETS) as h:
        csv = ("phone_number,reason\n+1 (415) 555-2671,complaint\n(212) 555-0101,\n+44 20 7946 0958,litigator\n"
               "not a number,\n+14155552671,duplicate\n")
        imported = await h.ok("add_do_not_call", csv=csv, default_region="US", reason="imported list")
        assert (imported["added"], imported["already_listed"]) == (3, 0) and len(imported["invalid"]) == 1
        again = await h.ok("add_do_not_call", csv="4155552671\n+12125550101\n", default_region="US", reason="x")
        assert (again["added"], again["already_listed"]) == (0, 2)

        listed = await h.ok("list_do_not_call")
        assert listed["total"] == 3
        by_number = {e["phone_number"]: e for e in listed["entries"]}
        assert by_number["+14155552671"]["reason"] == "complaint"
        assert by_number["+12125550101"]["reason"] == "imported list"
        assert by_number["+442079460958"]["source"] == "csv"

        exported = (await h.ok("list_do_not_call", format="csv"))["csv"]
        lines = exported.strip().splitlines()
        assert lines[0] == "phone_number,reason,source,added_by,call_id,added_at" and len(lines) == 4
        # the export imports back into an empty list unchanged
        resource = await read(h, "uponai://do-not-call")
        assert resource["total"] == 3 and {e["phone_number"] for e in resource["entries"]} == set(by_number)
        assert await h.refused("preflight_call", from_number=TWILIO, to_number="+12125550101",
                               unknown_argument=1) == "invalid_argument"
        assert (await h.ok("preflight_call", from_number=TWILIO, to_number="+12125550101"))["code"] == "do_not_call"


# --- opt-outs -----------------------------------------------------------------------------------------------


async def test_opt_out_in_a_scripted_transcript_lists_the_number_and_cancels_what_was_pending(tmp_path):
    async with harness(tmp_path, sandbox=FAST, **BUDGETS) as h:
        number, other = "+14155552672", "+14155552673"
        batch = await h.ok("create_batch_call", from_number=TWILIO, scheduled_at=later(hours=1),
                           tasks=[{"to_number": number}, {"to_number": other}])
        scheduled = await h.ok("create_phone_call", from_number=TWILIO, to_number=number,
                               scheduled_at=later(hours=2))
        # the agent saying the words is no opt-out; only the callee's turns count
        calm = await h.ok("create_phone_call", from_number=TWILIO, to_number=other, metadata={
            "sandbox_user_says": ["Sure, go ahead.", "Will you stop calling if I say no?"]})
        placed = await h.ok("create_phone_call", from_number=TWILIO, to_number=number, metadata={
            "sandbox_user_says": ["Who is this?", "Please, don\u2019t call me again."]})
        for call_id in (calm["call_id"], placed["call_id"]):
            await h.ok("wait_for_call", call_id=call_id, until="ended", timeout_s=30)

        async def listed():
            return (await h.ok("list_do_not_call", source="opt_out"))["entries"]

        entries = await eventually(listed, within_s=15)
        assert [e["phone_number"] for e in entries] == [number]
        assert entries[0]["call_id"] == placed["call_id"] and placed["call_id"] in entries[0]["reason"]

        # an event and an audit entry say so
        events = await read(h, f"uponai://calls/{placed['call_id']}/events")
        assert "opt_out" in [e["event"] for e in events["events"]]
        audit = await read(h, "uponai://audit")
        opt = [e for e in audit["entries"] if e["decision"] == "opt_out"]
        assert len(opt) == 1 and opt[0]["details"]["call_id"] == placed["call_id"]
        assert opt[0]["details"]["cancelled"] == 2

        # what was pending to it is cancelled, the rest goes on
        tasks = (await h.ok("get_batch", batch_id=batch["batch_id"]))["tasks"]
        assert [(t["state"], t["code"]) for t in tasks] == [("cancelled", "do_not_call"), ("pending", None)]
        sched = {s["schedule_id"]: s for s in (await h.ok("list_scheduled_calls"))["scheduled"]}
        assert sched[scheduled["scheduled"]["schedule_id"]]["state"] == "cancelled"
        # and it is never dialled again
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=number) == "do_not_call"
        assert len(await calls_to(h, number)) == 1


async def test_opt_out_phrases_in_other_languages_and_configured_ones(tmp_path):
    async with harness(tmp_path, sandbox=FAST, opt_out_phrases=("leave me be forever",), **BUDGETS) as h:
        lines = {"+14155552674": "Bitte rufen Sie mich nicht mehr an.", "+14155552680": "No me vuelva a llamar, gracias.",
                 "+14155552681": "\u3082\u3046\u96fb\u8a71\u3057\u306a\u3044\u3067\u304f\u3060\u3055\u3044",
                 "+14155552682": "Just leave me be forever!", "+14155552683": "Yes, I have a minute."}
        ids = []
        for number, line in lines.items():
            placed = await h.ok("create_phone_call", from_number=TWILIO, to_number=number,
                                metadata={"sandbox_user_says": line, "sandbox_outcome": "answered"})
            ids.append(placed["call_id"])
        for call_id in ids:
            await h.ok("wait_for_call", call_id=call_id, until="ended", timeout_s=30)

        async def four():
            entries = (await h.ok("list_do_not_call", source="opt_out"))["entries"]
            return entries if len(entries) >= 4 else None

        await eventually(four, within_s=15)
        await anyio.sleep(0.5)
        assert {e["phone_number"] for e in (await h.ok("list_do_not_call"))["entries"]} == set(list(lines)[:4])


# --- spend cap ----------------------------------------------------------------------------------------------


async def test_concurrent_callers_cannot_slip_past_the_spend_cap(tmp_path):
    async with harness(tmp_path, sandbox=FAST, max_spend_per_day_cents=100, spend_estimate_cents=40,
                       **BUDGETS) as h:
        numbers = [f"+1415555{3000 + i:04d}" for i in range(40) if i % 10 < 4][:20]
        results: dict[str, object] = {}

        async def one(n: str) -> None:  # long calls: none ends (and reports its cost) during the burst
            results[n] = await h.call("create_phone_call", from_number=TELNYX, to_number=n,
                                      metadata={"sandbox_outcome": "long_call"})

        async with anyio.create_task_group() as tg:
            for n in numbers:
                tg.start_soon(one, n)
        placed = [r for r in results.values() if not r.is_error]
        refused = [r for r in results.values() if r.is_error]
        assert len(placed) == 2, [r.content[0].text for r in refused][:3]  # 0 + 40 + 40 <= 100 < 120
        for r in refused:
            assert refusal_code(r) == "budget_exceeded"
            assert r.meta[ERROR_META_KEY]["details"]["reason"] == "spend"
        spend = await h.ok("get_spend")
        assert spend["cap_cents"] == 100 and spend["spend_cents"] >= 80 and spend["remaining_cents"] <= 20
        assert [line["from_number"] for line in spend["by_number"]] == [TELNYX]

        # once the calls end, the platform's reported costs replace the estimates
        for r in placed:
            await h.ok("wait_for_call", call_id=r.structured_content["call_id"], until="ended", timeout_s=30)

        async def settled():
            s = await h.ok("get_spend")
            return s if s["in_flight"] == 0 else None

        spend = await eventually(settled, within_s=15)
        assert 0 < spend["reported_cents"] == spend["spend_cents"] < 20
        assert spend["by_agent"][0]["agent_id"] == "agent_sales" and spend["by_agent"][0]["calls"] == 2
        resource = await read(h, "uponai://spend")
        assert resource["spend_cents"] == spend["spend_cents"]
        verdict = await h.ok("preflight_call", from_number=TELNYX, to_number=numbers[-1])
        assert verdict["allowed"] and "spend" in verdict["checks_passed"]


# --- retries ------------------------------------------------------------------------------------------------


async def test_busy_and_no_answer_drive_retries_of_a_batch_and_of_a_single_call(tmp_path):
    async with harness(tmp_path, sandbox=FAST, **BUDGETS) as h:
        busy, no_answer, answered, invalid = "+14155552685", "+14155552686", "+14155552690", "+14155552688"
        policy = {"on": ["busy", "no_answer"], "max_attempts": 3, "delay_minutes": 0}
        created = await h.ok("create_batch_call", from_number=TWILIO, retry_policy=policy, tasks=[
            {"to_number": busy}, {"to_number": no_answer}, {"to_number": answered}, {"to_number": invalid}])
        single = "+14155552695"
        await h.ok("create_phone_call", from_number=TWILIO, to_number=single,
                   retry_policy={"on": ["busy"], "max_attempts": 2, "delay_minutes": 0})

        async def done():
            counts = {n: len(await calls_to(h, n)) for n in (busy, no_answer, answered, invalid, single)}
            return counts if counts[busy] >= 3 and counts[no_answer] >= 3 and counts[single] >= 2 else None

        await eventually(done, within_s=30, interval=0.25)
        await anyio.sleep(1.5)  # nothing more comes
        counts = {n: len(await calls_to(h, n)) for n in (busy, no_answer, answered, invalid, single)}
        assert counts == {busy: 3, no_answer: 3, answered: 1, invalid: 1, single: 2}

        tasks = (await h.ok("get_batch", batch_id=created["batch_id"]))["tasks"]
        retries = {t["to_number"]: t.get("retries") for t in tasks}
        assert [r["attempt"] for r in retries[busy]] == [2, 3] and all(r["call_id"] for r in retries[busy])
        assert retries[answered] is None and retries[invalid] is None
        audit = await read(h, "uponai://audit")
        assert sum(1 for e in audit["entries"] if e["kind"] == "retry" and e["decision"] == "retry") == 5


async def test_retry_policy_is_validated_strictly(tmp_path):
    async with harness(tmp_path, sandbox=FAST, **BUDGETS) as h:
        for bad in ({"on": ["answered"]}, {"on": []}, {"on": ["busy"], "max_attempts": 1},
                    {"on": ["busy"], "delay_minutes": -1}, {"on": ["busy"], "extra": 1}):
            assert await h.refused("create_phone_call", from_number=TWILIO, to_number="+14155552690",
                                   retry_policy=bad) == "invalid_argument", bad


# --- scheduled calls ----------------------------------------------------------------------------------------


async def test_scheduled_call_dials_once_on_time_and_can_be_cancelled(tmp_path):
    async with harness(tmp_path, sandbox=FAST, **BUDGETS) as h:
        number = "+14155552691"
        when = later(seconds=1.5)
        first = await h.ok("create_phone_call", from_number=TWILIO, to_number=number, scheduled_at=when,
                           idempotency_key="sched-1")
        sid = first["scheduled"]["schedule_id"]
        same = await h.ok("create_phone_call", from_number=TWILIO, to_number=number, scheduled_at=when,
                          idempotency_key="sched-1")
        assert same["scheduled"]["schedule_id"] == sid  # the key names the schedule
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=number, scheduled_at=later(hours=3),
                               idempotency_key="sched-1") == "idempotency_conflict"
        cancel_me = await h.ok("create_phone_call", from_number=TWILIO, to_number="+14155552692",
                               scheduled_at=later(hours=1))
        assert await calls_to(h, number) == []

        async def placed():
            rows = {s["schedule_id"]: s for s in (await h.ok("list_scheduled_calls"))["scheduled"]}
            return rows[sid] if rows[sid]["state"] == "placed" else None

        row = await eventually(placed, within_s=15)
        assert row["call_id"] and [c["call_id"] for c in await calls_to(h, number)] == [row["call_id"]]
        cancelled = await h.ok("cancel_scheduled_call", schedule_id=cancel_me["scheduled"]["schedule_id"])
        assert cancelled["state"] == "cancelled"
        assert await h.refused("cancel_scheduled_call", schedule_id=sid) == "invalid_argument"
        assert await h.refused("cancel_scheduled_call", schedule_id="sch_nope") == "not_found"
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=number,
                               scheduled_at="2020-01-01T00:00:00Z") == "invalid_argument"
        assert await h.refused("create_phone_call", from_number=TWILIO, to_number=number,
                               scheduled_at="tomorrow at nine") == "invalid_argument"
        assert (await read(h, "uponai://scheduled-calls"))["scheduled"]


async def test_scheduled_call_outside_the_window_is_refused_with_the_next_allowed_time_and_confirmed_then(tmp_path):
    async with harness(tmp_path, sandbox=FAST, calling_window="08:00-21:00", confirm="always", **BUDGETS) as h:
        la = ZoneInfo("America/Los_Angeles")
        tomorrow = (datetime.now(la) + timedelta(days=1)).date()
        night = datetime.combine(tomorrow, datetime.min.time(), la).replace(hour=3).isoformat()
        result = await h.call("create_phone_call", from_number=TWILIO, to_number="+14155552690", scheduled_at=night)
        assert refusal_code(result) == "outside_calling_window"
        nxt = datetime.fromisoformat(result.meta[ERROR_META_KEY]["details"]["next_allowed_at"].replace("Z", "+00:00"))
        assert nxt.astimezone(la).hour == 8 and nxt.astimezone(la).date() == tomorrow

        morning = datetime.combine(tomorrow, datetime.min.time(), la).replace(hour=10).isoformat()
        args = dict(from_number=TWILIO, to_number="+14155552690", scheduled_at=morning, idempotency_key="morning")
        asked = await h.call("create_phone_call", **args)
        assert refusal_code(asked) == "confirmation_required"
        token = asked.meta[ERROR_META_KEY]["details"]["token"]
        assert token.startswith("cfs_")
        # confirm_call would dial now: it refuses a schedule's token without spending it
        assert await h.refused("confirm_call", token=token) == "confirmation_invalid"
        done = await h.ok("create_phone_call", **args, confirmation_token=token)
        assert done["scheduled"]["state"] == "scheduled"
        assert datetime.fromisoformat(done["scheduled"]["scheduled_at"].replace("Z", "+00:00")).astimezone(la).hour == 10
        again = await h.ok("create_phone_call", **args)  # the key names the schedule: nothing is asked again
        assert again["scheduled"]["schedule_id"] == done["scheduled"]["schedule_id"]
        assert await h.sandbox_calls() == []


# --- stale calls --------------------------------------------------------------------------------------------


async def test_a_call_with_no_terminal_event_long_after_its_maximum_duration_is_marked_stale(tmp_path):
    # The sandbox at speed 1 keeps a long call ongoing for a minute; the server believes calls last 0.5 s at most.
    async with harness(tmp_path, sandbox=SandboxConfig(speed=1, cps={"twilio": 20}), max_call_duration_s=0.5,
                       stale_grace_s=0.5, **BUDGETS) as h:
        placed = await h.ok("create_phone_call", from_number=TWILIO, to_number="+14155552699")  # 9: long call
        batch = await h.ok("create_batch_call", from_number=TWILIO, tasks=[
            {"to_number": "+14155552689", "metadata": {"sandbox_outcome": "long_call"}}])
        with anyio.fail_after(20):
            waited = await h.ok("wait_for_call", call_id=placed["call_id"], until="ended", timeout_s=60)
        assert waited["reached"] and waited["call_status"] == "error" and waited["disconnection_reason"] == "stale"
        events = [e["event"] for e in (await read(h, f"uponai://calls/{placed['call_id']}/events"))["events"]]
        assert "call_stale" in events and "call_failed" in events

        async def batch_final():
            t = (await h.ok("get_batch", batch_id=batch["batch_id"]))["tasks"][0]
            return t if t["call_status"] else None

        task = await eventually(batch_final, within_s=20)
        assert task["call_status"] == "error"
        audit = await read(h, "uponai://audit")
        assert sum(1 for e in audit["entries"] if e["decision"] == "stale") == 2


# --- caller-ID pools ----------------------------------------------------------------------------------------


async def test_caller_id_pool_is_sticky_per_callee_with_local_presence(tmp_path):
    pool = ["+14155550100", "+12125550100", "+13125550100"]
    fixture = tmp_path / "fixture.json"
    fixture.write_text(json.dumps({
        "agents": [{"agent_id": "agent_sales", "agent_name": "Sales", "versions": [1]}],
        "phone_numbers": [{"phone_number": n, "type": "twilio", "outbound_agents": [
            {"agent_id": "agent_sales", "agent_version": 1, "weight": 1}]} for n in pool]}))
    async with harness(tmp_path / "data", sandbox=SandboxConfig(speed=100, fixture=fixture, cps={"twilio": 20}),
                       **BUDGETS) as h:
        callees = {"+12125550101": pool[1], "+13125550102": pool[2], "+14155552690": pool[0]}
        created = await h.ok("create_batch_call", from_number=pool[0], from_numbers=pool[1:], local_presence=True,
                             tasks=[{"to_number": n} for n in [*callees, "+16465550103"]])
        chosen = {t["to_number"]: t["caller_id"] for t in created["accepted"]}
        for callee, number in callees.items():
            assert chosen[callee] == f"{number} (area_code)"
        assert chosen["+16465550103"].endswith("(region)")  # New York, another area code: a US number
        await eventually(lambda: _count_calls(h, 4), within_s=20)
        first = {c["to_number"]: c["from_number"] for c in await h.sandbox_calls()}
        assert all(first[callee] == number for callee, number in callees.items())

        # the next batch, even without local presence and with the pool in another order, keeps each callee's number
        again = await h.ok("create_batch_call", from_number=pool[2], from_numbers=[pool[1], pool[0]],
                           tasks=[{"to_number": n} for n in first])
        assert {t["to_number"]: t["caller_id"] for t in again["accepted"]} == {
            n: f"{first[n]} (sticky)" for n in first}
        await eventually(lambda: _count_calls(h, 8), within_s=20)
        by_callee: dict[str, set[str]] = {}
        for c in await h.sandbox_calls():
            by_callee.setdefault(c["to_number"], set()).add(c["from_number"])
        assert all(len(v) == 1 for v in by_callee.values()), by_callee


async def _count_calls(h, n: int) -> bool:
    return len(await h.sandbox_calls()) >= n


async def test_opt_out_arrives_by_webhook_in_the_default_embedded_mode(tmp_path):
    """The default setup (no API key): the embedded sandbox, the native dialect, webhooks to the server's own
    receiver. The transcript and the cost come with the webhooks."""
    from mcp import Client

    from uponai_mcp.config import Settings
    from uponai_mcp.server import create_server

    server = create_server(Settings(sandbox=True, data_dir=tmp_path, sandbox_speed=50,
                                    max_attempts_per_destination_24h=50))
    async with Client(server) as client:
        async def ok(tool: str, **args):
            result = await client.call_tool(tool, args)
            assert not result.is_error, result.content[0].text
            return result.structured_content

        placed = await ok("create_phone_call", from_number=TWILIO, to_number="+14155552672",
                          metadata={"sandbox_user_says": "Remove me from your list, please."})
        await ok("wait_for_call", call_id=placed["call_id"], until="ended", timeout_s=30)

        async def listed():
            return (await ok("list_do_not_call"))["entries"]

        entries = await eventually(listed, within_s=15)
        assert entries[0]["call_id"] == placed["call_id"] and entries[0]["source"] == "opt_out"

        async def costed():
            spend = await ok("get_spend")
            return spend if spend["in_flight"] == 0 and spend["reported_cents"] > 0 else None

        await eventually(costed, within_s=15)
        result = await client.call_tool("create_phone_call", {"from_number": TWILIO, "to_number": "+14155552672"})
        assert refusal_code(result) == "do_not_call"


async def test_a_retry_waits_for_the_callees_calling_window(tmp_path):
    from tests.server_harness import WallClock

    la = ZoneInfo("America/Los_Angeles")
    today = datetime.now(la).date()  # near the real clock: the poller follows calls of the last two days
    wall = WallClock(datetime.combine(today, datetime.min.time(), la).replace(hour=20, minute=58, second=30)
                     .astimezone(UTC))  # 20:58:30 in San Francisco
    async with harness(tmp_path, sandbox=FAST, wall=wall, calling_window="08:00-21:00", **BUDGETS) as h:
        busy = "+14155552675"
        await h.ok("create_batch_call", from_number=TWILIO, tasks=[{"to_number": busy}],
                   retry_policy={"on": ["busy"], "max_attempts": 2, "delay_minutes": 1})

        async def retry_row():
            rows = (await h.ok("list_scheduled_calls"))["scheduled"]
            return rows[0] if rows else None

        row = await eventually(retry_row, within_s=20)
        assert row["attempt"] == 2 and row["retry_of"] and row["batch_id"]
        wall.now += timedelta(minutes=2)  # 21:00:30: the retry is due, the window has closed

        async def moved():
            r = await retry_row()
            local = datetime.fromisoformat(r["scheduled_at"].replace("Z", "+00:00")).astimezone(la)
            return local if local.hour == 8 else None

        local = await eventually(moved, within_s=10)
        assert local.date() == today + timedelta(days=1) and local.minute == 0
        assert len(await calls_to(h, busy)) == 1

        wall.now = local.astimezone(UTC) + timedelta(seconds=5)
        await eventually(lambda: _count_calls(h, 2), within_s=10)
        assert (await retry_row())["state"] in ("dialing", "placed")


# --- the same on PostgreSQL (several replicas share one account) ---------------------------------------------


async def test_outreach_on_postgresql(tmp_path, pg_url):
    """The outreach SQL is portable: do-not-call (in any formatting), an opt-out, the spend cap under concurrent
    callers, a scheduled call and a retry, with the store on PostgreSQL."""
    async with harness(tmp_path, sandbox=FAST, database_url=pg_url, max_spend_per_day_cents=1000,
                       spend_estimate_cents=300, **BUDGETS) as h:
        await h.ok("add_do_not_call", phone_number=VARIANTS[2], reason="pg")
        assert (await h.ok("preflight_call", from_number=TWILIO, to_number=VARIANTS[7]))["code"] == "do_not_call"
        imported = await h.ok("add_do_not_call", csv="(212) 555-0101\n", default_region="US", reason="csv")
        assert imported["added"] == 1 and (await h.ok("list_do_not_call"))["total"] == 2

        opted = await h.ok("create_phone_call", from_number=TWILIO, to_number="+14155552672",
                           metadata={"sandbox_user_says": "Don't call me again."})
        await h.ok("wait_for_call", call_id=opted["call_id"], until="ended", timeout_s=30)

        async def listed():
            return (await h.ok("list_do_not_call", source="opt_out"))["entries"]

        assert (await eventually(listed, within_s=15))[0]["call_id"] == opted["call_id"]

        busy = "+14155552675"
        await h.ok("create_phone_call", from_number=TWILIO, to_number=busy,
                   retry_policy={"on": ["busy"], "max_attempts": 2, "delay_minutes": 0})
        scheduled = await h.ok("create_phone_call", from_number=TWILIO, to_number="+14155552691",
                               scheduled_at=later(seconds=1))

        async def settled():
            rows = {s["schedule_id"]: s for s in (await h.ok("list_scheduled_calls"))["scheduled"]}
            done = [r for r in rows.values() if r["state"] == "placed"]
            return rows if len(done) == 2 else None

        rows = await eventually(settled, within_s=30)
        assert rows[scheduled["scheduled"]["schedule_id"]]["call_id"]
        assert len(await calls_to(h, busy)) == 2

        # the spend cap: (1000 - spent) // 300 more calls (3), however many ask at once
        async def costs_in():
            spend = await h.ok("get_spend")
            return spend if spend["in_flight"] == 0 else None

        spend = await eventually(costs_in, within_s=15)
        room = int((1000 - spend["spend_cents"]) // 300)
        assert room == 3, spend
        results = []

        async def one(n: str) -> None:  # long calls: none ends (and reports its cost) during the burst
            results.append(await h.call("create_phone_call", from_number=TELNYX, to_number=n,
                                        metadata={"sandbox_outcome": "long_call"}))

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(one, f"+1415555{3100 + i * 10:04d}")
        placed = [r for r in results if not r.is_error]
        assert len(placed) == room, (room, [r.content[0].text for r in results if r.is_error][:2])
        assert {r.meta[ERROR_META_KEY]["details"]["reason"] for r in results if r.is_error} == {"spend"}
