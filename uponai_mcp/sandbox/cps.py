"""Calls-per-second admission per provider scope, on real (monotonic) time, like the carriers enforce it."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from .config import SCOPES


class CpsLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._window: dict[str, deque[float]] = {s: deque() for s in SCOPES}
        self.accepted: dict[str, list[float]] = {s: [] for s in SCOPES}
        self.rejected: dict[str, int] = dict.fromkeys(SCOPES, 0)

    def admit(self, scope: str, cps: float) -> float | None:
        """Record an accepted create and return None, or return the seconds until a slot frees."""
        # CPS >= 1: at most floor(cps) creates in any rolling second; below 1: one per 1/cps seconds.
        limit, span = (int(cps), 1.0) if cps >= 1 else (1, 1.0 / cps)
        now = self._clock()
        window = self._window[scope]
        while window and window[0] <= now - span:
            window.popleft()
        if len(window) >= limit:
            self.rejected[scope] += 1
            return window[len(window) - limit] + span - now
        window.append(now)
        self.accepted[scope].append(now)
        return None

    def max_per_second(self, scope: str) -> int:
        """The most creates accepted within any rolling 1-second window so far."""
        times, best, lo = self.accepted[scope], 0, 0
        for hi, t in enumerate(times):
            while times[lo] <= t - 1.0:
                lo += 1
            best = max(best, hi - lo + 1)
        return best


def retry_headers(wait_s: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(wait_s))), "retry-after-ms": str(max(1, math.ceil(wait_s * 1000)))}
