"""Settings from the environment (`UPONAI_*`), read lazily: nothing here runs at import.

`Settings.from_env()` never raises for a bad value; it records the problem in `errors` so the
server can still answer `tools/list` and fail inside the tool call with a clear message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

# The 15 destination countries of platform-bought numbers (reference uponai-api.md §6).
PLATFORM_COUNTRIES: tuple[str, ...] = (
    "US", "IN", "AU", "DE", "ES", "GB", "MX", "FR", "JP", "CA", "IT", "ID", "PH", "MY", "TH",
)
DEFAULT_BASE_URL = "https://api.upon-ai.com"
SANDBOX_API_KEY = "sk_sandbox"

Dialect = Literal["uponai", "retell"]
ConfirmPolicy = Literal["always", "international", "never"]


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "uponai-mcp"


TOOLSETS = ("calls", "batches", "outreach", "evals")


class Settings(BaseModel):
    """Everything configurable. Build with `Settings.from_env()`; tests construct it directly."""

    api_key: str | None = Field(default=None, repr=False)  # secrets stay out of repr() and logs
    base_url: str = DEFAULT_BASE_URL
    dialect: Dialect = "uponai"
    workspace_id: int | None = None
    account_sid: str | None = None
    sandbox: bool = True
    sandbox_speed: float = 1.0
    sandbox_seed: int = 0
    data_dir: Path = Field(default_factory=default_data_dir)
    confirm: ConfirmPolicy | None = None  # None: `always` on a real platform, `never` in sandbox mode
    calling_window: str | None = None  # None: 08:00-21:00 on a real platform, off in sandbox mode
    allowed_countries: tuple[str, ...] | None = None  # operator narrowing, ISO alpha-2
    imported_countries: tuple[str, ...] = ("US", "CA")  # allowlist for imported (custom) numbers
    platform_countries: tuple[str, ...] = PLATFORM_COUNTRIES
    read_only: bool = False
    # Which groups of tools (TOOLSETS; tools/__init__.py maps modules to them) tools/list shows; evaluations are
    # opt-in so the default list stays small for the model (bench/tool_schemas.py).
    toolsets: tuple[str, ...] = ("calls", "batches", "outreach")
    max_attempts_per_destination_24h: int = 3
    max_calls_per_hour: int = 60
    max_calls_per_day: int = 500
    pacing_horizon_s: float = 30.0
    # Outreach (issue 12): spend cap in cents per UTC day (None: no cap) and the estimate per call without a
    # reported cost; opt-out detection and extra phrases.
    max_spend_per_day_cents: int | None = None
    spend_estimate_cents: int = 50
    opt_out_detection: bool = True
    opt_out_phrases: tuple[str, ...] = ()
    # A call with no terminal event this long after its maximum duration (agent_override's
    # max_call_duration_ms, else max_call_duration_s) is reconciled, then marked stale.
    max_call_duration_s: float = 3600.0
    stale_grace_s: float = 900.0
    # PostgreSQL (postgresql://user:pass@host/db) for several replicas; None: the SQLite file in data_dir.
    database_url: str | None = Field(default=None, repr=False)
    webhook_key: str | None = Field(default=None, repr=False)  # None: the API key signs webhooks
    webhook_listen: str | None = None  # host:port for the webhook receiver under stdio
    mcp_tokens: tuple[str, ...] = Field(default=(), repr=False)
    # streamable HTTP: Host names (and extra browser origins) accepted besides loopback; see http_app.
    mcp_allowed_hosts: tuple[str, ...] = ()
    mcp_allowed_origins: tuple[str, ...] = ()
    # 2025-era streamable HTTP sessions (2026-07-28 clients keep none): closed after this long idle, and at most
    # this many at once (one more gets 503), so a replica's memory stays bounded.
    mcp_session_idle_s: float = 600.0
    mcp_max_sessions: int = 1000
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    create_timeout_s: float = 60.0
    errors: tuple[str, ...] = ()  # settings that could not be read, reported inside tool calls

    @property
    def effective_api_key(self) -> str:
        return self.api_key or SANDBOX_API_KEY

    @property
    def effective_webhook_key(self) -> str:
        return self.webhook_key or self.effective_api_key

    @property
    def effective_confirm(self) -> ConfirmPolicy:
        return self.confirm or ("never" if self.sandbox else "always")

    @property
    def effective_calling_window(self) -> str:
        return self.calling_window or ("off" if self.sandbox else "08:00-21:00")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        errors: list[str] = []
        values: dict[str, object] = {}

        def get(name: str) -> str | None:
            v = env.get(name)
            return v.strip() if v and v.strip() else None

        def parse(name: str, key: str, conv) -> None:
            raw = get(name)
            if raw is None:
                return
            try:
                values[key] = conv(raw)
            except (ValueError, TypeError) as exc:
                errors.append(f"{name}={raw!r} is not valid: {exc}")

        def flag(raw: str) -> bool:
            low = raw.lower()
            if low in {"1", "true", "yes", "on"}:
                return True
            if low in {"0", "false", "no", "off"}:
                return False
            raise ValueError("use 1/0, true/false, yes/no or on/off")

        def toolset_names(raw: str) -> tuple[str, ...]:
            names = tuple(n.strip().lower() for n in raw.split(",") if n.strip())
            if names == ("all",):
                return TOOLSETS
            unknown = [n for n in names if n not in TOOLSETS]
            if unknown or not names:
                raise ValueError(f"use all or a comma-separated list of {', '.join(TOOLSETS)}")
            return names

        def choice(options: tuple[str, ...]):
            def conv(raw: str) -> str:
                if raw.lower() not in options:
                    raise ValueError(f"use one of {', '.join(options)}")
                return raw.lower()

            return conv

        def countries(raw: str) -> tuple[str, ...]:
            codes = tuple(c.strip().upper() for c in raw.split(",") if c.strip())
            bad = [c for c in codes if len(c) != 2 or not c.isalpha()]
            if bad:
                raise ValueError(f"not ISO 3166 alpha-2 codes: {', '.join(bad)}")
            return codes

        def positive(conv):
            def check(raw: str):
                v = conv(raw)
                if v <= 0:
                    raise ValueError("must be positive")
                return v

            return check

        api_key = get("UPONAI_API_KEY")
        values["api_key"] = api_key
        sandbox = api_key is None
        if get("UPONAI_SANDBOX") is not None:
            try:
                sandbox = flag(get("UPONAI_SANDBOX")) or api_key is None
            except ValueError as exc:
                errors.append(f"UPONAI_SANDBOX is not valid: {exc}")
        values["sandbox"] = sandbox
        parse("UPONAI_BASE_URL", "base_url", str)
        parse("UPONAI_DIALECT", "dialect", choice(("uponai", "retell")))
        parse("UPONAI_WORKSPACE_ID", "workspace_id", int)
        parse("UPONAI_ACCOUNT_SID", "account_sid", str)
        parse("UPONAI_DATA_DIR", "data_dir", lambda r: Path(r).expanduser())
        parse("UPONAI_SANDBOX_SPEED", "sandbox_speed", positive(float))
        parse("UPONAI_SANDBOX_SEED", "sandbox_seed", int)
        parse("UPONAI_CONFIRM", "confirm", choice(("always", "international", "never")))
        parse("UPONAI_CALLING_WINDOW", "calling_window", str)
        parse("UPONAI_ALLOWED_COUNTRIES", "allowed_countries", countries)
        parse("UPONAI_IMPORTED_COUNTRIES", "imported_countries", countries)
        parse("UPONAI_READ_ONLY", "read_only", flag)
        parse("UPONAI_TOOLSETS", "toolsets", toolset_names)
        parse("UPONAI_MAX_ATTEMPTS_PER_DESTINATION", "max_attempts_per_destination_24h", positive(int))
        parse("UPONAI_MAX_CALLS_PER_HOUR", "max_calls_per_hour", positive(int))
        parse("UPONAI_MAX_CALLS_PER_DAY", "max_calls_per_day", positive(int))
        parse("UPONAI_PACING_HORIZON_S", "pacing_horizon_s", positive(float))
        parse("UPONAI_MAX_SPEND_PER_DAY", "max_spend_per_day_cents", positive(int))
        parse("UPONAI_SPEND_ESTIMATE_CENTS", "spend_estimate_cents", lambda r: max(0, int(r)))
        parse("UPONAI_OPT_OUT_DETECTION", "opt_out_detection", flag)
        parse("UPONAI_MAX_CALL_DURATION_S", "max_call_duration_s", positive(float))
        parse("UPONAI_STALE_GRACE_S", "stale_grace_s", positive(float))
        parse("UPONAI_OPT_OUT_PHRASES", "opt_out_phrases", lambda r: tuple(p.strip() for p in r.split("|") if p.strip()))
        database_url = get("UPONAI_DATABASE_URL")  # not through parse(): an error must not echo a password
        if database_url is not None:
            if database_url.startswith(("postgresql://", "postgres://")):
                values["database_url"] = database_url
            else:
                errors.append("UPONAI_DATABASE_URL is not valid: use a postgresql:// URL (unset it for the "
                              "embedded SQLite file)")
        parse("UPONAI_WEBHOOK_KEY", "webhook_key", str)
        parse("UPONAI_WEBHOOK_LISTEN", "webhook_listen", str)
        parse("UPONAI_MCP_TOKENS", "mcp_tokens", lambda r: tuple(t.strip() for t in r.split(",") if t.strip()))
        parse("UPONAI_MCP_ALLOWED_HOSTS", "mcp_allowed_hosts",
              lambda r: tuple(h.strip() for h in r.split(",") if h.strip()))
        parse("UPONAI_MCP_SESSION_IDLE_S", "mcp_session_idle_s", positive(float))
        parse("UPONAI_MCP_MAX_SESSIONS", "mcp_max_sessions", positive(int))
        parse("UPONAI_MCP_ALLOWED_ORIGINS", "mcp_allowed_origins",
              lambda r: tuple(o.strip() for o in r.split(",") if o.strip()))
        values["errors"] = tuple(errors)
        return cls(**values)
