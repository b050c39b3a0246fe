"""A real, tiny recording per call: a short tone, mono 16-bit PCM at 8 kHz (telephone quality)."""

from __future__ import annotations

import hashlib
import io
import math
import struct
import wave

RATE = 8000


def make_wav(key: str, seconds: float = 0.3) -> bytes:
    """A valid WAV of ~5 KB whose pitch is derived from `key`, so each call sounds different but stable."""
    freq = 300 + int(hashlib.sha256(key.encode()).hexdigest()[:4], 16) % 400
    n = int(RATE * seconds)
    fade = RATE // 50  # 20 ms ramps avoid clicks
    frames = bytearray()
    for i in range(n):
        envelope = min(1.0, i / fade, (n - 1 - i) / fade)
        frames += struct.pack("<h", int(8000 * envelope * math.sin(2 * math.pi * freq * i / RATE)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(frames))
    return buf.getvalue()
