"""uponai-mcp: an MCP server for placing and following outbound AI phone calls through UponAI."""

__version__ = "0.1.0"
