"""The report pages in a real headless Chromium: what a person opening them would get.

Each test renders the synthetic store of tests/support/report_store.py (hostile text planted in
inputs, outputs, references, paths and a system prompt), opens a page in Chromium driven over the
DevTools protocol (tests/support/browser.py), and checks the DOM after scripts ran, the console,
dialogs and network requests.

Skips, saying why, where Chromium is not installed (`apt-get install chromium`, or point
HARNESS_CHROMIUM at a Chrome/Chromium binary); HARNESS_REQUIRE_CHROMIUM=1 makes that a failure.
Screenshots of every page it opens go under the test's tmp_path and, when HARNESS_SCREENSHOT_DIR
is set, are copied there too.

Run as a script to screenshot the pages of a real store (the store is copied first, never touched):

    python tests/test_report_browser.py .harness/harness.duckdb docs/screenshots
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from support.browser import Browser, Page, find_chromium
from support.report_store import build_store

from harness.report import write_reports
from harness.report.files import content_security_policy

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
    page_path = tmp_path / "csp.html"
    page_path.write_text(f"""<!doctype html><html><head>
<meta http-equiv="Content-Security-Policy" content="{content_security_policy('something else')}">
<title>csp control</title></head><body><script>document.title = 'ran';</script></body></html>""",
                         encoding="utf-8")
    page = browser.open(page_path)
    assert page.evaluate("document.title") == "csp control"
    assert any("Content Security Policy" in e for e in page.errors())


if __name__ == "__main__":
    from support.screenshots import screenshot_store

    if len(sys.argv) != 3:
        raise SystemExit("usage: python tests/test_report_browser.py STORE OUT_DIR")
    for p in screenshot_store(Path(sys.argv[1]), Path(sys.argv[2])):
        print(f"{p}  {p.stat().st_size // 1024} KB")
