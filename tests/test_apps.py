"""MCP Apps: the call and batch monitors, served by the real server and rendered in headless Chromium.

Each browser test loads the app in a small Apps host page (a sandboxed frame, the ui/* handshake), feeds it a
real tool result from the sandbox, lets the app follow the call or batch through the host (tools/call and
resources/read answered by a real MCP client), then checks the rendered DOM and saves a screenshot
(to $UPONAI_SCREENSHOT_DIR when set). Skipped, not failed, where no chromium is installed.
"""

from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID

from tests.server_harness import TELNYX, TWILIO, harness
from uponai_mcp.apps import BATCH_APP, BINDINGS, CALL_APP
from uponai_mcp.apps.browser import Chromium, find_chromium
from uponai_mcp.apps.host import AppHost
from uponai_mcp.sandbox import SandboxConfig

pytestmark = pytest.mark.anyio
needs_browser = pytest.mark.skipif(find_chromium() is None, reason="no chromium installed (scripts/ensure_chromium.sh)")

ANSWERED, BUSY = "+14155552671", "+14155552675"
DONE = "document.body.dataset.state === 'done'"


@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        pytest.skip("no chromium installed")
    with Chromium(width=480, height=900) as b:  # one browser for the module; each test loads its own page
        yield b


@asynccontextmanager
async def live_server(tmp_path: Path, speed: float):
    """The server with its webhook receiver on loopback and the sandbox pointed at it, so transcripts and
    analyses arrive the way they do in production (the uponai dialect sends them only by webhook)."""
    async with harness(tmp_path, sandbox=SandboxConfig(speed=speed), webhook_listen="127.0.0.1:0") as h:
        policy = json.loads((await h.client.read_resource("uponai://policy")).contents[0].text)
        url = policy["call_events"]["webhook_receiver"]
        (await h.http.post("/_sandbox/config", json={"webhook_url": url})).raise_for_status()
        yield h


def shot_path(tmp_path: Path, name: str) -> Path:
    out = os.environ.get("UPONAI_SCREENSHOT_DIR")
    return (Path(out) if out else tmp_path) / f"{name}.png"


async def app_html(client, uri: str) -> str:
    read = await client.read_resource(uri)
    assert read.contents[0].mime_type == APP_MIME_TYPE
    return read.contents[0].text


async def test_tools_are_bound_and_the_apps_are_served_self_contained(tmp_path):
    async with harness(tmp_path) as h:
        tools = {t.name: t for t in (await h.client.list_tools()).tools}
        bound = {name: t.meta["ui"]["resourceUri"] for name, t in tools.items() if t.meta and "ui" in t.meta}
        assert bound == {n: uri for n, uri in BINDINGS.items() if n in tools}
        assert bound["get_call"] == bound["wait_for_call"] == bound["create_phone_call"] == CALL_APP
        assert bound["get_batch"] == bound["create_batch_call"] == BATCH_APP
        assert h.client.server_capabilities.extensions.get(EXTENSION_ID) is not None

        listed = {str(r.uri): r for r in (await h.client.list_resources()).resources}
        for uri in (CALL_APP, BATCH_APP):
            assert listed[uri].mime_type == APP_MIME_TYPE
            html = await app_html(h.client, uri)
            read = await h.client.read_resource(uri)
            csp = read.contents[0].meta["ui"]["csp"]
            assert csp["connectDomains"] == []  # the app fetches nothing; its data comes over the bridge
            assert "connect-src 'none'" in html and "default-src 'none'" in html
            # self-contained: no external script, style, image or font; the bridge and style are inlined
            low = html.lower()
            assert "<script src" not in low and "<link" not in low and "@import" not in low and "url(" not in low
            assert "ui/initialize" in html and "/*STYLE*/" not in html and "/*BRIDGE*/" not in html

        # Hosts without Apps get the same answer as before: text plus structured content.
        placed = await h.call("create_phone_call", from_number=TWILIO, to_number=ANSWERED)
        assert not placed.is_error and placed.structured_content["call_id"] and placed.content[0].text


@needs_browser
async def test_call_app_follows_a_real_call_to_its_analysis(tmp_path, browser):
    hostile = '<img src=x onerror="document.body.dataset.pwned=1">Ada'
    async with live_server(tmp_path, 50) as h, AppHost(h.client, browser=browser) as host:
        args = {"from_number": TELNYX, "to_number": ANSWERED,
                "retell_llm_dynamic_variables": {"customer_name": hostile}}
        placed = await h.call("create_phone_call", **args)
        assert not placed.is_error, placed.content[0].text
        call_id = placed.structured_content["call_id"]
        await host.show(await app_html(h.client, CALL_APP), tool="create_phone_call", arguments=args, result=placed)
        await host.until(DONE, within_s=60)
        call = await h.ok("get_call", call_id=call_id)
        dom = await host.query("""(() => {
          const q = (s) => document.querySelector(s), all = (s) => [...document.querySelectorAll(s)];
          return {
            status: q('[data-field=status]').textContent,
            steps: all('ol.timeline li').map((li) => [li.dataset.step, li.dataset.reached, li.querySelector('.when').textContent]),
            turns: all('.turn').map((li) => [li.dataset.role, li.lastChild.textContent]),
            tools: all('.toolcall').map((li) => li.dataset.tool),
            duration: q('[data-field=duration]').textContent, cost: q('[data-field=cost]').textContent,
            latency: q('[data-field=latency-p50]').textContent, summary: q('[data-field=summary]').textContent,
            audio: q('audio') && q('audio').getAttribute('src'), imgs: all('img').length,
            pwned: document.body.dataset.pwned || null, text: document.body.innerText,
            loaded: performance.getEntriesByType('resource').map((e) => e.name),
          };
        })()""")
        assert dom["status"] == call["call_status"] == "ended"
        assert [s[0] for s in dom["steps"]] == ["registered", "ongoing", "ended", "analyzed"]
        assert all(s[1] == "true" for s in dom["steps"]) and all("UTC" in s[2] for s in dom["steps"][1:])
        turns = call["untrusted"]["turns"]
        assert len(turns) >= 2 and dom["turns"] == [[t["role"], t["text"]] for t in turns]
        assert dom["tools"] == [tc["name"] for tc in call["untrusted"]["tool_calls"]] and dom["tools"]
        assert dom["duration"].endswith(" s") and dom["cost"].endswith("¢") and dom["latency"].endswith("ms")
        assert dom["summary"] == call["untrusted"]["call_summary"]
        assert dom["audio"] == call["recording_url"]
        # The transcript is callee-controlled: markup in it is shown as text, never run.
        assert "<img src=x" in dom["text"] and dom["imgs"] == 0 and dom["pwned"] is None
        assert dom["loaded"] == []  # nothing fetched: the recording loads only when played
        # It followed the call through the host, not by itself.
        assert "tools/call get_call" in host.served
        assert f"resources/read uponai://calls/{call_id}/events" in host.served

        # Readable at a phone's width: nothing overflows sideways.
        await host.resize(360, 800)
        assert await host.query("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        png = await host.screenshot(shot_path(tmp_path, "call-app"))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        await host.resize(480, 900)


@needs_browser
async def test_call_app_shows_a_call_that_did_not_connect_and_a_refusal(tmp_path, browser):
    async with live_server(tmp_path, 100) as h, AppHost(h.client, browser=browser) as host:
        placed = await h.ok("create_phone_call", from_number=TELNYX, to_number=BUSY)
        args = {"call_id": placed["call_id"], "until": "analyzed", "timeout_s": 30}
        waited = await h.call("wait_for_call", **args)
        await host.show(await app_html(h.client, CALL_APP), tool="wait_for_call", arguments=args, result=waited)
        await host.until(DONE)
        dom = await host.query("""({status: document.querySelector('[data-field=status]').textContent,
          reason: document.querySelector('[data-field=reason]').textContent,
          failed: [...document.querySelectorAll('ol.timeline li.failed')].map((li) => li.dataset.step)})""")
        assert dom == {"status": "not_connected", "reason": "dial_busy", "failed": ["ongoing", "ended"]}
        await host.screenshot(shot_path(tmp_path, "call-app-not-connected"))

        refused = await h.call("get_call", call_id="call_does_not_exist")
        assert refused.is_error
        await host.show(await app_html(h.client, CALL_APP), tool="get_call", arguments={"call_id": "x"},
                        result=refused)
        await host.until("document.body.dataset.state === 'error'")
        shown = await host.query("document.querySelector('[role=alert]').textContent")
        assert shown == refused.content[0].text and shown.split(":")[0]


@needs_browser
async def test_batch_app_shows_progress_chart_and_the_refused_and_failed_tasks(tmp_path, browser):
    async with live_server(tmp_path, 100) as h, AppHost(h.client, browser=browser) as host:
        tasks = [{"to_number": "+14155552001"}, {"to_number": "+14155552002"}, {"to_number": BUSY},
                 {"to_number": "+19005550123"},  # premium rate: refused before dialling
                 {"to_number": "+14155552006"}]  # no answer
        args = {"from_number": TWILIO, "tasks": tasks, "name": "app test"}
        created = await h.call("create_batch_call", **args)
        assert not created.is_error, created.content[0].text
        batch_id = created.structured_content["batch_id"]
        await host.show(await app_html(h.client, BATCH_APP), tool="create_batch_call", arguments=args,
                        result=created)
        await host.until(DONE, within_s=60)
        final = await h.ok("get_batch", batch_id=batch_id)
        dom = await host.query("""(() => {
          const all = (s) => [...document.querySelectorAll(s)];
          const svg = document.querySelector('svg.chart');
          return {
            status: document.querySelector('[data-field=status]').textContent,
            counts: Object.fromEntries(all('.counts li').map((li) => [li.dataset.state, Number(li.querySelector('b').textContent)])),
            problems: all('li.problem').map((li) => [li.dataset.outcome, li.dataset.code, li.dataset.number]),
            chartRole: svg.getAttribute('role'), chartTitle: svg.querySelector('title').textContent,
            chartDesc: svg.querySelector('desc').textContent, lines: all('svg.chart polyline').length,
            samples: all('[data-field=samples] tbody tr').length,
          };
        })()""")
        assert dom["status"] == final["status"] == "completed"
        assert dom["counts"] == {k: v for k, v in final["counts"].items() if v}
        refused = created.structured_content["refused"]
        assert [[p[1], p[2]] for p in dom["problems"] if p[0] == "refused"] == [
            [r["code"], r["to_number"]] for r in refused] and refused[0]["to_number"] == "+19005550123"
        # calls that did not connect, with the reason the call itself gives
        assert sorted([p[2], p[1]] for p in dom["problems"] if p[0] == "not_connected") == [
            ["+14155552006", "dial_no_answer"], [BUSY, "dial_busy"]]
        assert dom["chartRole"] == "img" and dom["chartTitle"] and "samples" in dom["chartDesc"]
        assert dom["lines"] >= 1 and dom["samples"] >= 2  # counts sampled over time while it ran
        assert "tools/call get_batch" in host.served
        await host.resize(360, 800)
        assert await host.query("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        png = await host.screenshot(shot_path(tmp_path, "batch-app"))
        assert png.stat().st_size > 10_000
        await host.resize(480, 900)


EVAL_STAGE = Path(__file__).parent / "fixtures" / "eval_sandbox.json"


@needs_browser
async def test_batch_app_follows_an_evaluation_run_to_its_failed_checks(tmp_path, browser):
    stage = SandboxConfig(speed=200, seed=2, fixture=EVAL_STAGE, cps={"custom": 20}, concurrency_limit=1000)
    async with harness(tmp_path, sandbox=stage, dialect="retell", max_attempts_per_destination_24h=100) as h:
        if "run_eval" not in {t.name for t in (await h.client.list_tools()).tools}:
            pytest.skip("no evaluation tools in this build")
        await h.ok("set_cps", provider="custom", cps=20)
        suite = {"name": "app-eval", "from_number": "+14155550102", "repeat": 2, "timeout_s": 30,
                 "variants": [{"agent_id": "agent_sales", "version": 2}],  # v2 is slow in the fixture
                 "cases": [{"name": "stays fast", "to_number": "+12125550102", "expect": {"max_latency_p50_ms": 1200}},
                           {"name": "voicemail", "to_number": "+12125550104", "expect": {"in_voicemail": True}}]}
        started = await h.call("run_eval", suite=suite)
        assert not started.is_error, started.content[0].text
        run_id = started.structured_content["run_id"]
        async with AppHost(h.client, browser=browser) as host:
            await host.show(await app_html(h.client, BATCH_APP), tool="run_eval", arguments={"suite": suite},
                            result=started)
            await host.until(DONE, within_s=60)
            run = await h.ok("get_eval_run", run_id=run_id)
            dom = await host.query("""({
              status: document.querySelector('[data-field=status]').textContent,
              counts: Object.fromEntries([...document.querySelectorAll('.counts li')].map((li) => [li.dataset.state, Number(li.querySelector('b').textContent)])),
              problems: [...document.querySelectorAll('li.problem')].map((li) => li.textContent),
            })""")
        assert dom["status"] == run["status"] == "completed"
        assert dom["counts"] == {"passed": 2, "failed": 2} == {"passed": run["passed"], "failed": run["scored"] - run["passed"]}
        assert len(dom["problems"]) == 2 and all("stays fast" in p and "max_latency_p50_ms" in p for p in dom["problems"])
        assert "tools/call get_eval_run" in host.served
