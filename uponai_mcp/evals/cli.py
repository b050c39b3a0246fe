"""`uponai-mcp eval SUITE`: check, run, score and report an evaluation suite from a terminal or CI.

Exit codes: 0 every item passed, 1 an item failed (or timed out, or was refused at dial time), 2 the suite
or the configuration is invalid (nothing was dialled). Progress and messages go to stderr, the summary table
to stdout. Without UPONAI_API_KEY the run uses an embedded sandbox (its own loopback server and a throwaway
ledger), which a fixture can give per-version behaviour.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="uponai-mcp eval", description="Run an agent evaluation suite.")
    p.add_argument("suite", nargs="?", help="the suite file (YAML or JSON); optional with --resume")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--json", metavar="FILE", help="write a JSON report (every result and the aggregates)")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    p.add_argument("--repeat", type=int, metavar="N", help="run each case N times (overrides the suite)")
    p.add_argument("--seed", type=int, metavar="N", help="the embedded sandbox's seed (same seed, same report)")
    p.add_argument("--resume", metavar="RUN_ID", help="finish an interrupted run without dialling anything twice")
    p.add_argument("--yes", action="store_true", help="approve the calls when the confirmation policy asks")
    p.add_argument("--fixture", metavar="FILE", help="embedded sandbox: seed data with per-version behaviour")
    p.add_argument("--speed", type=float, metavar="X", help="embedded sandbox: clock factor (default 50)")
    p.add_argument("--cps", type=int, metavar="N", help="calls per second for the from-number's provider")
    p.add_argument("--check", action="store_true", help="only validate the suite against the guardrails")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if not args.suite and not args.resume:
        print("uponai-mcp eval: give a suite file, or --resume RUN_ID", file=sys.stderr)
        return EXIT_INVALID
    if args.repeat is not None and args.repeat < 1:
        print("uponai-mcp eval: --repeat must be at least 1", file=sys.stderr)
        return EXIT_INVALID
    if args.fixture:
        args.fixture = os.path.abspath(args.fixture)  # the sandbox child may not share our working directory
    level = os.environ.get("UPONAI_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level, logging.WARNING),
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return anyio.run(_main, args)
    except KeyboardInterrupt:
        print("uponai-mcp eval: interrupted; resume with --resume RUN_ID (printed at the start)", file=sys.stderr)
        return 130


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _main(args: argparse.Namespace) -> int:
    from uponai_mcp.config import Settings
    from uponai_mcp.evals import plan
    from uponai_mcp.evals.suite import SuiteInvalid, load_file

    suite = None
    if args.suite:
        try:
            suite = load_file(args.suite)
        except SuiteInvalid as exc:
            _err(f"uponai-mcp eval: the suite is invalid ({len(exc.problems)} problem(s)); nothing was dialled:")
            for p in exc.problems:
                _err(f"  {p}")
            return EXIT_INVALID
    settings = Settings.from_env()
    if settings.errors:
        _err("uponai-mcp eval: configuration errors: " + "; ".join(settings.errors))
        return EXIT_INVALID
    if settings.sandbox and args.resume:
        _err("uponai-mcp eval: --resume needs a platform that outlives this process (UPONAI_API_KEY and "
             "UPONAI_BASE_URL, e.g. a separate `uponai-mcp sandbox`); the embedded sandbox starts empty each run.")
        return EXIT_INVALID
    async with AsyncExitStack() as stack:
        stage = None
        if settings.sandbox:
            assert suite is not None
            settings, stage = await _embedded(stack, settings, args, plan.expand(suite, repeat=args.repeat))
        return await _run(stack, settings, stage, args, suite)
    return EXIT_INVALID  # pragma: no cover (the block always returns)


async def _embedded(stack: AsyncExitStack, settings: Any, args: argparse.Namespace, items: list) -> tuple[Any, Any]:
    """Start a sandbox child process for this run and point the settings at it; budgets are sized to the run."""
    from collections import Counter

    from uponai_mcp.config import SANDBOX_API_KEY
    from uponai_mcp.evals.stage import sandbox_stage
    from uponai_mcp.sandbox import SandboxConfig
    from uponai_mcp.sandbox.config import SCOPES
    from uponai_mcp.sandbox.seed import ACCOUNT_SID, WORKSPACE_ID

    cps = {scope: max(args.cps, 1) for scope in SCOPES} if args.cps else {}
    config = SandboxConfig(speed=args.speed or (settings.sandbox_speed if settings.sandbox_speed != 1 else 50),
                           seed=args.seed if args.seed is not None else settings.sandbox_seed,
                           fixture=Path(args.fixture) if args.fixture else None, cps=cps,
                           concurrency_limit=max(20, 2 * len(items), 20 * (args.cps or 1)))
    stage = await stack.enter_async_context(sandbox_stage(config))
    data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="uponai-eval-")))
    per_dest = max(Counter(i.request.to_number for i in items).values(), default=1)
    settings = settings.model_copy(update={
        "api_key": SANDBOX_API_KEY, "base_url": stage.url, "sandbox": False, "workspace_id": WORKSPACE_ID,
        "account_sid": ACCOUNT_SID, "data_dir": data_dir, "confirm": "never", "calling_window": "off",
        "webhook_listen": "127.0.0.1:0",
        "max_attempts_per_destination_24h": max(settings.max_attempts_per_destination_24h, per_dest),
        "max_calls_per_hour": max(settings.max_calls_per_hour, len(items)),
        "max_calls_per_day": max(settings.max_calls_per_day, len(items)),
    })
    _err(f"uponai-mcp eval: no UPONAI_API_KEY: running on a sandbox at {stage.url} (speed {config.speed:g}, "
         f"seed {config.seed}); no phone rings and nothing is spent.")
    return settings, stage


async def _run(stack: AsyncExitStack, settings: Any, stage: Any, args: argparse.Namespace, suite: Any) -> int:
    from uponai_mcp.evals import plan
    from uponai_mcp.evals.report import table
    from uponai_mcp.evals.service import EvalService
    from uponai_mcp.progress import Progress
    from uponai_mcp.services import build_services

    hub = await stack.enter_async_context(build_services(settings))
    if hub.services is None:
        _err(f"uponai-mcp eval: not configured: {hub.failure.message if hub.failure else 'unknown'}")
        return EXIT_INVALID
    svc = hub.services
    if stage is not None and svc.webhook_url:
        await stage.send_webhooks_to(svc.webhook_url)  # the sandbox signs and sends call events to us
    service = EvalService(svc.settings, svc.dialer, svc.store, feed=svc.feed, wall=svc.wall)
    if args.resume:
        from uponai_mcp.errors import Refused

        try:
            row, suite, items = await service.load_run(args.resume)
        except Refused as refusal:
            _err(f"uponai-mcp eval: {refusal}")
            return EXIT_INVALID
        file, run_id = row.options.get("file") or "<stored suite>", args.resume
    else:
        items, file, run_id = plan.expand(suite, repeat=args.repeat), args.suite, None
    checked = await service.check(suite, items, file=file, run_id=run_id)
    if args.cps and not checked.problems:
        problem = await _set_cps(svc, checked.scope, args.cps)
        if problem:
            _err(f"uponai-mcp eval: --cps {args.cps}: {problem}")
            return EXIT_INVALID
    if checked.problems:
        _err(f"uponai-mcp eval: {len(checked.problems)} problem(s) before dialling; nothing was dialled:")
        for p in checked.problems:
            _err(f"  {p}")
        return EXIT_INVALID
    if args.check:
        _err(f"uponai-mcp eval: {file}: {len(items)} calls, every check passed.")
        return EXIT_OK
    if checked.needs_confirmation and not args.yes:
        _err(f"uponai-mcp eval: the confirmation policy wants a person to approve these {len(items)} calls "
             f"({checked.summary}, ...); every call rings a real phone and costs money. Re-run with --yes.")
        return EXIT_INVALID
    if run_id is None:
        run_id = await service.create_run(suite, repeat=args.repeat, seed=args.seed, file=file, total=len(items))
    _err(f"uponai-mcp eval: run {run_id}: {len(items)} calls ({len(suite.cases)} cases x repeats x "
         f"{len(suite.variant_list())} variant(s)); resume with --resume {run_id}")
    with Progress(len(items), f"eval {suite.name}") as bar:
        async def progress(done: int, total: int, note: str) -> None:
            bar.set(done, note=note)

        report = await service.execute(run_id, suite, items, report=progress)
    write_reports(report, json_path=args.json, junit_path=args.junit, html_path=args.html)
    print(table(report.summary), flush=True)
    return EXIT_OK if report.summary.ok else EXIT_FAILED


async def _set_cps(svc: Any, scope: str | None, cps: int) -> str | None:
    """Pace the from-number's provider scope at `cps` (our pacer: CPS has no platform API). Custom telephony
    needs the platform's concurrency limit for anything above 1 CPS; a Twilio raise waits its 10 minutes."""
    from uponai_mcp.pacing import PacingError

    if scope is None:
        return "the from-number's provider is not known"
    limit = None
    if scope == "custom":
        try:
            limit = (await svc.api.get_concurrency()).concurrency_limit
        except Exception as exc:  # noqa: BLE001 - any failure means the limit is unknown
            return f"the platform's concurrency limit could not be read ({exc})"
    try:
        svc.pacer.set_cps(scope, cps, concurrency_limit=limit)
    except PacingError as exc:
        return str(exc)
    return None


def write_reports(report: Any, *, json_path: str | None, junit_path: str | None, html_path: str | None) -> None:
    from uponai_mcp.evals import html, junit

    if json_path:
        Path(json_path).write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    if junit_path:
        Path(junit_path).write_text(junit.render(report), encoding="utf-8")
    if html_path:
        Path(html_path).write_text(html.render(report), encoding="utf-8")
