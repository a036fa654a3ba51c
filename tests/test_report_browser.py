"""The report pages in a real headless Chromium: what a person opening them would get.

Each test renders the synthetic store from tests/test_report.py (hostile text planted in inputs,
outputs, references, paths and a system prompt), opens a page in Chromium driven over the DevTools
protocol, and checks the DOM after scripts ran, the console, dialogs and network requests. The
protocol runs over `--remote-debugging-pipe` (file descriptors 3 and 4, NUL-separated JSON), so no
port is opened and no websocket library is needed.

Skips, saying why, where Chromium is not installed (`apt-get install chromium`, or point
HARNESS_CHROMIUM at a Chrome/Chromium binary); HARNESS_REQUIRE_CHROMIUM=1 makes that a failure.
Screenshots of every page it opens go under the test's tmp_path and, when HARNESS_SCREENSHOT_DIR
is set, are copied there too.

Run as a script to screenshot the pages of a real store (the store is copied first, never touched):

    python tests/test_report_browser.py .harness/harness.duckdb docs/screenshots
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

import pytest

from harness.report import write_reports

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


# --- what the tests look for --------------------------------------------------------------------

# Signs that planted hostile text became markup or code. Run in the page; returns a list of findings.
PAYLOAD_PROBE = """(() => {
  const found = [];
  if (document.title.indexOf('PWNED') >= 0) found.push('document.title was changed to ' + document.title);
  if (document.getElementById('pwned')) found.push('an element the payload creates (#pwned) exists');
  document.querySelectorAll('img').forEach(i => found.push('an <img> exists: ' + i.outerHTML));
  const scripts = document.querySelectorAll('script');
  scripts.forEach(s => { if (s.textContent.indexOf('PWNED') >= 0) found.push('a planted <script> exists'); });
  document.querySelectorAll('*').forEach(e => Array.from(e.attributes).forEach(a => {
    const where = a.name + '=' + a.value + ' on <' + e.localName + '>';
    if (/^\\s*javascript:/i.test(a.value)) found.push('a javascript: URL: ' + where);
    if (/^on/i.test(a.name)) found.push('an event handler attribute: ' + where);
  }));
  return found;
})()"""

# What the experiment page shows after rendering, in the DOM.
EXPERIMENT_PROBE = """(() => {
  const q = s => document.querySelector(s), qa = s => Array.from(document.querySelectorAll(s));
  const size = e => {
    if (!e) return null;
    const r = e.getBoundingClientRect();
    return [Math.round(r.width), Math.round(r.height)];
  };
  const text = e => e ? e.textContent.replace(/\\s+/g, ' ').trim() : null;
  return {
    verdict: text(q('.verdict .big')),
    headline: text(q('.verdict .headline')),
    approaches: qa('#approach-table tbody tr').map(r => text(r.querySelector('td strong'))),
    gates: qa('#gate-table tbody tr').map(r => [text(r.cells[0]), text(r.cells[1])]),
    interval: size(q('svg.interval')),
    interval_texts: qa('svg.interval text').map(text),
    loss: size(q('#loss-charts svg.chart')), loss_paths: qa('#loss-charts svg.chart path').length,
    loss_texts: qa('#loss-charts svg.chart text').map(text),
    bars: size(q('svg.bars')),
    configs_open: qa('#approach-table details[open]').length, configs: qa('#approach-table details').length,
    flips: qa('#flips tbody tr').length,
    scripts: qa('script').length,
    sweep: q('#sweep') ? {
      summary: text(q('#sweep-summary p')),
      trials: qa('#sweep-table tbody tr[data-state]').map(r => [text(r.cells[0]), r.dataset.state, r.className]),
      errors: qa('#sweep-table tr.trial-error').map(text),
      scatters: qa('#sweep-scatters svg.scatter').map(size),
      best_dots: qa('#sweep-scatters circle.pt.best').length,
      pruned_dots: qa('#sweep-scatters circle.pt.pruned').map(c => getComputedStyle(c).fill),
      curves: size(q('#sweep-curves svg.chart')),
      dashed: qa('#sweep-curves path[stroke-dasharray]').length,
    } : null,
  };
})()"""

# Anything cut off: the page wider than the window, or chart text outside its SVG's drawing area.
CLIPPED_PROBE = """(() => {
  const found = [];
  const over = document.documentElement.scrollWidth - window.innerWidth;
  if (over > 0) found.push('the page is ' + over + ' px wider than the window');
  document.querySelectorAll('svg').forEach(svg => {
    const box = svg.getBoundingClientRect();  // as drawn: scaled, and rotated labels turned
    svg.querySelectorAll('text').forEach(t => {
      const b = t.getBoundingClientRect();
      if (b.left < box.left - 1 || b.top < box.top - 1 || b.right > box.right + 1 || b.bottom > box.bottom + 1)
        found.push('"' + t.textContent + '" sticks out of its ' + svg.getAttribute('class') + ' chart');
    });
  });
  return found;
})()"""

VISIBLE_FLIPS = "Array.from(document.querySelectorAll('#flips tbody tr')).filter(r => r.getClientRects().length).length"


@pytest.fixture(scope="module")
def chromium():
    exe, why = find_chromium()
    if exe is None:
        if os.environ.get("HARNESS_REQUIRE_CHROMIUM"):  # where a browser is meant to be, a skip would hide its loss
            pytest.fail(f"{why} (and HARNESS_REQUIRE_CHROMIUM is set)", pytrace=False)
        pytest.skip(f"{why}; the report's browser checks need a real browser")
    return exe


@pytest.fixture
def browser(chromium, tmp_path):
    b = Browser(chromium, tmp_path / "chromium-profile")
    yield b
    b.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    from test_report import build_store

    tmp = tmp_path_factory.mktemp("report-browser")
    store, _ = build_store(tmp / "h.duckdb")
    out = tmp / "reports"
    write_reports(store, out)
    return out


def _keep_screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    shot = page.screenshot(tmp_path / f"{name}.png")
    if target := os.environ.get("HARNESS_SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / shot.name)
    assert shot.stat().st_size > 5_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return shot


def _assert_quiet(page: Page) -> None:
    assert page.errors() == [], "the page logged errors"
    assert page.dialogs() == [], "a dialog opened"
    assert page.requests() == [], "the page tried to load something"


# --- the tests ----------------------------------------------------------------------------------

def test_experiment_page_renders(browser, pages, tmp_path):
    page = browser.open(pages / "sarcasm.html")
    _assert_quiet(page)  # the CSP lets our one script run: a wrong hash would log a CSP error here
    dom = page.evaluate(EXPERIMENT_PROBE)
    assert dom["verdict"] == "Fine-tune"
    assert "beats the best prompt baseline (few_shot_k8)" in dom["headline"]
    assert dom["approaches"] == ["zero_shot", "few_shot_k8", "candidate"]
    assert dom["gates"] == [["five_percent_rule", "PASS"], ["data_quality", "PASS"], ["overfit", "PASS"]]
    # the charts are drawn, and at a legible size
    assert dom["interval"][0] >= 700, f"uplift interval chart is only {dom['interval']} px"
    assert any("bar +5.0%" in t for t in dom["interval_texts"])
    assert dom["loss"][0] >= 500 and dom["loss_paths"] == 2
    assert "training step" in dom["loss_texts"] and "loss (log scale)" in dom["loss_texts"]  # 5.0 -> 0.28
    assert dom["bars"][0] >= 300
    assert dom["configs"] >= 3 and dom["configs_open"] == 0  # long configs start collapsed
    assert dom["flips"] == 5 and dom["scripts"] == 1
    assert page.evaluate("document.getElementById('flip-count').textContent") == "5 of 5 shown"  # the script ran
    # the sweep: who won and what it cost, in one line; a scatter per setting; every trial's loss
    sweep = dom["sweep"]
    assert sweep["summary"].startswith("6 trials (3 complete, 2 pruned, 1 failed) · best trial #2 (r=16, ")
    assert [state for _, state, _ in sweep["trials"]] == ["COMPLETE", "PRUNED", "COMPLETE", "FAIL", "PRUNED",
                                                          "COMPLETE"]
    assert [number for number, _, cls in sweep["trials"] if "best" in cls] == ["#2 best this run"]
    assert len(sweep["errors"]) == 1 and "CUDA out of memory </script><script>" in sweep["errors"][0]
    assert len(sweep["scatters"]) == 3 and all(w >= 300 and h >= 200 for w, h in sweep["scatters"])
    assert sweep["best_dots"] == 3 and set(sweep["pruned_dots"]) == {"rgb(255, 255, 255)"}  # pruned: hollow
    assert sweep["curves"][0] >= 500 and sweep["dashed"] == 2  # the two pruned trials
    _keep_screenshot(page, tmp_path, "synthetic-sarcasm")


def test_sweep_section_only_where_there_are_trials(browser, pages):
    page = browser.open(pages / "headlines.v2.html")
    _assert_quiet(page)
    sweep = page.evaluate(EXPERIMENT_PROBE)["sweep"]
    assert "did not come from this sweep" in page.evaluate("document.getElementById('sweep-summary').textContent")
    assert [state for _, state, _ in sweep["trials"]] == ["COMPLETE"] and len(sweep["scatters"]) == 0  # one trial: nothing varies, nothing to plot
    page = browser.open(pages / "baselines-only.html")
    assert page.evaluate(EXPERIMENT_PROBE)["sweep"] is None


def test_index_page_renders(browser, pages, tmp_path):
    page = browser.open(pages / "index.html")
    _assert_quiet(page)
    dom = page.evaluate("""(() => {
      const rows = Array.from(document.querySelectorAll('table.index tbody tr'));
      return rows.map(r => {
        const link = r.cells[0].querySelector('a'), chart = r.querySelector('svg.interval');
        return {name: r.cells[0].querySelector('strong').textContent,
                href: link ? link.getAttribute('href') : null,
                verdict: r.cells[1].textContent.trim(),
                interval: chart ? Math.round(chart.getBoundingClientRect().width) : null};
      });
    })()""")
    by_name = {r["name"]: r for r in dom}
    assert set(by_name) == {"sarcasm", "headlines.v2", "baselines-only"}
    assert by_name["sarcasm"]["verdict"] == "Fine-tune" and by_name["sarcasm"]["href"] == "sarcasm.html"
    assert by_name["headlines.v2"]["verdict"] == "Inconclusive"
    assert by_name["sarcasm"]["interval"] >= 150, "the index's interval chart collapsed in its table cell"
    assert by_name["baselines-only"]["interval"] is None
    assert page.evaluate("document.scripts.length") == 0
    _keep_screenshot(page, tmp_path, "synthetic-index")


@pytest.mark.parametrize("name", ["index", "sarcasm", "headlines.v2", "baselines-only"])
def test_nothing_is_cut_off(browser, pages, name):
    page = browser.open(pages / f"{name}.html")
    assert page.evaluate(CLIPPED_PROBE) == []


@pytest.mark.parametrize("name", ["index", "sarcasm", "headlines.v2", "baselines-only"])
def test_planted_payloads_stay_text_even_without_csp(browser, pages, name):
    # With the page's Content-Security-Policy switched off, only escaping stands between the
    # planted payloads and the reader: none may run, become an element, or fetch anything.
    page = browser.open(pages / f"{name}.html", bypass_csp=True)
    assert page.evaluate(PAYLOAD_PROBE) == []
    _assert_quiet(page)
    if name == "sarcasm":
        text = page.evaluate("document.body.innerText")
        assert "<script>document.title='PWNED';alert(1)</script>" in text  # shown to the reader, as text
        assert '"><img src=x id=pwned onerror=alert(1)>' in text
        assert "javascript:document.title='PWNED'" in text


def test_flips_filter(browser, pages):
    page = browser.open(pages / "sarcasm.html")
    count = "document.getElementById('flip-count').textContent"
    assert page.evaluate(VISIBLE_FLIPS) == 5
    page.type_into("#flip-filter", "headline 4")
    assert page.evaluate(VISIBLE_FLIPS) == 1 and page.evaluate(count) == "1 of 5 shown"
    page.type_into("#flip-filter", "javascript:")  # the hostile row, found by its reference text
    assert page.evaluate(VISIBLE_FLIPS) == 1
    assert page.evaluate("document.querySelector('#flips tbody tr:not([hidden])').dataset.kind") == "broken"
    page.type_into("#flip-filter", "no row says this")
    assert page.evaluate(VISIBLE_FLIPS) == 0 and page.evaluate(count) == "0 of 5 shown"
    page.type_into("#flip-filter", "")
    assert page.evaluate(VISIBLE_FLIPS) == 5 and page.evaluate(count) == "5 of 5 shown"
    page.evaluate("document.querySelector('[data-flip-kind=fixed]').click()")
    assert page.evaluate(VISIBLE_FLIPS) == 4
    page.evaluate("document.querySelector('[data-flip-kind=broken]').click()")
    assert page.evaluate(VISIBLE_FLIPS) == 1
    assert page.evaluate("document.querySelector('[data-flip-kind=broken]').getAttribute('aria-pressed')") == "true"
    _assert_quiet(page)


# --- negative controls: each detector above, shown to catch what it looks for --------------------

def test_detectors_catch_errors_dialogs_requests_and_payloads(browser, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("""<!doctype html><html><head><title>control</title></head><body>
<script>console.error('deliberate console error');</script>
<script>null.deliberate();</script>
<script>alert('deliberate dialog');</script>
<script>document.title = 'PWNED';</script>
<img src="http://127.0.0.1:9/deliberate.png">
<a href="javascript:void(0)">x</a>
</body></html>""", encoding="utf-8")
    page = browser.open(bad)
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<div style=\"width: 3000px\">wide</div>"
                  "<svg viewBox=\"0 0 50 20\" class=\"control\"><text x=\"40\" y=\"15\">cut off</text></svg>')")
    assert any("wider than the window" in f for f in page.evaluate(CLIPPED_PROBE))
    assert any('"cut off" sticks out' in f for f in page.evaluate(CLIPPED_PROBE))
    errors = page.errors()
    assert any("deliberate console error" in e for e in errors)
    assert any("TypeError" in e and "deliberate" in e for e in errors)
    assert page.dialogs() == ["alert: deliberate dialog"]
    assert "http://127.0.0.1:9/deliberate.png" in page.requests()
    found = page.evaluate(PAYLOAD_PROBE)
    assert any("document.title" in f for f in found) and any("<img>" in f for f in found)
    assert any("javascript:" in f for f in found)


def test_an_unescaped_payload_would_be_caught(browser, pages, tmp_path):
    # The real experiment page with its planted payloads un-escaped, as a broken template would
    # emit them: with the CSP bypassed they run and every detector fires; with it on, they are
    # refused and the refusals show up as console errors.
    html = (pages / "sarcasm.html").read_text(encoding="utf-8")
    escaped = "&lt;script&gt;document.title=&#39;PWNED&#39;;alert(1)&lt;/script&gt;"
    image = "&#34;&gt;&lt;img src=x id=pwned onerror=alert(1)&gt;"
    assert escaped in html and image in html
    broken = tmp_path / "sarcasm.html"
    broken.write_text(html.replace(escaped, "<script>document.title='PWNED';alert(1)</script>")
                      .replace(image, '"><img src=x id=pwned onerror=alert(1)>'), encoding="utf-8")
    page = browser.open(broken, bypass_csp=True)
    found = page.evaluate(PAYLOAD_PROBE)
    assert any("document.title" in f for f in found) and any("#pwned" in f for f in found)
    assert "alert: 1" in page.dialogs()
    assert any(url.endswith("/x") for url in page.requests())
    page = browser.open(broken)
    assert page.dialogs() == [] and page.evaluate("document.title").find("PWNED") < 0
    assert any("Content Security Policy" in e for e in page.errors())


def test_detectors_catch_a_script_the_csp_blocks(browser, tmp_path):
    # The report's own CSP with a hash that is not this script's: Chromium refuses to run it and
    # says so; that is the error test_experiment_page_renders would see if the hash went stale.
    from harness.report import _csp

    page_path = tmp_path / "csp.html"
    page_path.write_text(f"""<!doctype html><html><head>
<meta http-equiv="Content-Security-Policy" content="{_csp('something else')}">
<title>csp control</title></head><body><script>document.title = 'ran';</script></body></html>""",
                         encoding="utf-8")
    page = browser.open(page_path)
    assert page.evaluate("document.title") == "csp control"
    assert any("Content Security Policy" in e for e in page.errors())


# --- screenshots of a real store's pages (docs/screenshots) ---------------------------------------

def screenshot_store(store_path: Path, out_dir: Path) -> list[Path]:
    """Copy the store, render its pages, and save small PNGs of them into out_dir."""
    from harness.store import Store

    exe, why = find_chromium()
    if exe is None:
        raise SystemExit(why)
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        # the copy sits at the same relative path under tmp, so the index names the store as given
        name = store_path if not store_path.is_absolute() and ".." not in store_path.parts else Path(store_path.name)
        copy = Path(tmp) / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(store_path, copy)
        if Path(f"{store_path}.wal").exists():
            shutil.copy(f"{store_path}.wal", f"{copy}.wal")
        reports = Path(tmp) / "reports"
        os.chdir(tmp)
        try:
            paths = write_reports(Store(name), reports)
        finally:
            os.chdir(here)
        browser = Browser(exe, Path(tmp) / "profile")
        written = []
        try:
            for path in paths:
                page = browser.open(path)
                if problems := page.errors() + page.dialogs() + page.requests():
                    raise SystemExit(f"{path.name}: {problems}")
                stem = path.stem
                # The top of an experiment page through the first rows of the flips table; the
                # provenance and history sections get a shot of their own.
                top = page.evaluate("""(() => { const r = document.querySelectorAll('#flips tbody tr')[3];
                    return r ? Math.ceil(r.getBoundingClientRect().bottom + scrollY) + 16 : null; })()""")
                written.append(_small(page.screenshot(out_dir / f"{stem}.png", height=top)))
                tail = page.evaluate("""(() => { const h = document.getElementById('provenance');
                    return h ? Math.floor(h.getBoundingClientRect().top + scrollY) - 12 : null; })()""")
                if tail is not None:
                    full = page.evaluate("document.documentElement.scrollHeight")
                    shot = page.browser.call("Page.captureScreenshot", {
                        "format": "png", "captureBeyondViewport": True,
                        "clip": {"x": 0, "y": tail, "width": WIDTH, "height": min(full - tail, MAX_SHOT_HEIGHT),
                                 "scale": 1}}, page.session)
                    tail_path = out_dir / f"{stem}-history.png"
                    tail_path.write_bytes(base64.b64decode(shot["data"]))
                    written.append(_small(tail_path))
                # the approaches section (with "Can a prompt do better?") and the sweep section
                for section in ("approaches", "sweep"):
                    if (shot_path := _section_shot(page, section, out_dir / f"{stem}-{section}.png")) is not None:
                        written.append(_small(shot_path))
                page.close()
        finally:
            browser.close()
    return written


def _section_shot(page, anchor: str, path: Path) -> Path | None:
    """A PNG of one section, from its <h2 id=anchor> to the next <h2>; None when the page has none."""
    bounds = page.evaluate(f"""(() => {{ const h = document.getElementById('{anchor}');
        if (!h) return null; let end = h.nextElementSibling;
        while (end && end.tagName !== 'H2') end = end.nextElementSibling;
        const top = h.getBoundingClientRect().top + scrollY - 12;
        const bottom = end ? end.getBoundingClientRect().top + scrollY - 8 : document.documentElement.scrollHeight;
        return [Math.floor(top), Math.ceil(bottom)]; }})()""")
    if bounds is None:
        return None
    shot = page.browser.call("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": bounds[0], "width": WIDTH, "height": min(bounds[1] - bounds[0], MAX_SHOT_HEIGHT),
                 "scale": 1}}, page.session)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def _small(path: Path) -> Path:
    """Reduce a screenshot to a 256-colour PNG where Pillow is installed (text stays crisp)."""
    try:
        from PIL import Image
    except ImportError:
        return path
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python tests/test_report_browser.py STORE OUT_DIR")
    for p in screenshot_store(Path(sys.argv[1]), Path(sys.argv[2])):
        print(f"{p}  {p.stat().st_size // 1024} KB")
