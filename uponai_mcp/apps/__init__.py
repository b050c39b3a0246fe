"""MCP Apps: the call and batch monitors as `ui://` resources, bound to the tools that show those objects.

Uses the SDK's `mcp.server.apps` extension (`text/html;profile=mcp-app`, `_meta.ui.resourceUri`). The tools
themselves are registered by `uponai_mcp.tools`; `register` runs after them and only stamps the binding on
the ones present, so their text and structured results are unchanged for hosts without Apps.
"""

from __future__ import annotations

from mcp.server import MCPServer
from mcp.server.apps import Apps, ResourceCsp

from uponai_mcp.apps.assets import MEDIA_SOURCES, app_html

CALL_APP = "ui://uponai/call"
BATCH_APP = "ui://uponai/batch"

# tool name -> the app that renders its result; tools not registered (read-only mode, evals not built yet)
# are skipped.
BINDINGS: dict[str, str] = {
    "get_call": CALL_APP, "wait_for_call": CALL_APP, "create_phone_call": CALL_APP, "confirm_call": CALL_APP,
    "create_batch_call": BATCH_APP, "confirm_batch": BATCH_APP, "get_batch": BATCH_APP, "list_batches": BATCH_APP,
    "wait_for_batch": BATCH_APP, "cancel_batch": BATCH_APP, "run_eval": BATCH_APP, "get_eval_run": BATCH_APP,
    "list_eval_runs": BATCH_APP,
}


def extension() -> Apps:
    """The Apps extension with both monitors as resources (no tools: those already exist)."""
    apps = Apps()
    csp = ResourceCsp(connect_domains=[], resource_domains=list(MEDIA_SOURCES))
    apps.add_html_resource(CALL_APP, app_html("call"), name="call_monitor", title="Call monitor",
                           description="A call's timeline, live status, transcript with tool calls, latency, "
                           "cost, analysis and recording.", csp=csp, prefers_border=True)
    apps.add_html_resource(BATCH_APP, app_html("batch"), name="batch_monitor", title="Batch monitor",
                           description="A batch's progress per task state, a chart over time, and the refused "
                           "and failed tasks with their reasons.", csp=csp, prefers_border=True)
    return apps


def register(mcp: MCPServer) -> list[str]:
    """Add the extension and bind the registered tools to their app. Returns the bound tool names.

    MCPServer applies extensions in its constructor and has no public getter for a registered tool, so this
    goes through `_apply_extension` and the tool manager; tests/test_apps.py checks the wire result
    (capability, resources, `_meta.ui.resourceUri`) so an SDK change fails loudly rather than silently."""
    mcp._apply_extension(extension())  # noqa: SLF001 - see the docstring
    bound = []
    for name, uri in BINDINGS.items():
        tool = mcp._tool_manager.get_tool(name)  # noqa: SLF001
        if tool is None:
            continue
        meta = dict(tool.meta or {})
        meta["ui"] = {**meta.get("ui", {}), "resourceUri": uri}
        tool.meta = meta
        bound.append(name)
    return bound
