"""Settings of one sandbox run (CLI flags map 1:1 onto these fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SCOPES = ("twilio", "telnyx", "custom")


def _default_cps() -> dict[str, float]:
    # The platform's documented defaults: 1 call per second for every provider until raised.
    return {"twilio": 1, "telnyx": 1, "custom": 1}


@dataclass
class SandboxConfig:
    api_key: str = "sk_sandbox"
    speed: float = 1.0  # clock factor: lifecycle durations are divided by speed
    seed: int = 0
    webhook_url: str | None = None
    call_failed_events: bool = True  # False imitates Retell, which never sends call_failed
    fixture: Path | None = None  # JSON file replacing the seed data
    cps: dict[str, float] = field(default_factory=_default_cps)  # enforced CPS per provider scope
    concurrency_limit: int = 20

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError("speed must be > 0")
        if self.concurrency_limit < 0:
            raise ValueError("concurrency_limit must be >= 0")
        cps = _default_cps()
        for scope, value in self.cps.items():
            if scope not in SCOPES:
                raise ValueError(f"unknown CPS scope {scope!r}; use one of {', '.join(SCOPES)}")
            if not value > 0:
                raise ValueError(f"cps for {scope} must be > 0")
            cps[scope] = value
        self.cps = cps
