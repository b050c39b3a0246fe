"""Process entry: `uponai-mcp serve | sandbox | demo`. Only protocol bytes ever reach stdout."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def _serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="uponai-mcp serve", description="Run the MCP server.")
    parser.add_argument("--read-only", action="store_true", help="leave the mutating tools out of tools/list")
    parser.add_argument("--transport", choices=("stdio", "streamable-http"), default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed on stderr)")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="HOST",
                        help="streamable-http: a Host name clients use besides loopback (repeatable; also "
                             "UPONAI_MCP_ALLOWED_HOSTS)")
    parser.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN",
                        help="streamable-http: an extra browser Origin to accept (repeatable; also "
                             "UPONAI_MCP_ALLOWED_ORIGINS)")
    args = parser.parse_args(argv)
    level = os.environ.get("UPONAI_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level, logging.INFO),
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns everything else

    from uponai_mcp.config import Settings
    from uponai_mcp.server import create_server

    settings = Settings.from_env()
    if args.read_only:
        settings = settings.model_copy(update={"read_only": True})
    if args.transport == "streamable-http":
        from uponai_mcp.http_app import HttpOptions, serve

        return serve(settings, HttpOptions(host=args.host, port=args.port, allowed_hosts=tuple(args.allowed_host),
                                           allowed_origins=tuple(args.allowed_origin)))
    create_server(settings).run("stdio")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and not argv[0].startswith("-") else "serve"
    if command == "serve":
        return _serve(argv)
    if command == "sandbox":
        from uponai_mcp.sandbox import main as sandbox_main

        return sandbox_main(argv)
    if command == "eval":
        from uponai_mcp.evals.cli import main as eval_main

        return eval_main(argv)
    if command == "demo":
        from uponai_mcp.demo import main as demo_main

        return demo_main(argv)
    print(f"uponai-mcp: unknown command {command!r}; use serve, sandbox, eval or demo", file=sys.stderr)
    return 2
