"""Where report pages go and how they are rendered: page names, safe paths, the CSP, the templates.

A page's file name comes from an experiment name, which is data: it is checked against
EXPERIMENT_NAME and must resolve inside the output folder, or the page is refused.
"""
from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Sequence

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from harness.errors import HarnessError
from harness.report.format import (
    badge_class,
    fmt_duration,
    fmt_hash,
    fmt_ms,
    fmt_num,
    fmt_tokens,
    fmt_uplift,
    fmt_when,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PAGE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(~[0-9]{1,6})?")
_RESERVED_STEMS = {"index"}


# The one script on a page: filters the flips table. Static text; the data it filters is
# escaped HTML in the table, never JSON pasted into the script. Its hash goes into the CSP.
FLIPS_JS = """
(function () {
  var box = document.getElementById('flip-filter');
  if (!box) { return; }
  var rows = Array.prototype.slice.call(document.querySelectorAll('#flips tbody tr'));
  var buttons = Array.prototype.slice.call(document.querySelectorAll('[data-flip-kind]'));
  var count = document.getElementById('flip-count');
  var kind = 'all';
  function apply() {
    var q = box.value.toLowerCase();
    var shown = 0;
    rows.forEach(function (r) {
      var ok = (kind === 'all' || r.getAttribute('data-kind') === kind) &&
               (!q || r.textContent.toLowerCase().indexOf(q) >= 0);
      r.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown + ' of ' + rows.length + ' shown';
  }
  box.addEventListener('input', apply);
  buttons.forEach(function (b) {
    b.addEventListener('click', function () {
      kind = b.getAttribute('data-flip-kind');
      buttons.forEach(function (x) { x.setAttribute('aria-pressed', x === b ? 'true' : 'false'); });
      apply();
    });
  });
  apply();
})();
"""


class ReportError(HarnessError):
    """A report cannot be written where asked."""


def page_stems(names: Sequence[str]) -> dict[str, str]:
    """A file stem per experiment, unique even on case-insensitive file systems and never 'index'.

    A clash gets a `~N` suffix, a character no valid experiment name contains, so suffixed
    stems can't clash with natural ones.
    """
    used = set(_RESERVED_STEMS)
    stems = {}
    for name in names:
        stem, n = name, 1
        while stem.casefold() in used:
            n += 1
            stem = f"{name}~{n}"
        used.add(stem.casefold())
        stems[name] = stem
    return stems


def safe_path(out_dir: str | Path, stem: str) -> Path:
    """out_dir/<stem>.html, refused unless stem is a valid page name that stays inside out_dir."""
    if not isinstance(stem, str) or not _PAGE_STEM.fullmatch(stem):
        raise ReportError(f"refusing to write a report page for {stem!r}: not a valid experiment name "
                          f"({EXPERIMENT_NAME.pattern})")
    root = Path(out_dir).resolve()
    target = (root / f"{stem}.html").resolve()
    if target.parent != root:
        raise ReportError(f"refusing to write a report page for {stem!r}: {target} is outside {root}")
    return target


def content_security_policy(script: str | None) -> str:
    """A Content-Security-Policy that loads nothing from anywhere and runs only our own script."""
    if script is None:
        scripts = "'none'"
    else:
        digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
        scripts = f"'sha256-{digest}'"
    return (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {scripts}; "
            f"base-uri 'none'; form-action 'none'")


def jinja_environment() -> Environment:
    """The page templates, autoescaped (every value is hostile text until escaped), with the
    report's formatters as filters."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                      autoescape=select_autoescape(["html", "htm", "xml"], default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=fmt_num, ms=fmt_ms, duration=fmt_duration, uplift=fmt_uplift, when=fmt_when,
                       short=fmt_hash, badge=badge_class, tokens=fmt_tokens)
    return env
