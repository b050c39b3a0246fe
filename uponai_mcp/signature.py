"""The platform's webhook signature scheme (`x-retell-signature`), shared by sandbox and receiver.

`v=<unix ms>,d=<hex HMAC-SHA256(key, raw_body + str(ms))>`; verified on the raw bytes, ±5 minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import re

HEADER = "x-retell-signature"
TOLERANCE_MS = 5 * 60 * 1000
_PATTERN = re.compile(r"v=(\d{1,15}),d=([0-9a-f]{64})")


def digest(key: str, body: bytes, timestamp_ms: int) -> str:
    return hmac.new(key.encode(), body + str(timestamp_ms).encode(), hashlib.sha256).hexdigest()


def sign(key: str, body: bytes, timestamp_ms: int) -> str:
    """The header value for `body` signed at `timestamp_ms`."""
    return f"v={timestamp_ms},d={digest(key, body, timestamp_ms)}"


def verify(key: str, body: bytes, header: str | None, now_ms: int, tolerance_ms: int = TOLERANCE_MS) -> str | None:
    """Return None when the signature is good, else the reason it is not (never raises)."""
    if not header:
        return "missing signature header"
    m = _PATTERN.fullmatch(header.strip())
    if m is None:
        return "malformed signature header"
    ts = int(m.group(1))
    if abs(now_ms - ts) > tolerance_ms:
        return "signature timestamp outside the allowed window"
    if not hmac.compare_digest(digest(key, body, ts), m.group(2)):
        return "signature does not match"
    return None
