"""A local, deterministic simulation of the UponAI voice platform (both API dialects, webhooks, limits).

A separate program: it imports only `uponai_mcp.models` and `uponai_mcp.signature` from the package.
"""

from .app import create_app
from .cli import main
from .config import SandboxConfig
from .server import RunningSandbox, running_sandbox

__all__ = ["RunningSandbox", "SandboxConfig", "create_app", "main", "running_sandbox"]
