"""A headless Chromium driven over the DevTools protocol, for tests that open report pages.

The protocol runs over `--remote-debugging-pipe` (file descriptors 3 and 4, NUL-separated JSON),
so no port is opened and no websocket library is needed. `find_chromium` says where the browser
is, or why there is none; `Browser.open` loads a page and `Page` records what it did (console
errors, dialogs, requests) and can be probed, typed into and screenshotted.
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAUNCH_TIMEOUT_S = 10.0   # one Chromium start, or one protocol call, must answer within this
WIDTH, HEIGHT = 1200, 900
MAX_SHOT_HEIGHT = 8000    # px; a full-page screenshot is cut here (the flips table can be long)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--hide-scrollbars", "--mute-audio", f"--window-size={WIDTH},{HEIGHT}"]


def find_chromium() -> tuple[str | None, str]:
    """HARNESS_CHROMIUM, else the first Chromium/Chrome on PATH; or None and why there is none."""
    named = os.environ.get("HARNESS_CHROMIUM")
    if named:
        if os.path.isfile(named) and os.access(named, os.X_OK):
            return named, ""
        return None, f"HARNESS_CHROMIUM={named} is not an executable file"
    for exe in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        if path := shutil.which(exe):
            return path, ""
    return None, ("Chromium not found on PATH: install it (Debian: apt-get install chromium) or set "
                  "HARNESS_CHROMIUM to a Chrome/Chromium binary")


_TRAMPOLINE = """import fcntl, os, sys
moved = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]  # clear of 3 and 4 first
[os.close(int(fd)) for fd in sys.argv[1:3]]
os.dup2(moved[0], 3); os.dup2(moved[1], 4)
[os.close(fd) for fd in moved]
os.execv(sys.argv[3], sys.argv[3:])
"""


class Browser:
    """Headless Chromium over the DevTools protocol on a pipe: one process, one page at a time."""

    def __init__(self, exe: str, profile_dir: Path):
        self.events: list[dict] = []
        self._buf, self._id = b"", 0
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        self._log = tempfile.TemporaryFile()
        # Chromium reads commands on fd 3 and writes replies on fd 4. subprocess passes fds only
        # under their own numbers, so a few lines of Python move them there and exec Chromium.
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _TRAMPOLINE, str(to_chrome_r), str(from_chrome_w),
             exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            pass_fds=(to_chrome_r, from_chrome_w), start_new_session=True)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        try:
            self.call("Browser.getVersion")
        except Exception:
            self.close()
            raise

    # --- the protocol ---

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = LAUNCH_TIMEOUT_S) -> dict:
        msg_id = self._send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline, f"waiting for {method}")
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def wait_for(self, method: str, session: str, timeout: float = LAUNCH_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        while True:
            for event in self.events[seen:]:
                if event["method"] == method and event.get("sessionId") == session:
                    return event
            seen = len(self.events)
            self._read(deadline, f"waiting for {method}")

    def _send(self, method: str, params: dict | None, session: str | None) -> int:
        self._id += 1
        msg: dict = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode("utf-8") + b"\0")
        return self._id

    def _read(self, deadline: float, doing: str) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer within {LAUNCH_TIMEOUT_S:g} s ({doing}); "
                                   f"its log ends: {self.log_tail()}")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited ({doing}); its log ends: {self.log_tail()}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        msg = json.loads(raw)
        if "method" in msg:
            self.events.append(msg)
            if msg["method"] == "Page.javascriptDialogOpening":  # dismiss, or the page hangs on it
                self._send("Page.handleJavaScriptDialog", {"accept": False}, msg.get("sessionId"))
        return msg

    def log_tail(self, n: int = 1500) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-n:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send("Browser.close", None, None)
                self.proc.wait(timeout=3)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: Chromium and its helpers
                self.proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()

    # --- pages ---

    def open(self, path: Path, *, bypass_csp: bool = False) -> "Page":
        """Load a local file in a fresh tab and wait for its load event; everything it did is recorded."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}, session)
        if bypass_csp:
            self.call("Page.setBypassCSP", {"enabled": True}, session)
        start = len(self.events)
        url = path.resolve().as_uri()
        self.call("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        return Page(self, session, target, url, start)


class Page:
    """One loaded tab: its console errors, dialogs and requests so far, and ways to look at it."""

    def __init__(self, browser: Browser, session: str, target: str, url: str, start: int):
        self.browser, self.session, self.target, self.url, self._start = browser, session, target, url, start

    def _events(self, method: str) -> list[dict]:
        return [e["params"] for e in self.browser.events[self._start:]
                if e["method"] == method and e.get("sessionId") == self.session]

    def evaluate(self, expression: str):
        result = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                        "awaitPromise": True}, self.session)
        if "exceptionDetails" in result:
            raise AssertionError(f"probe script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Uncaught exceptions, console.error/assert calls, and the browser's own error log entries
        (a CSP violation, a resource that failed to load)."""
        self.evaluate("0")  # a round trip, so events already sent are read
        found = []
        for e in self._events("Runtime.exceptionThrown"):
            details = e["exceptionDetails"]
            found.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        for e in self._events("Runtime.consoleAPICalled"):
            if e["type"] in ("error", "assert"):
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in e["args"])
                found.append(f"console.{e['type']}: {args}")
        found += [f"log {e['entry']['source']}: {e['entry']['text']}" for e in self._events("Log.entryAdded")
                  if e["entry"]["level"] == "error"]
        return found

    def dialogs(self) -> list[str]:
        self.evaluate("0")
        return [f"{e['type']}: {e['message']}" for e in self._events("Page.javascriptDialogOpening")]

    def requests(self) -> list[str]:
        """Every URL the page asked for besides itself (data: URLs are inline, not network)."""
        self.evaluate("0")
        return [e["request"]["url"] for e in self._events("Network.requestWillBeSent")
                if e["request"]["url"] != self.url and not e["request"]["url"].startswith("data:")]

    def type_into(self, selector: str, text: str) -> None:
        """Focus the element, select what it holds, and type over it as keyboard input (an empty
        text is a Backspace). The page's own input listeners see it as a person typing."""
        self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                      f"e.focus(); e.select(); }})()")
        if text:
            self.browser.call("Input.insertText", {"text": text}, self.session)
            return
        for kind in ("rawKeyDown", "keyUp"):
            self.browser.call("Input.dispatchKeyEvent", {"type": kind, "key": "Backspace", "code": "Backspace",
                                                         "windowsVirtualKeyCode": 8}, self.session)

    def screenshot(self, path: Path, *, height: int | None = None) -> Path:
        """A PNG of the page, WIDTH px wide, as tall as the content (or `height`), at most MAX_SHOT_HEIGHT."""
        full = self.evaluate("Math.ceil(document.body.getBoundingClientRect().bottom + scrollY)")  # content, not window
        h = min(height or full, full, MAX_SHOT_HEIGHT)
        shot = self.browser.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": WIDTH, "height": h, "scale": 1}}, self.session)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self.target})
