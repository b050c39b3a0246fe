"""Retry classes and delays (reliability.md §3.5).

Classes: (a) *not executed* (connection never established, 429) -> retry for every request;
(b) *ambiguous* (timeout or lost connection after sending, 5xx) -> retry only idempotent requests,
a create-call becomes OutcomeUnknown; (c) *permanent* (other 4xx) -> never retried.
"""

from __future__ import annotations

import datetime
import email.utils
import random
import time
from collections.abc import Mapping

import httpx

# Raised before the request left this process: the platform cannot have acted on it.
NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

# Statuses that are worth retrying on an idempotent request.
RETRYABLE_STATUSES = frozenset({408, 500, 502, 503, 504})


def backoff_delay(retry: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: between 50% and 100% of min(cap, base * 2**retry).

    Partial rather than full jitter so a retry never fires instantly into the same overload.
    """
    ceiling = min(cap, base * (2**retry))
    return ceiling * (0.5 + 0.5 * rng.random())


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `Retry-After` (seconds or HTTP date); None if absent/bad."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms)
            if value >= 0:
                return value / 1000.0
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
        return value if value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        when = when.replace(tzinfo=datetime.UTC)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)
