"""Process entry: `uponai-mcp serve | sandbox | demo`. Nothing is printed to stdout but protocol."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "serve"
    if command == "sandbox":
        from uponai_mcp.sandbox import main as sandbox_main

        return sandbox_main(argv)
    print(f"uponai-mcp: unknown command {command!r}; use serve, sandbox or demo", file=sys.stderr)
    return 2
