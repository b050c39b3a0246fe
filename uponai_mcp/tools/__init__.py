"""Thin MCP adapters, one module per concern: parse -> call a service -> map refusals to ToolError."""

from mcp.server import MCPServer

from uponai_mcp.tools import agent_tests, batches, calls, evals, numbers, outreach, pacing, waiting


def register_all(mcp: MCPServer) -> None:
    """Register every tool. Read-only mode is applied afterwards by `ContractServer.seal` (it withholds
    every tool not annotated read-only, and answers `read_only` when one is called)."""
    calls.register(mcp)
    numbers.register(mcp)
    pacing.register(mcp)
    waiting.register(mcp)
    batches.register(mcp)
    evals.register(mcp)
    agent_tests.register(mcp)
    outreach.register(mcp)
