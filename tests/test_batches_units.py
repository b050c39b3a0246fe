"""Batch parts without a server: CSV parsing (hostile input), weekly windows, and CSV through the real tool."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest

from tests.server_harness import TWILIO, WallClock, harness
from uponai_mcp.batches import CallTimeWindow
from uponai_mcp.batches.csv_tasks import CsvError, parse_tasks_csv
from uponai_mcp.sandbox import SandboxConfig

# --- CSV --------------------------------------------------------------------------------------------


def test_csv_like_the_dashboard():
    text = ('\ufeffPhone Number,override agent id,Override_Agent_Version,metadata,custom_sip_headers,'
            'customer_name,"note, with comma"\r\n'
            '+14155552000,agent_sales,3,"{""ticket"": 7}","{""X-Campaign"": ""fall""}",Ada,"hello, world"\r\n'
            '\r\n'
            ',,,,,,\r\n'
            '+14155552001,,,,,Bob,\r\n')
    tasks = parse_tasks_csv(text)
    assert [t.row for t in tasks] == [2, 5]
    first, second = (t.fields for t in tasks)
    assert first == {"to_number": "+14155552000", "override_agent_id": "agent_sales", "override_agent_version": 3,
                     "metadata": {"ticket": 7}, "custom_sip_headers": {"X-Campaign": "fall"},
                     "retell_llm_dynamic_variables": {"customer_name": "Ada", "note, with comma": "hello, world"}}
    assert second == {"to_number": "+14155552001", "retell_llm_dynamic_variables": {"customer_name": "Bob"}}


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "empty"),
    ("name,city\nAda,Paris\n", "no phone number column"),
    ("phone;name\n+14155552000;Ada\n", "comma-separated"),
    ("phone number,phone\n1,2\n", "more than one phone number column"),
    ("phone number,name,name\n+1,a,b\n", "twice"),
    ("phone number\n", "no rows"),
    ("phone number,metadata\n+14155552000,{not json}\n", "not valid JSON"),
    ("phone number,metadata\n+14155552000,[1]\n", "JSON object"),
    ("phone number,custom_sip_headers\n+14155552000,\"{\"\"X-A\"\": 1}\"\n", "string"),
    ("phone number,override agent version\n+14155552000,v3\n", "whole number"),
    ("phone number,ignore e164 validation\n+14155552000,maybe\n", "true or false"),
    ("phone number,name\n+14155552000,Ada,extra\n", "quote values"),
    ("phone number,name\n,Ada\n", "no phone number"),
    ('phone number,name\n+14155552000,"unterminated\n', "cannot be read"),
    ("phone number,\n+14155552000,stray\n", "without a header"),
])
def test_csv_hostile_input_is_a_coded_error(text, fragment):
    with pytest.raises(CsvError, match=fragment):
        parse_tasks_csv(text)


def test_csv_size_and_row_limits():
    with pytest.raises(CsvError, match="larger than"):
        parse_tasks_csv("phone number\n" + "+14155552000\n" * 400_000)
    with pytest.raises(CsvError, match="more than 5 rows"):
        parse_tasks_csv("phone number\n" + "+14155552000\n" * 6, max_tasks=5)
    many_errors = "phone number,metadata\n" + "+14155552000,{x}\n" * 50
    with pytest.raises(CsvError, match=r"\(and more\)"):
        parse_tasks_csv(many_errors)


# --- weekly windows ---------------------------------------------------------------------------------

NY = "America/New_York"


def test_window_edges_are_half_open_in_the_zone():
    w = CallTimeWindow(windows=[{"start": 540, "end": 1020}], day=["Monday", "Tuesday"], timezone=NY)
    mon_9 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # Monday 09:00 in New York (EST)
    assert w.is_open(mon_9)
    assert not w.is_open(mon_9 - timedelta(microseconds=1))
    assert w.is_open(mon_9 + timedelta(hours=8) - timedelta(microseconds=1))
    assert not w.is_open(mon_9 + timedelta(hours=8))  # 17:00 is closed
    assert w.next_open(mon_9 - timedelta(hours=1)) == mon_9
    # Tuesday 17:00 -> next Monday 09:00 (Wednesday..Sunday are not listed).
    assert w.next_open(mon_9 + timedelta(days=1, hours=8)) == mon_9 + timedelta(days=7)


def test_window_follows_dst_wall_clock():
    w = CallTimeWindow(windows=[{"start": 540, "end": 600}], timezone=NY)
    # 2026-03-08: New York springs forward; 09:00 EDT is 13:00 UTC (the day before it was 14:00 UTC).
    assert w.next_open(datetime(2026, 3, 8, 0, 0, tzinfo=UTC)) == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)
    assert w.next_open(datetime(2026, 3, 7, 0, 0, tzinfo=UTC)) == datetime(2026, 3, 7, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize("bad", [
    {"windows": []},
    {"windows": [{"start": 600, "end": 600}]},
    {"windows": [{"start": 1380, "end": 60}]},  # across midnight: split it
    {"windows": [{"start": 0, "end": 1441}]},
    {"windows": [{"start": 0, "end": 60}], "timezone": "Nowhere/City"},
    {"windows": [{"start": 0, "end": 60}], "day": ["Funday"]},
])
def test_window_rejects_bad_shapes(bad):
    with pytest.raises(ValueError):
        CallTimeWindow.model_validate(bad)


# --- through the server -----------------------------------------------------------------------------

@pytest.mark.anyio
async def test_hostile_csv_through_the_tool_dials_nothing(tmp_path):
    async with harness(tmp_path) as h:
        for text in ["name\nAda\n", "phone number,metadata\n+14155552000,{bad}\n", "\ufeff",
                     "phone number\n" + "+14155552000\n" * 10_001]:
            assert await h.refused("create_batch_call", from_number=TWILIO, tasks_csv=text) == "invalid_argument"
        assert await h.sandbox_calls() == []
        created = await h.ok("create_batch_call", from_number=TWILIO,
                             tasks_csv="\ufeffphone number,customer_name\n+14155552000,Ada\n\n+14155552001,Bob\n")
        assert [t["source"] for t in created["accepted"]] == ["row 2", "row 4"]


@pytest.mark.anyio
async def test_batch_waits_for_its_window_on_an_injected_clock(tmp_path):
    # Saturday 2026-11-21 12:00 UTC; the window is weekdays 09:00-17:00 in New York.
    wall = WallClock(datetime(2026, 11, 21, 12, 0, tzinfo=UTC))
    window = {"windows": [{"start": 540, "end": 1020}], "day": ["Monday", "Tuesday", "Wednesday", "Thursday",
                                                                   "Friday"], "timezone": NY}
    async with harness(tmp_path, wall=wall, sandbox=SandboxConfig(speed=200)) as h:
        created = await h.ok("create_batch_call", from_number=TWILIO, call_time_window=window,
                             tasks=[{"to_number": "+14155552000"}, {"to_number": "+14155552001"}])
        batch_id = created["batch_id"]
        view = await h.ok("get_batch", batch_id=batch_id)
        assert view["window_open_now"] is False and view["next_window_open_at"] == "2026-11-23T14:00:00Z"
        await anyio.sleep(1.2)
        assert await h.sandbox_calls() == []
        wall.now = datetime(2026, 11, 23, 13, 59, 59, tzinfo=UTC)  # one second before it opens
        await anyio.sleep(1.2)
        assert await h.sandbox_calls() == []
        wall.now = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # Monday 09:00 in New York: open
        done = await h.ok("wait_for_batch", batch_id=batch_id, timeout_s=20)
        assert done["finished"] and done["batch"]["counts"] == {"placed": 2}
        assert len(await h.sandbox_calls()) == 2
