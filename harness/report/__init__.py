"""HTML reports for the decision meeting, rendered from the DuckDB store alone.

    write_reports(Store(".harness/harness.duckdb"), "reports")

writes `reports/index.html` (one row per experiment) and `reports/<experiment>.html` (the
latest complete run of that experiment: verdict, gates, approaches, uplift interval, loss
curves, the hyperparameter sweep its candidate came from, per-example flips, data-quality
checks, provenance, and the history of every run).

Everything shown is read back from the store, never from a pipeline's objects in memory,
so a report can be rebuilt at any time from the file alone. Pages are self-contained
(inline CSS, inline SVG charts, one small inline script), load nothing from the network,
and escape every piece of data: model outputs and data rows are hostile text.

The modules, in the order a page is made: read (the store), summary (what a run says),
sections, sweep and history (the parts of a page), svg (its charts), format (its numbers),
files (page names, paths, the CSP and the templates).
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from markupsafe import Markup

from harness.files import write_text_atomically
from harness.judge import recommendation
from harness.judge.decision import FINE_TUNE, INCONCLUSIVE_VERDICT, KEEP_PROMPTING
from harness.report.files import (
    FLIPS_JS,
    ReportError,
    content_security_policy,
    jinja_environment,
    page_stems,
    safe_path,
)
from harness.report.format import now_text
from harness.report.read import load_experiments
from harness.report.sections import experiment_context, index_row
from harness.store import Store

__all__ = ["ReportError", "write_reports"]


def write_reports(store: Store, out_dir: str | Path, *, gpu_hour_price: float | None = None,
                  calls: int | None = None) -> list[Path]:
    """Render `index.html` and one `<experiment>.html` per experiment into out_dir, from the store alone.

    Returns the written paths, index first. Each file is written atomically (temp file + rename).
    An experiment whose name would put its page outside out_dir is refused: no page is written
    for it and the index says so.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = jinja_environment()
    data = load_experiments(store)
    stems = page_stems(sorted(data))
    written: list[Path] = []
    index_rows = []
    for name in sorted(data):
        page = experiment_context(name, data[name])
        page["cost_view"], page["recommendation"] = None, None
        if data[name]["shown"] is not None:
            view, recommended = recommendation.for_run(data[name]["shown"], gpu_hour_price=gpu_hour_price, calls=calls)
            page["cost_view"] = view.to_dict() if view else None
            page["recommendation"] = recommended.to_dict()
        try:
            path = safe_path(out, stems[name])
        except ReportError as e:
            page["refused"] = str(e)
            index_rows.append(index_row(page, href=None))
            continue
        html = env.get_template("experiment.html").render(
            **page, title=f"{name}: {page['verdict']['label']}", csp=content_security_policy(FLIPS_JS),
            flips_js=Markup(FLIPS_JS), generated=now_text(), index_href="index.html")
        write_text_atomically(path, html)
        written.append(path)
        index_rows.append(index_row(page, href=quote(path.name)))
    counts = {label: sum(1 for r in index_rows if r["verdict"]["label"] == label)
              for label in (FINE_TUNE, KEEP_PROMPTING, INCONCLUSIVE_VERDICT)}
    index_html = env.get_template("index.html").render(
        rows=index_rows, counts=counts, title="Fine-tune or keep prompting?", csp=content_security_policy(None),
        generated=now_text(), store_path=store.path)
    index_path = safe_path(out, "index")
    write_text_atomically(index_path, index_html)
    return [index_path, *written]
