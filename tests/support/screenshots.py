"""Screenshots of a real store's report pages, for docs/screenshots.

    python tests/test_report_browser.py .harness/harness.duckdb docs/screenshots

The store is copied first and never touched; the PNGs are reduced to 256 colours where Pillow
is installed.
"""
from __future__ import annotations

import base64
import os
import shutil
import tempfile
from pathlib import Path

from support.browser import MAX_SHOT_HEIGHT, WIDTH, Browser, find_chromium

from harness.report import write_reports


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
