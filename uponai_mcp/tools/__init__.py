"""Thin MCP adapters, one module per concern: parse -> call a service -> map refusals to ToolError."""

from mcp.server import MCPServer

from uponai_mcp.tools import batches, calls, numbers, pacing, waiting


def register_all(mcp: MCPServer, *, read_only: bool) -> None:
    """Register every tool; in read-only mode the mutating ones are not registered at all."""
    calls.register(mcp, read_only=read_only)
    numbers.register(mcp, read_only=read_only)
    pacing.register(mcp, read_only=read_only)
    waiting.register(mcp, read_only=read_only)
    batches.register(mcp, read_only=read_only)
