"""Thin MCP adapters, one module per concern: parse -> call a service -> return its model. Refusals are coded
by `ContractServer` (contract.py), whatever raised them."""

from mcp.server import MCPServer
from mcp.server.mcpserver.tools.base import Tool

from uponai_mcp.tools import agent_tests, batches, calls, evals, numbers, outreach, pacing, waiting

# The toolset of each tool module (UPONAI_TOOLSETS picks which ones tools/list shows).
TOOLSET_OF_MODULE = {
    "calls": "calls", "numbers": "calls", "pacing": "calls", "waiting": "calls", "batches": "batches",
    "outreach": "outreach", "evals": "evals", "agent_tests": "evals",
}


def toolset_of(tool: Tool) -> str:
    return TOOLSET_OF_MODULE[tool.fn.__module__.rsplit(".", 1)[-1]]


def register_all(mcp: MCPServer) -> None:
    """Register every tool. Toolsets and read-only mode are applied afterwards by `ContractServer.seal` (it
    withholds the tools they leave out, and answers a coded refusal when one is called)."""
    calls.register(mcp)
    numbers.register(mcp)
    pacing.register(mcp)
    waiting.register(mcp)
    batches.register(mcp)
    evals.register(mcp)
    agent_tests.register(mcp)
    outreach.register(mcp)
