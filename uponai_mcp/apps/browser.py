"""Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`), stdlib only.

Used by the app tests and `uponai-mcp demo` to render the MCP Apps and take screenshots. Chromium reads
commands on fd 3 and writes answers on fd 4, each a JSON message ended by a NUL byte.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    """The browser binary (`UPONAI_CHROMIUM` first), or None when there is none on this machine."""
    explicit = os.environ.get("UPONAI_CHROMIUM")
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).exists() else None)
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


def _high(fds: tuple[int, int]) -> tuple[int, int]:
    """The pipe's ends moved to fds >= 10, so the shell redirections below never clobber fds 3 and 4."""
    moved = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds)
    for fd in fds:
        os.close(fd)
    return moved  # type: ignore[return-value]


class Chromium:
    """One headless browser with one page. Every call blocks; callers on an event loop use a thread.

    `with Chromium() as b: b.navigate(url); b.evaluate("document.title")`."""

    def __init__(self, binary: str | None = None, *, width: int = 480, height: int = 900) -> None:
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise BrowserError("no chromium binary found (install Debian's `chromium` or set UPONAI_CHROMIUM)")
        self.width, self.height = width, height
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._profile = tempfile.TemporaryDirectory(prefix="uponai-chromium-")
        self._pid: int | None = None
        self._session: str | None = None

    def __enter__(self) -> Chromium:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        to_child_r, to_child_w = _high(os.pipe())
        from_child_r, from_child_w = _high(os.pipe())

        args = [
            self.binary, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
            "--disable-background-networking", "--disable-sync", "--hide-scrollbars",
            f"--user-data-dir={self._profile.name}", f"--window-size={self.width},{self.height}", "about:blank",
        ]
        # The protocol pipe must be the child's fds 3 (in) and 4 (out): posix_spawn places them there (no
        # preexec_fn, which is unsafe in a process with threads); every other fd of ours is close-on-exec.
        devnull = (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)
        actions = [devnull, (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_DUP2, to_child_r, 3), (os.POSIX_SPAWN_DUP2, from_child_w, 4)]
        self._pid = os.posix_spawn(args[0], args, dict(os.environ), file_actions=actions)
        os.close(to_child_r)
        os.close(from_child_w)
        self._out = os.fdopen(to_child_w, "wb", buffering=0)
        self._in = os.fdopen(from_child_r, "rb", buffering=0)
        threading.Thread(target=self._read, name="chromium-cdp", daemon=True).start()
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.page("Page.enable")
        self.page("Runtime.enable")
        self.page("Network.enable")
        self.resize(self.width, self.height)

    def close(self) -> None:
        if self._pid is not None:
            try:
                self.send("Browser.close", timeout=5)
            except BrowserError:
                pass
            if not self._reaped(within_s=5):
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
            self._pid = None
        for stream in (getattr(self, "_out", None), getattr(self, "_in", None)):
            if stream is not None:
                stream.close()
        self._profile.cleanup()

    def _reaped(self, *, within_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            pid, _ = os.waitpid(self._pid, os.WNOHANG)
            if pid:
                return True
            time.sleep(0.05)
        return False

    # -- protocol ---------------------------------------------------------------------------------

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self._in.read(65536)
            except (OSError, ValueError):
                chunk = b""
            if not chunk:
                with self._cond:
                    self._answers[-1] = {"error": {"message": "chromium closed the pipe"}}
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._answers[msg["id"]] = msg
                    else:
                        self._events.append(msg)
                    self._cond.notify_all()

    def send(self, method: str, *, session: str | None = None, timeout: float = 30, **params: Any) -> dict:
        with self._cond:
            self._next_id += 1
            msg_id = self._next_id
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        try:
            self._out.write(json.dumps(msg).encode() + b"\0")
        except OSError as exc:
            raise BrowserError(f"chromium is gone: {exc}") from exc
        with self._cond:
            if not self._cond.wait_for(lambda: msg_id in self._answers or -1 in self._answers, timeout):
                raise BrowserError(f"{method}: no answer from chromium within {timeout} s")
            answer = self._answers.pop(msg_id, None) or self._answers[-1]
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result", {})

    def page(self, method: str, **params: Any) -> dict:
        return self.send(method, session=self._session, **params)

    def events(self, method: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e.get("params", {}) for e in self._events if e.get("method") == method]

    # -- page helpers -----------------------------------------------------------------------------

    def resize(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.page("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def navigate(self, url: str) -> None:
        with self._cond:
            self._events.clear()
        self.page("Page.navigate", url=url)
        with self._cond:
            loaded = self._cond.wait_for(
                lambda: any(e.get("method") == "Page.loadEventFired" for e in self._events), 30)
        if not loaded:
            raise BrowserError(f"{url} did not load within 30 s")

    def evaluate(self, expression: str, *, frame: str | None = None) -> Any:
        """The JSON value of `expression` (awaited when it is a promise), in the page or in a `frame` session."""
        params: dict[str, Any] = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        out = self.send("Runtime.evaluate", session=frame or self._session, **params)
        if "exceptionDetails" in out:
            detail = out["exceptionDetails"]
            text = detail.get("exception", {}).get("description") or detail.get("text")
            raise BrowserError(f"script failed: {text}")
        return out["result"].get("value")

    def child_frame(self) -> str:
        """A session on the page's (first) child frame. A sandboxed app frame has an opaque origin, so
        Chromium runs it out of process as its own target; attaching to it lets us read its DOM without
        loosening the sandbox the way a real host sets it."""
        for info in self.send("Target.getTargets")["targetInfos"]:
            if info["type"] == "iframe":
                return self.send("Target.attachToTarget", targetId=info["targetId"], flatten=True)["sessionId"]
        raise BrowserError("the page has no child frame")

    def screenshot(self, path: Path, *, full_page: bool = True, settle_s: float = 0.4) -> Path:
        """A PNG of the page. For the full page the viewport is first grown to the content's height (an app
        frame runs in its own process and is only painted inside the viewport), then restored."""
        width, height = self.width, self.height
        if full_page:
            content = self.page("Page.getLayoutMetrics")["cssContentSize"]["height"]
            self.resize(width, max(height, int(content) + 1))
        time.sleep(settle_s)  # let the resized frames lay out and paint
        try:
            data = self.page("Page.captureScreenshot", format="png")["data"]
        finally:
            if full_page:
                self.resize(width, height)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def requests(self) -> list[str]:
        """URLs the page asked the network for since the last navigation."""
        return [e["request"]["url"] for e in self.events("Network.requestWillBeSent")]
