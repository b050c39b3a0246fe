"""A raw JSON-RPC peer over a real server process's stdin/stdout that keeps every byte it reads.

Used by the stdio hygiene test (each stdout line must be a JSON-RPC message), the secrets test (grep all
captured output) and the packaging test (the installed console script answers `tools/list`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process, TaskGroup

PROTOCOL = "2025-11-25"


class StdioPeer:
    def __init__(self, proc: Process) -> None:
        self.proc = proc
        self.stdout = bytearray()  # every byte the server wrote to stdout, in order
        self.stderr = bytearray()
        self.messages: list[dict[str, Any]] = []
        self.bad_lines: list[bytes] = []  # stdout lines that are not JSON-RPC messages
        self._arrived = anyio.Event()
        self._next_id = 0
        self.eof = False

    async def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        pending = b""
        async for chunk in self.proc.stdout:
            self.stdout += chunk
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._take(line)
        if pending:
            self.bad_lines.append(pending)  # a final line without its newline
        self.eof = True
        self._wake()

    def _take(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            self.bad_lines.append(line)
            return
        if not (isinstance(message, dict) and message.get("jsonrpc") == "2.0"
                and ("method" in message or ("id" in message and ("result" in message or "error" in message)))):
            self.bad_lines.append(line)
            return
        self.messages.append(message)
        self._wake()

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = anyio.Event()

    async def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for chunk in self.proc.stderr:
            self.stderr += chunk

    async def send(self, message: Mapping[str, Any]) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send((json.dumps(message) + "\n").encode())

    async def request(self, method: str, params: Mapping[str, Any] | None = None, *,
                      within: float = 60) -> dict[str, Any]:
        """Send a request; return its response (`result` or `error`)."""
        self._next_id += 1
        rid = self._next_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = dict(params)
        await self.send(message)
        with anyio.fail_after(within):
            while True:
                for m in self.messages:
                    if m.get("id") == rid and "method" not in m:
                        return m
                if self.eof:
                    raise AssertionError(f"stdout closed before the answer to {method}: "
                                         f"{bytes(self.stderr).decode(errors='replace')[-2000:]}")
                await self._arrived.wait()

    async def initialize(self) -> dict[str, Any]:
        response = await self.request("initialize", {
            "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "tests", "version": "1"}})
        assert "result" in response, response
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return response["result"]

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None, *,
                        within: float = 60) -> dict[str, Any]:
        return await self.request("tools/call", {"name": name, "arguments": dict(arguments or {})}, within=within)


@asynccontextmanager
async def stdio_peer(cmd: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None,
                     exit_timeout: float = 30) -> AsyncIterator[StdioPeer]:
    """Start `cmd`, yield a peer; on exit close stdin, wait for the process and read stdout to EOF."""
    proc = await anyio.open_process(list(cmd), env=dict(env), cwd=cwd)
    peer = StdioPeer(proc)
    tg: TaskGroup
    async with anyio.create_task_group() as tg:
        tg.start_soon(peer._pump_stdout)
        tg.start_soon(peer._pump_stderr)
        try:
            yield peer
        finally:
            with anyio.CancelScope(shield=True):
                if proc.stdin is not None:
                    await proc.stdin.aclose()
                try:
                    with anyio.fail_after(exit_timeout):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
                    raise
