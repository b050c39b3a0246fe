"""Progress for CLI commands that wait (demo, batches, evaluations): a bar on a terminal, plain lines otherwise.

Always written to stderr: stdout of `serve` carries protocol bytes and must stay clean.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`with Progress(total, "calls") as bar: bar.advance(note="call_1 ended")`.

    On a terminal one line is redrawn in place (at most 10 times a second); elsewhere (CI logs, pipes)
    a plain line is printed each time another tenth of the work is done, and at the end."""

    def __init__(self, total: int, label: str, *, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(0, total)
        self.label = label
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._last_tenth = -1
        self._closed = False

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def advance(self, n: int = 1, *, note: str | None = None) -> None:
        self.done = min(self.total, self.done + n) if self.total else self.done + n
        self._draw(note=note)

    def set(self, done: int, *, note: str | None = None) -> None:
        self.done = done
        self._draw(note=note)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._draw(force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def line(self, note: str | None = None) -> str:
        """The text of one progress line (without the bar), for plain output and tests."""
        elapsed = time.monotonic() - self._started
        pct = f"{100 * self.done / self.total:5.1f}%" if self.total else "  ..."
        text = f"{self.label}: {self.done}/{self.total} {pct} {elapsed:6.1f}s"
        return f"{text}  {note}" if note else text

    def _draw(self, *, note: str | None = None, force: bool = False) -> None:
        if self.tty:
            now = time.monotonic()
            if not force and now - self._last_draw < 0.1 and self.done < self.total:
                return
            self._last_draw = now
            filled = int(self.width * self.done / self.total) if self.total else 0
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self.line(note)}\x1b[K")
            self.stream.flush()
            return
        tenth = int(10 * self.done / self.total) if self.total else 0
        if force or tenth != self._last_tenth:
            self._last_tenth = tenth
            self.stream.write(self.line(note) + "\n")
            self.stream.flush()
