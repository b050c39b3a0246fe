"""`uponai-mcp sandbox ...`: run the sandbox in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from uponai_mcp.tcp import bind_tcp

from .app import create_app
from .config import SCOPES, SandboxConfig
from .server import make_server, url_of

log = logging.getLogger("uponai_mcp.sandbox")


def _cps(text: str) -> dict[str, float]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        scope, _, value = part.partition("=")
        if scope not in SCOPES:
            raise argparse.ArgumentTypeError(f"unknown CPS scope {scope!r}; use {', '.join(SCOPES)}")
        try:
            out[scope] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"CPS for {scope} must be a number, got {value!r}") from None
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="uponai-mcp sandbox",
                                description="A local simulation of the UponAI voice platform (both API dialects).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--speed", type=float, default=1.0, help="clock factor: 50 makes every call 50x faster")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--api-key", default="sk_sandbox")
    p.add_argument("--webhook-url", default=None)
    p.add_argument("--fixture", type=Path, default=None, help="JSON file replacing the seeded account")
    p.add_argument("--cps", type=_cps, default={}, help="e.g. twilio=5,telnyx=16,custom=1")
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--no-call-failed", action="store_true", help="never send call_failed (like Retell)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: report, don't unwind the caller
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = SandboxConfig(api_key=args.api_key, speed=args.speed, seed=args.seed, webhook_url=args.webhook_url,
                               call_failed_events=not args.no_call_failed, fixture=args.fixture,
                               cps=args.cps, concurrency_limit=args.concurrency)
        app = create_app(config)
        sock = bind_tcp(args.host, args.port, backlog=1024)
    except (ValueError, OSError) as exc:
        print(f"uponai-mcp sandbox: {exc}", file=sys.stderr)
        return 2
    url = url_of(sock)
    engine = app.state.engine
    engine.base_url = url
    server = make_server(app, handle_signals=True, on_shutdown=engine.release_hangs, log_level=args.log_level)
    print(f"UponAI sandbox listening on {url} (API key {config.api_key!r}, speed {config.speed:g}x, "
          f"seed {config.seed}); Ctrl-C stops it", file=sys.stderr, flush=True)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    except KeyboardInterrupt:
        pass
    return 0
