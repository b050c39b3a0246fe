"""Text hygiene and human-readable summaries.

`sanitize_text` cleans untrusted text (transcripts, call analysis, caller names) before it is returned
to the model: invisible and direction-changing characters are a known prompt-injection and
display-spoofing vector. `visible` renders untrusted input inside our own messages so hidden
characters show up instead of hiding.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from .destination import Destination

# Line structure is kept (as \n) so transcripts stay readable; every other control is dropped.
_NEWLINES = {"\r\n": "\n", "\r": "\n", "\x85": "\n", "\u2028": "\n", "\u2029": "\n"}
_KEEP = frozenset("\n\t")
# Variation selectors 17-256 carry no visible glyph and are used to smuggle hidden payloads; the fillers
# below are letters/marks by category but render as nothing, a known way to hide text in plain sight.
_VS_SUPPLEMENT = range(0xE0100, 0xE01F0)
_INVISIBLE_FILLERS = frozenset({0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0})
# Category Cf already covers U+200B-U+200F, U+202A-U+202E, U+2060-U+2064, U+2066-U+2069, U+061C, U+FEFF
# and the U+E0000 tag block; Cs (lone surrogates) cannot be encoded and would break JSON output.
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def _keep_char(c: str) -> bool:
    if c in _KEEP:
        return True
    if ord(c) in _VS_SUPPLEMENT or ord(c) in _INVISIBLE_FILLERS:
        return False
    return unicodedata.category(c) not in _DROP_CATEGORIES


# ASCII text can only carry C0 controls and DEL: one regex pass instead of a per-character category lookup.
_ASCII_DROP = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def sanitize_text(s: str, *, max_chars: int | None = None) -> str:
    """Remove control (except \\n, \\t), zero-width, bidi and other format characters; optionally truncate."""
    for old, new in _NEWLINES.items():
        s = s.replace(old, new)
    out = _ASCII_DROP.sub("", s) if s.isascii() else "".join(c for c in s if _keep_char(c))
    if max_chars is not None and len(out) > max_chars:
        out = out[:max_chars] + "…[truncated]"
    return out


def visible(s: object, limit: int = 40, *, quote: bool = True) -> str:
    """Render untrusted input for a message: printable ASCII as is, anything else as \\uXXXX, truncated."""
    if not isinstance(s, str):
        return f"<{type(s).__name__}>"
    body = "".join(c if " " <= c <= "~" else _escape(c) for c in s[:limit]) + ("…" if len(s) > limit else "")
    return f"'{body}'" if quote else body


def _escape(c: str) -> str:
    o = ord(c)
    return f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}"


def char_names(s: str, limit: int = 3) -> list[str]:
    """'U+200B ZERO WIDTH SPACE' for the first distinct characters outside printable ASCII."""
    seen: list[str] = []
    for c in s:
        if " " <= c <= "~" or c in seen:
            continue
        seen.append(c)
        if len(seen) == limit:
            break
    return [f"U+{ord(c):04X} {unicodedata.name(c, '') or unicodedata.category(c) + ' control'}" for c in seen]


# --- local time for confirmation summaries --------------------------------------------------------


def local_times(dest: Destination, now: datetime) -> dict[str, str]:
    """{zone: ISO local time} for each candidate zone of the destination at the injected instant."""
    return {z: now.astimezone(ZoneInfo(z)).isoformat(timespec="seconds") for z in dest.time_zones}


def describe_local_time(dest: Destination, now: datetime) -> str:
    """'local time 14:05 America/Los_Angeles' / '... 14:05 America/Boise, 13:05 America/Los_Angeles'."""
    zones = dest.time_zones
    if not zones:
        return "local time unknown"
    stamps = [(now.astimezone(ZoneInfo(z)), z) for z in zones]
    if len(stamps) <= 3:
        return "local time " + ", ".join(f"{t:%H:%M} {z}" for t, z in stamps)
    # Many zones (toll-free, AU/RU mobiles): a range is what a person can use.
    walls = sorted(t.replace(tzinfo=None) for t, _ in stamps)
    fmt = "%H:%M" if walls[0].date() == walls[-1].date() else "%a %H:%M"  # the spread can cross midnight
    return f"local time between {walls[0]:{fmt}} and {walls[-1]:{fmt}} across {len(zones)} time zones"


def describe_destination(dest: Destination, now: datetime) -> str:
    """'+14155552671 (US, San Francisco, CA; local time 14:05 America/Los_Angeles)' for confirmations."""
    place = dest.region
    where = dest.description if dest.description and dest.description != dest.region else ""
    if where:
        place += f", {where}"
    return f"{dest.e164} ({place}; {describe_local_time(dest, now)})"
