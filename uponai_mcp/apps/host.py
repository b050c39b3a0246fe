"""Show an app the way an MCP Apps host does: a sandboxed frame in headless Chromium, fed a real tool
result, with the app's own tools/call and resources/read answered by a real MCP client.

`async with AppHost(client) as host: await host.show(html, tool=..., arguments=..., result=...)`, then
`await host.until("document.body.dataset.state === 'done'")`, `await host.query(js)`, `await host.screenshot(p)`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import anyio
from anyio import to_thread
from mcp import Client
from mcp.types import CallToolResult

from uponai_mcp.apps.assets import host_html
from uponai_mcp.apps.browser import BrowserError, Chromium


def _wire(result: Any) -> dict[str, Any]:
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


class AppHost:
    def __init__(self, client: Client, *, width: int = 480, height: int = 900, browser: Chromium | None = None):
        self.client = client
        self._own = browser is None
        self.browser = browser or Chromium(width=width, height=height)
        self._dir = tempfile.TemporaryDirectory(prefix="uponai-host-")
        self.page = Path(self._dir.name) / "host.html"
        self.page.write_text(host_html(), encoding="utf-8")
        self.frame: str | None = None
        self.served: list[str] = []  # the app's requests, "tools/call get_call", "resources/read <uri>"

    async def __aenter__(self) -> AppHost:
        if self._own:
            await to_thread.run_sync(self.browser.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._own:
            await to_thread.run_sync(self.browser.close)
        self._dir.cleanup()

    async def _js(self, expression: str, *, in_app: bool = False) -> Any:
        frame = self.frame if in_app else None
        return await to_thread.run_sync(lambda: self.browser.evaluate(expression, frame=frame))

    async def show(self, html: str, *, tool: str, arguments: dict[str, Any], result: CallToolResult,
                   theme: str = "light") -> None:
        """Load the host page, start the app in its frame, and wait for the Apps handshake to finish."""
        self.served.clear()
        await to_thread.run_sync(self.browser.navigate, self.page.as_uri())
        spec = {"html": html, "tool": tool, "arguments": arguments, "result": _wire(result), "theme": theme}
        await self._js(f"uponaiHost.start({json.dumps(spec)})")
        with anyio.fail_after(15):
            while "ui/notifications/initialized" not in (await self._js("uponaiHost.log")):  # noqa: ASYNC110
                await anyio.sleep(0.02)  # the browser is another process: polling it is the only way
        self.frame = await to_thread.run_sync(self.browser.child_frame)

    async def serve_pending(self) -> None:
        """Answer what the app asked the host for, through the MCP client."""
        for req in await self._js("uponaiHost.take()"):
            params = req.get("params") or {}
            try:
                if req["method"] == "tools/call":
                    self.served.append(f"tools/call {params.get('name')}")
                    answer = _wire(await self.client.call_tool(params["name"], params.get("arguments") or {}))
                else:
                    self.served.append(f"resources/read {params.get('uri')}")
                    answer = _wire(await self.client.read_resource(params["uri"]))
                await self._js(f"uponaiHost.answer({json.dumps(req['id'])}, {json.dumps(answer)})")
            except Exception as exc:  # the app sees a JSON-RPC error, as from a real host
                await self._js(f"uponaiHost.fail({json.dumps(req['id'])}, {json.dumps(str(exc))})")

    async def until(self, expression: str, *, within_s: float = 30) -> None:
        """Serve the app's requests until `expression` (evaluated in the app frame) is true."""
        with anyio.fail_after(within_s):
            while True:
                await self.serve_pending()
                if await self._js(f"Boolean({expression})", in_app=True):
                    return
                await anyio.sleep(0.05)

    async def query(self, expression: str) -> Any:
        """The JSON value of `expression` evaluated in the app's frame (its DOM)."""
        if self.frame is None:
            raise BrowserError("no app is shown")
        return await self._js(expression, in_app=True)

    async def resize(self, width: int, height: int | None = None) -> None:
        await to_thread.run_sync(self.browser.resize, width, height or self.browser.height)

    async def screenshot(self, path: Path) -> Path:
        await anyio.sleep(0.2)  # let the app report its new size and the host frame follow it
        return await to_thread.run_sync(self.browser.screenshot, path)
