"""sanitize_text (untrusted transcripts) and the confirmation summaries; and the package stays cheap to import."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from uponai_mcp.guardrails import (
    Destination,
    check_destination,
    describe_destination,
    describe_local_time,
    local_times,
    sanitize_text,
)


def dest(number: str) -> Destination:
    d = check_destination(number)
    assert isinstance(d, Destination), d
    return d


def test_sanitize_removes_invisible_and_bidi_characters() -> None:
    hidden = "".join(chr(c) for c in [*range(0x200B, 0x2010), *range(0x2060, 0x2065), 0xFEFF,
                                       *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x061C])
    assert sanitize_text(f"call{hidden} me") == "call me"
    assert sanitize_text("ignore\U000e0041\U000e0042 tags") == "ignore tags"  # Unicode tag smuggling
    assert sanitize_text("a\U000e0100b") == "ab"  # variation selector supplement
    assert sanitize_text("x\u3164\u115fy\u034f") == "xy"  # invisible fillers


def test_sanitize_keeps_lines_tabs_and_normal_text() -> None:
    assert sanitize_text("Agent: hi\r\nUser:\tok\rbye\u2028end") == "Agent: hi\nUser:\tok\nbye\nend"
    assert sanitize_text("bell\x07 esc\x1b[31m nul\x00 del\x7f") == "bell esc[31m nul del"
    text = "Grüße, 東京, مرحبا, emoji 👍🏽, café"
    assert sanitize_text(text) == text


def test_sanitize_truncates() -> None:
    assert sanitize_text("abcdef", max_chars=3) == "abc…[truncated]"
    assert sanitize_text("abc", max_chars=3) == "abc"


def test_describe_destination() -> None:
    now = datetime(2026, 6, 15, 21, 5, tzinfo=UTC)
    assert describe_destination(dest("+14155552671"), now) == (
        "+14155552671 (US, San Francisco, CA; local time 14:05 America/Los_Angeles)"
    )
    assert describe_local_time(dest("+12085551234"), now) == (
        "local time 15:05 America/Boise, 14:05 America/Los_Angeles"
    )
    assert describe_destination(dest("+447911123456"), now).startswith("+447911123456 (GG, Guernsey; local time")
    many = describe_local_time(dest("+18002345678"), now)
    assert many.startswith("local time between") and "42 time zones" in many
    unknown = Destination("+10000000000", "US", 1, "MOBILE", (), "")
    assert describe_destination(unknown, now) == "+10000000000 (US; local time unknown)"
    assert local_times(dest("+12125550123"), now) == {"America/New_York": "2026-06-15T17:05:00-04:00"}


def test_importing_guardrails_does_not_load_the_geocoder() -> None:
    # phonenumbers.geocoder loads ~19 MB of data modules; server start and tools/list must not pay for it.
    code = "import sys, uponai_mcp.guardrails; assert 'phonenumbers.geocoder' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_fast_path_matches_the_per_character_rules(s):
    from uponai_mcp.guardrails.text import _keep_char

    expected = "".join(c for c in s.replace("\r\n", "\n").replace("\r", "\n") if _keep_char(c))
    assert sanitize_text(s) == expected
