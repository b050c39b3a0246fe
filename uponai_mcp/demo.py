"""`uponai-mcp demo`: the platform guide end to end, through a real MCP client over stdio.

It launches `uponai-mcp serve` on the embedded sandbox (no phone rings, nothing is spent), then
walks through: numbers, bindings (with an A/B split), CPS, a refused and an allowed preflight, a
call followed through its webhook events to the analysis, the transcript, and a small batch followed
with a progress bar (stderr). With chromium installed it saves screenshots of the call and batch
monitors (the MCP Apps) to `--screenshots DIR` (default `uponai-demo-screenshots`). Exit 0 = all worked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from uponai_mcp.apps import BATCH_APP, CALL_APP
from uponai_mcp.apps.browser import BrowserError, find_chromium
from uponai_mcp.apps.host import AppHost
from uponai_mcp.progress import Progress

TWILIO, TELNYX = "+14155550100", "+14155550101"
CALLEE = "+14155552671"


class DemoFailed(Exception):
    pass


def say(text: str = "") -> None:
    print(text, flush=True)


def step(n: int, title: str) -> None:
    say(f"\n{n}. {title}")


async def tool(client: Client, tool_name: str, /, **args: Any) -> dict:
    result = await client.call_tool(tool_name, args)
    if result.is_error:
        raise DemoFailed(f"{tool_name} failed: {result.content[0].text}")
    return result.structured_content


async def refusal(client: Client, name: str, **args: Any) -> str:
    result = await client.call_tool(name, args)
    if not result.is_error:
        raise DemoFailed(f"{name} should have been refused")
    return result.content[0].text.split(": ", 1)[1]


async def walkthrough(client: Client) -> str:
    step(1, "The account's phone numbers (list_phone_numbers)")
    for n in (await tool(client, "list_phone_numbers"))["numbers"]:
        outbound = ", ".join(a["agent_id"] for a in n["outbound_agents"]) or "none"
        inbound = ", ".join(a["agent_id"] for a in n["inbound_agents"]) or "none"
        say(f"   {n['phone_number']}  {n['kind']:<7} inbound: {inbound:<14} outbound: {outbound}")

    step(2, "Bind agents (bind_agent)")
    change = await tool(client, "bind_agent", phone_number=TELNYX, inbound_agent_id="agent_support",
                        outbound_agent_id="agent_sales")
    say(f"   {TELNYX}: inbound agent_support, outbound agent_sales "
        f"(before: outbound {[a['agent_id'] for a in change['before']['outbound_agents']]})")
    split = [{"agent_id": "agent_sales", "agent_version": 2, "weight": 0.5},
             {"agent_id": "agent_sales", "agent_version": 3, "weight": 0.5}]
    change = await tool(client, "bind_agent", phone_number=TELNYX, outbound_agents=split)
    say("   A/B split: " + ", ".join(f"{a['agent_id']} v{a['agent_version']} {a['weight']:.0%}"
                                    for a in change["after"]["outbound_agents"]))
    await tool(client, "bind_agent", phone_number=TELNYX, unset_inbound=True)
    say(f"   {TELNYX} is now outbound-only (inbound unset)")

    step(3, "Calls per second (set_cps, get_cps)")
    telnyx = await tool(client, "set_cps", provider="telnyx", cps=16)
    say(f"   telnyx: {telnyx['effective_cps']:g} CPS, in force now")
    twilio = await tool(client, "set_cps", provider="twilio", cps=5)
    say(f"   twilio: asked for 5, pacing at {twilio['effective_cps']:g} until the raise takes effect "
        f"in {twilio['pending_effective_in_s'] / 60:.0f} min (Twilio applies raises within 10 minutes)")
    say(f"   twilio 6 CPS -> refused: {await refusal(client, 'set_cps', provider='twilio', cps=6)}")

    step(4, "Preflight a refused and an allowed destination (preflight_call)")
    for number, why in (("+18765550123", "a Jamaican number (+1 876 is not the US)"),
                        ("+19005550123", "a US premium-rate number")):
        v = await tool(client, "preflight_call", from_number=TWILIO, to_number=number)
        say(f"   {number} ({why}): allowed={v['allowed']} -> {v['code']}: {v['message']}")
    v = await tool(client, "preflight_call", from_number=TELNYX, to_number=CALLEE)
    say(f"   {CALLEE}: allowed={v['allowed']}; checks {', '.join(v['checks_passed'])}")
    say(f"   {v['message']}")

    step(5, "Place the call (create_phone_call)")
    placed = await tool(client, "create_phone_call", from_number=TELNYX, to_number=CALLEE,
                        retell_llm_dynamic_variables={"customer_name": "Ada"},
                        metadata={"demo": "true"}, idempotency_key="demo-call-1")
    call_id = placed["call_id"]
    say(f"   placed {call_id} (status {placed['call_status']}); follow it at {placed['resource_uri']}")

    step(6, "Follow its events to the analysis (wait_for_call, resource events)")

    async def progress(done: float, total: float | None, message: str | None) -> None:
        say(f"   ... {message or done}")

    waited = await client.call_tool("wait_for_call", {"call_id": call_id, "until": "analyzed", "timeout_s": 120},
                                    progress_callback=progress)
    if waited.is_error or not waited.structured_content.get("reached"):
        raise DemoFailed(f"the call did not reach its analysis: {waited.content[0].text[:300]}")
    events = await client.read_resource(f"uponai://calls/{call_id}/events")
    log = json.loads(events.contents[0].text)
    names = [e["event"] for e in (log["events"] if isinstance(log, dict) else log)]
    say(f"   webhook events, verified and stored: {' -> '.join(names)}")

    step(7, "The call and its transcript (get_call)")
    call = await tool(client, "get_call", call_id=call_id)
    say(f"   {call['call_status']}, {call['duration_ms'] / 1000:.1f} s, ended by {call['disconnection_reason']}, "
        f"cost {call['cost_cents']} cents, e2e latency p50 {call['latency']['e2e_p50_ms']} ms")
    say(f"   recording: {call['recording_url']}")
    for turn in call["untrusted"]["turns"]:
        say(f"   {turn['role']:>5}: {turn['text']}")
    for tc in call["untrusted"]["tool_calls"]:
        say(f"   tool call {tc['name']}({tc['arguments']}) -> {tc['result']}")
    say(f"   summary: {call['untrusted']['call_summary']} (sentiment {call['user_sentiment']})")
    if "Ada" not in (call["untrusted"]["transcript"] or ""):
        raise DemoFailed("the transcript does not carry the dynamic variable")
    return call_id


BATCH = ["+14155552001", "+14155552002", "+14155552003", "+14155552005", "+14155552006", "+19005550123"]


async def batch(client: Client, host: AppHost | None, shots: Path | None) -> str:
    step(8, "A batch of calls, followed to the end (create_batch_call, wait_for_batch)")
    args = {"from_number": TWILIO, "name": "demo batch", "tasks": [{"to_number": n} for n in BATCH]}
    result = await client.call_tool("create_batch_call", args)
    if result.is_error:
        raise DemoFailed(f"create_batch_call failed: {result.content[0].text}")
    created = result.structured_content
    batch_id = created["batch_id"]
    say(f"   {batch_id}: {len(created['accepted'])} accepted, {len(created['refused'])} refused")
    for r in created["refused"]:
        say(f"   refused {r['to_number']}: {r['code']}")
    async with anyio.create_task_group() as tg:
        if host is not None and shots is not None:  # the monitor follows the batch while it runs
            tg.start_soon(capture, host, shots / "batch.png", BATCH_APP, "create_batch_call", args, result)
        view = await follow_batch(client, batch_id)
    say("   " + ", ".join(f"{n} {state}" for state, n in sorted(view["counts"].items())) +
        f"; {view.get('ended')} calls ended")
    return batch_id


async def follow_batch(client: Client, batch_id: str) -> dict:
    """wait_for_batch until every call has ended, with a progress bar on stderr."""
    with Progress(len(BATCH), "batch tasks settled") as bar:
        async def progress(done: float, total: float | None, message: str | None) -> None:
            bar.set(min(int(done), bar.total), note=message)

        for _ in range(20):  # each wait returns within its timeout; a few rounds cover a slow machine
            waited = await client.call_tool("wait_for_batch", {"batch_id": batch_id, "until": "ended",
                                                                "timeout_s": 30}, progress_callback=progress)
            if waited.is_error:
                raise DemoFailed(f"wait_for_batch failed: {waited.content[0].text}")
            if waited.structured_content["finished"]:
                bar.set(bar.total)
                return waited.structured_content["batch"]
    raise DemoFailed("the batch did not finish")


async def capture(host: AppHost, path: Path, uri: str, tool_name: str, args: dict[str, Any],
                  result: CallToolResult) -> None:
    """Show `result` in the app at `uri` as an Apps host would, let it follow to the end, and save a PNG. A
    browser that fails costs the screenshot, not the demo: the calls themselves are what the demo proves."""
    html = (await host.client.read_resource(uri)).contents[0].text
    try:
        await host.show(html, tool=tool_name, arguments=args, result=result)
        await host.until("document.body.dataset.state === 'done'", within_s=120)
        await host.screenshot(path)
    except BrowserError as exc:
        say(f"   (chromium failed, no screenshot of {uri}: {exc})")
        return
    say(f"   monitor {uri} -> {path}")


async def open_monitor(stack: AsyncExitStack, client: Client, shots: Path | None) -> AppHost | None:
    """A headless Chromium showing the MCP Apps, when screenshots are wanted and a browser is installed."""
    if shots is None:
        return None
    if find_chromium() is None:
        say("   (no chromium on this machine: no screenshots of the call and batch monitors)")
        return None
    try:
        return await stack.enter_async_context(AppHost(client, width=420))
    except BrowserError as exc:
        say(f"   (chromium could not start: {exc}; no screenshots of the call and batch monitors)")
        return None


async def run(shots: Path | None) -> int:
    with tempfile.TemporaryDirectory(prefix="uponai-demo-") as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UPONAI_")}
        env.update(UPONAI_SANDBOX="1", UPONAI_SANDBOX_SPEED="10", UPONAI_DATA_DIR=data_dir,
                   UPONAI_LOG_LEVEL="WARNING")
        params = StdioServerParameters(command=sys.executable, args=["-m", "uponai_mcp", "serve"], env=env)
        say("uponai-mcp demo: starting `uponai-mcp serve` on the embedded sandbox (no phone rings, nothing is "
            "spent) and connecting an MCP client over stdio")
        try:
            with anyio.fail_after(300):
                async with Client(params) as client:
                    tools = await client.list_tools()
                    say(f"   connected; {len(tools.tools)} tools: {', '.join(sorted(t.name for t in tools.tools))}")
                    async with AsyncExitStack() as stack:
                        host = await open_monitor(stack, client, shots)
                        call_id = await walkthrough(client)
                        if host is not None and shots is not None:
                            args = {"call_id": call_id}
                            await capture(host, shots / "call.png", CALL_APP, "get_call", args,
                                          await client.call_tool("get_call", args))
                        await batch(client, host, shots)
        except DemoFailed as exc:
            say(f"\nDEMO FAILED: {exc}")
            return 1
    say("\nEverything worked.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="uponai-mcp demo", description="The guide end to end on the sandbox.")
    parser.add_argument("--screenshots", type=Path, default=Path("uponai-demo-screenshots"), metavar="DIR",
                        help="where to save screenshots of the call and batch monitors (needs chromium)")
    parser.add_argument("--no-screenshots", action="store_true", help="skip the screenshots")
    args = parser.parse_args(argv)
    return anyio.run(run, None if args.no_screenshots else args.screenshots)
