"""Injected failures: of API requests (/_sandbox/faults) and of webhook deliveries (/_sandbox/webhook-faults)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import ApiError
from .parsing import is_int

REQUEST_FAULTS = ("429", "500", "503", "hang", "hang_after_create")


@dataclass
class RequestFault:
    kind: str
    remaining: int
    path_prefix: str | None = None
    retry_after_s: int = 1
    hang_s: float = 120.0


class RequestFaults:
    def __init__(self) -> None:
        self.queue: list[RequestFault] = []

    def add(self, body: dict[str, Any]) -> RequestFault:
        kind = str(body.get("kind", ""))
        if kind not in REQUEST_FAULTS:
            raise ApiError(400, f"kind must be one of {', '.join(REQUEST_FAULTS)}.")
        count = body.get("count", 1)
        if not is_int(count) or count < 0:
            raise ApiError(400, "count must be a non-negative integer.")
        prefix = body.get("path_prefix")
        if prefix is not None and (not isinstance(prefix, str) or not prefix.startswith("/")):
            raise ApiError(400, "path_prefix must be a path starting with '/'.")
        retry_after = body.get("retry_after_s", 1)
        if not is_int(retry_after) or retry_after < 0:
            raise ApiError(400, "retry_after_s must be a non-negative integer.")
        hang_s = body.get("hang_s", 120.0)
        if isinstance(hang_s, bool) or not isinstance(hang_s, int | float) or not 0 <= hang_s <= 3600:
            raise ApiError(400, "hang_s must be a number of seconds between 0 and 3600.")
        fault = RequestFault(kind, count, prefix, retry_after, float(hang_s))
        if count:
            self.queue.append(fault)
        return fault

    def take(self, path: str) -> RequestFault | None:
        """Consume one use of the oldest fault matching this path."""
        for fault in self.queue:
            if fault.path_prefix is None or path.startswith(fault.path_prefix):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.queue.remove(fault)
                return fault
        return None

    def describe(self) -> list[dict[str, Any]]:
        return [asdict(f) for f in self.queue]


@dataclass
class Delivery:
    """What happens to one webhook delivery."""

    drop: bool = False
    duplicate: bool = False
    delay_s: float = 0.0
    reorder: bool = False


@dataclass
class WebhookFaults:
    drop: int = 0  # the next N deliveries are not sent at all
    duplicate: int = 0  # the next N deliveries are sent twice
    delay_ms: int = 0  # the next `count` deliveries wait this long (real time) before sending
    delays_left: int = 0
    reorders_left: int = 0  # the next `count` non-final events are held back until the call's next event

    def set(self, body: dict[str, Any]) -> None:
        for key in ("drop", "duplicate", "delay_ms", "count"):
            v = body.get(key, 0)
            if not is_int(v) or v < 0:
                raise ApiError(400, f"{key} must be a non-negative integer.")
        if not isinstance(body.get("reorder", False), bool):
            raise ApiError(400, "reorder must be a boolean.")
        count = body.get("count", 1)
        self.drop, self.duplicate, self.delay_ms = body.get("drop", 0), body.get("duplicate", 0), body.get("delay_ms", 0)
        self.delays_left = count if self.delay_ms else 0
        self.reorders_left = count if body.get("reorder", False) else 0

    def take(self, final: bool) -> Delivery:
        d = Delivery()
        if self.delays_left > 0:
            self.delays_left -= 1
            d.delay_s = self.delay_ms / 1000
        if self.drop > 0:
            self.drop -= 1
            d.drop = True
            return d
        if self.duplicate > 0:
            self.duplicate -= 1
            d.duplicate = True
        if not final and self.reorders_left > 0:
            self.reorders_left -= 1
            d.reorder = True
        return d

    def describe(self) -> dict[str, Any]:
        return asdict(self)
