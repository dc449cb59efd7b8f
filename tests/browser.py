"""Headless Chromium for tests, driven over the DevTools protocol on a pipe.

Chromium started with `--remote-debugging-pipe` reads protocol messages (JSON, each ended by a
NUL byte) on its file descriptor 3 and writes replies and events on 4: no port, no websocket,
nothing beyond the standard library. The flags are the ones that make headless Chromium work
on a machine with no network but the package registries (no background connections).

    with Browser.start(tmp_path) as browser:
        page = browser.open(path.as_uri())
        page.evaluate("document.title")
        page.click("summary")
        assert not page.errors()
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]


def chromium() -> str | None:
    """The Chromium executable (Debian's package installs /usr/bin/chromium), if any."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    pass


class Browser:
    def __init__(self, pid: int, reader: int, writer: int) -> None:
        self.pid = pid
        self._reader, self._writer = reader, writer
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    @classmethod
    @contextlib.contextmanager
    def start(cls, folder: Path, timeout: float = 60.0) -> Iterator[Browser]:
        """Chromium with a fresh profile in `folder`, closed (and its processes ended) after."""
        exe = chromium()
        if exe is None:
            raise BrowserError("no chromium on PATH")
        profile = folder / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        to_chrome, ours_w = os.pipe()
        ours_r, from_chrome = os.pipe()
        # the child's ends, moved above 4 so dup2 onto 3 and 4 always copies (close-on-exec:
        # only the copies on 3 and 4 reach Chromium)
        child_r = fcntl.fcntl(to_chrome, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(from_chrome, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_chrome)
        os.close(from_chrome)
        log = os.open(profile / "chromium.log", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            pid = os.posix_spawn(
                exe,
                [exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                dict(os.environ),
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log, 1),
                    (os.POSIX_SPAWN_DUP2, log, 2),
                    (os.POSIX_SPAWN_DUP2, child_r, 3),
                    (os.POSIX_SPAWN_DUP2, child_w, 4),
                ],
                setpgroup=0,  # its own process group: its helpers end with it
            )
        finally:
            for fd in (child_r, child_w, log):
                os.close(fd)
        browser = cls(pid, ours_r, ours_w)
        try:
            browser.call("Browser.getVersion", timeout=timeout)
            yield browser
        finally:
            browser.close()

    # -- the protocol ------------------------------------------------------------------------
    def _send(self, method: str, params: dict[str, Any] | None, session: str | None) -> int:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._writer, data) :]
        return self._next

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium in time")
            ready, _, _ = select.select([self._reader], [], [], left)
            if ready:
                chunk = os.read(self._reader, 1 << 20)
                if not chunk:
                    raise BrowserError("chromium closed its end of the pipe")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        found: dict[str, Any] = json.loads(message)
        return found

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Send one command and wait for its result; events met meanwhile are kept."""
        sent = self._send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == sent:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def wait_for(self, method: str, session: str | None, timeout: float = 30.0) -> dict[str, Any]:
        """The first event `method` (of `session`) not yet waited for."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for i, e in enumerate(self.events[seen:], start=seen):
                if e["method"] == method and e.get("sessionId") == session and not e.get("_used"):
                    self.events[i]["_used"] = True
                    return e
            seen = len(self.events)
            message = self._receive(deadline)
            if "method" in message:
                self.events.append(message)

    def open(self, url: str, width: int = 1400, height: int = 900) -> Page:
        """A new tab at `url` of that viewport size, once its load event has fired."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        page.goto(url)
        return page

    def close(self) -> None:
        with contextlib.suppress(BrowserError, TimeoutError, OSError):
            self.call("Browser.close", timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:  # still running: end its process group (this browser's processes only)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        for fd in (self._reader, self._writer):
            with contextlib.suppress(OSError):
                os.close(fd)


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, self.session)

    def goto(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.browser.wait_for("Page.loadEventFired", self.session)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        found = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in found:
            raise BrowserError(f"{expression!r}: {found['exceptionDetails']}")
        return found["result"].get("value")

    def settle(self) -> None:
        """Let the page handle what it was sent (toggle events run as tasks)."""
        self.evaluate("new Promise((ok) => requestAnimationFrame(() => setTimeout(ok, 30)))")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) at the middle of the first element that
        matches `selector`, scrolled into view."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return [r.left + Math.min(r.width / 2, 40), r.top + r.height / 2]; })()"
        )
        if box is None:
            raise BrowserError(f"nothing matches {selector!r}")
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
            )
        self.settle()

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser-logged errors (a resource that
        failed to load, a Content-Security-Policy violation) seen on this page so far."""
        self.evaluate("0")  # every event sent before this answer has been read
        out = []
        for e in self.browser.events:
            if e.get("sessionId") != self.session:
                continue
            params = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                out.append(f"exception: {details.get('exception', {}).get('description', details)}")
            elif e["method"] == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "assert",
                "warning",
            ):
                args = " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                out.append(f"console.{params['type']}: {args}")
            elif e["method"] == "Log.entryAdded" and params["entry"]["level"] in (
                "error",
                "warning",
            ):
                entry = params["entry"]
                out.append(f"log {entry['level']} ({entry['source']}): {entry['text']}")
        return out

    def screenshot(self, path: Path) -> None:
        import base64

        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
