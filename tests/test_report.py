"""HTML reports: rendered from the store alone, escaped, self-contained, inside out_dir."""
from __future__ import annotations

import base64
import hashlib
import math
import re
from dataclasses import replace
from datetime import datetime

import pytest
from support.report_store import SWEEP_BEST, SWEEP_STUDY, build_store, experiment_config

from harness.report import ReportError, write_reports
from harness.report.files import safe_path
from harness.report.format import fmt_float
from harness.report.sections import config_view, epoch_marks, loss_curves
from harness.report.summary import verdict
from harness.report.svg import interval_chart, line_chart, log_ticks, nice_ticks, scatter_chart, sparkline
from harness.judge.outcomes import GateResult
from harness.store import RunRecord, Store
from harness.store.record import CurvePoint, Run, StoredRun


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    store, runs = build_store(tmp / "h.duckdb")
    out = tmp / "reports"
    paths = write_reports(store, out)
    return {"out": out, "paths": paths, "runs": runs,
            "index": (out / "index.html").read_text(encoding="utf-8"),
            "sarcasm": (out / "sarcasm.html").read_text(encoding="utf-8"),
            "other": (out / "headlines.v2.html").read_text(encoding="utf-8"),
            "bare": (out / "baselines-only.html").read_text(encoding="utf-8")}


def test_files_exist(reports):
    out = reports["out"]
    assert {p.name for p in reports["paths"]} == {"index.html", "sarcasm.html", "headlines.v2.html",
                                                  "baselines-only.html"}
    assert all(p.is_file() and p.parent == out.resolve() for p in reports["paths"])
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # atomic writes left no temp files


def page_verdict(html: str) -> str:
    """The label on the page's verdict badge (not some other "Fine-tune" on the page)."""
    found = re.search(r'<section class="card verdict \w+" id="verdict" data-verdict="([^"]+)">\s*'
                      r'<div class="big">([^<]+)</div>', html)
    assert found and found.group(1) == found.group(2), "no verdict badge on the page"
    return found.group(2)


def index_verdicts(html: str) -> list[str]:
    return re.findall(r'<td class="verdict-cell" data-verdict="[^"]+"><span class="badge \w+">([^<]+)</span>', html)


def test_verdicts_in_plain_words(reports):
    assert page_verdict(reports["sarcasm"]) == "Fine-tune"
    assert page_verdict(reports["other"]) == "Inconclusive"
    assert "Keep prompting" in reports["sarcasm"]  # the first run, in the history
    # the index lists experiments by name: baselines-only, headlines.v2, sarcasm
    assert index_verdicts(reports["index"]) == ["Keep prompting", "Inconclusive", "Fine-tune"]
    assert 'href="sarcasm.html"' in reports["index"] and 'href="headlines.v2.html"' in reports["index"]


def test_the_badge_is_the_decision():
    """The page asks judge.decision (tests/test_decision.py covers every combination)."""
    def run(status="complete", **outcomes):
        return StoredRun(run=Run("r", "x", status, datetime(2026, 1, 1)), metrics={}, approaches=[],
                         gates=[GateResult(g, o, "") for g, o in outcomes.items()])

    assert verdict(run(five_percent_rule="PASS", overfit="PASS"))["label"] == "Fine-tune"
    assert verdict(run(five_percent_rule="PASS", regression="INCONCLUSIVE"))["label"] == "Inconclusive"
    assert verdict(run(five_percent_rule="SKIP"))["label"] == "Keep prompting"  # nothing has beaten the prompts
    assert verdict(run("failed"))["label"] == "Run failed"


def test_baselines_only_page(reports):
    page = reports["bare"]
    assert page_verdict(page) == "Keep prompting" and "No training curves recorded" in page
    assert "no candidate declared" in page and "<script" not in page


def test_experiment_page_sections(reports):
    page = reports["sarcasm"]
    for approach in ("zero_shot", "few_shot_k8", "candidate"):
        row = rf"<tr class=\"(best|baseline|candidate)\">\s*<td class=\"approach\"><strong>{approach}</strong>"
        assert re.search(row, page)
    assert '<tr class="best">\n  <td class="approach"><strong>few_shot_k8</strong>' in page  # best baseline highlighted
    for gate in ("data_quality", "five_percent_rule", "overfit"):
        assert f"<code>{gate}</code>" in page
    assert 'class="chart"' in page and "<path d=\"M" in page  # loss curves drawn
    assert "train loss" in page and "val loss" in page
    assert "class=\"interval wide\"" in page
    assert "duplicates" in page and "2 duplicate rows" in page  # data-quality checks
    assert "0123456789abcdef" in page and "2.5.1" in page and "cd" * 32 in page  # provenance
    assert "3m 12s" in page  # training time
    assert 'data-kind="fixed"' in page and 'data-kind="broken"' in page  # flips, both ways
    assert "—" in page  # the NaN metric is a dash, not "nan"
    assert ">nan<" not in page.lower()


def test_history_lists_every_run_and_what_changed(reports):
    page = reports["sarcasm"]
    first, broken, second = reports["runs"]
    for run_id in (first, broken, second):
        assert run_id in page
    assert "line 4 is not JSON" in page  # the failed run's error
    assert "candidate.learning_rate" in page and "data changed" in page
    assert "Run failed" in page


def test_hostile_text_is_escaped(reports):
    for html in (reports["sarcasm"], reports["index"], reports["other"], reports["bare"]):
        assert "<script>document" not in html and "</script><script>" not in html
        assert "<img src=x" not in html
        assert not re.search(r"""(href|src)\s*=\s*["']?\s*javascript:""", html, re.IGNORECASE)
    page = reports["sarcasm"]
    escaped = "&lt;script&gt;document.title=&#39;PWNED&#39;;alert(1)&lt;/script&gt;"
    assert page.count(escaped) >= 3  # the input (twice: XSS and CLOSE_SCRIPT) and the candidate's output
    assert "&lt;/script&gt;&lt;script&gt;" in page
    assert "&#34;&gt;&lt;img src=x id=pwned onerror=alert(1)&gt;" in page
    assert "javascript:document.title=&#39;PWNED&#39;" in page  # shown as text, never as a link
    # the only script is ours, and the CSP pins it by hash: injected scripts could not run anyway
    assert page.count("<script") == 1
    script = page.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src &#39;sha256-{digest}&#39;" in page
    assert "script-src &#39;none&#39;" in reports["index"]


def test_self_contained(reports):
    for html in (reports["sarcasm"], reports["index"], reports["other"], reports["bare"]):
        assert "http://" not in html and "https://" not in html
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
        assert "<link" not in html


def test_output_path_stays_inside_out_dir(tmp_path):
    for bad in ("../x", "/etc/passwd", "a/b", "..", ".hidden", "", "x" * 65, "a\\b", "a\x00"):
        with pytest.raises(ReportError):
            safe_path(tmp_path, bad)
    assert safe_path(tmp_path, "sarcasm") == (tmp_path / "sarcasm.html").resolve()


def test_hostile_experiment_name_in_store_is_refused(tmp_path):
    store = Store(tmp_path / "h.duckdb")
    run = store.start_run("../evil", spec_file=None, config={})
    store.finish_run(run, RunRecord())
    store.start_run("fine", spec_file=None, config={})
    out = tmp_path / "deep" / "out"
    paths = write_reports(store, out)
    assert sorted(p.name for p in paths) == ["fine.html", "index.html"]
    assert not (tmp_path / "deep" / "evil.html").exists()
    assert sorted(p.name for p in out.iterdir()) == ["fine.html", "index.html"]
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "refusing to write a report page" in index and 'href="../' not in index


def test_case_clash_and_reserved_names(tmp_path):
    store = Store(tmp_path / "h.duckdb")
    for name in ("index", "Sarcasm", "sarcasm"):
        store.start_run(name, spec_file=None, config={})
    paths = write_reports(store, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert len(set(n.casefold() for n in names)) == 4 and "index.html" in names
    index = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "No complete run" in index


def test_empty_store(tmp_path):
    paths = write_reports(Store(tmp_path / "h.duckdb"), tmp_path / "out")
    assert [p.name for p in paths] == ["index.html"]


def test_charts_handle_empty_and_nan():
    assert line_chart([]) is None
    assert line_chart([{"label": "val", "points": [(1, float("nan"))]}]) is None
    svg = line_chart([{"label": "<b>", "points": [(0, 1.0), (1, float("nan")), (2, 0.5)]}], title="t")
    assert "<svg" in svg and "&lt;b&gt;" in svg and "nan" not in svg.lower()
    assert interval_chart(None, None, None, 0.05) is None
    assert "<rect" in interval_chart(0.1, 0.02, 0.18, 0.05, True, "INCONCLUSIVE")
    assert sparkline([None, float("nan")]) is None
    assert "<polyline" in sparkline([0.5, None, 0.7])
    ticks = nice_ticks(0.013, 0.87)
    assert ticks[0] <= 0.013 and ticks[-1] >= 0.87 and all(math.isfinite(t) for t in ticks)


def test_long_configs_fold_into_details(reports):
    page = reports["sarcasm"]
    assert page.count('<details class="config">') == 3 and '<details class="config" open' not in page
    # the one-line brief names the first settings; the system prompt is only in the folded JSON
    assert '<span class="mono">r=16, steps=60, device=cpu</span>' in page
    brief = page.split('<details class="config">', 1)[1].split("</summary>", 1)[0]
    assert "system_prompt" not in brief
    view = config_view({"name": "few_shot_k8", "k": 8, "system_prompt": "x" * 500, "shots": [["a", "1"]],
                         "seed": 0, "a": 1, "b": 2, "c": 3, "d": 4}, "few_shot_k8")
    assert view["brief"] == "k=8, a=1, b=2, c=3" and view["count"] == 9 and '"shots"' in view["full"]
    assert config_view({}, "x") is None and config_view(None, "x") is None


def test_loss_chart_axes():
    # a first evaluation at 5.3 and training ending near 0.2: a 26x range gets a log axis
    rows = [CurvePoint("candidate", s, s / 60, "train", l) for s, l in ((10, 2.7), (20, 0.27), (60, 0.22), (120, 0.18))]
    rows += [CurvePoint("candidate", s, s / 60, "val", l) for s, l in ((0, 5.27), (60, 0.23), (120, 0.2))]
    svg = str(loss_curves(rows)[0]["svg"])
    assert "loss (log scale)" in svg and "training step" in svg
    assert "epoch 1" in svg and "epoch 2" in svg
    assert log_ticks(0.18, 5.27) == [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
    assert log_ticks(1.0, 1.0) == [1.0, 2.0]
    assert "<path" in str(line_chart([{"label": "x", "points": [(0, 1.0), (1, 1.0)]}], log_y=True))
    assert epoch_marks([(30, 1.0), (60, 2.0)]) == [(30, "epoch 1"), (60, "epoch 2")]
    assert epoch_marks([]) == []
    flat = str(loss_curves([replace(r, loss=1 + r.step / 1000) for r in rows])[0]["svg"])
    assert "log scale" not in flat and ">loss<" in flat


def test_interval_chart_labels():
    svg = str(interval_chart(0.589, 0.432, 0.767, 0.05, True, "PASS", axis_label="relative uplift in accuracy"))
    for text in ("+58.9%", "+43.2%", "+76.7%", "bar +5.0%", "clears the bar", "relative uplift in accuracy", "80%"):
        assert f">{text}<" in svg
    compact = str(interval_chart(0.589, 0.432, 0.767, 0.05, True, "PASS", compact=True))
    assert 'class="interval compact"' in compact and "<text" not in compact


def _sweep_section(page: str) -> str:
    return page.split('<h2 id="sweep">', 1)[1].split('<h2 id="flips">', 1)[0]


def test_sweep_section(reports):
    page = reports["sarcasm"]
    assert '<a href="#sweep">sweep</a>' in page
    section = _sweep_section(page)
    # the one-line summary: counts by state, the winner with its settings and score, the cost
    summary = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", section.split("</p>", 1)[0]))
    assert "6 trials (3 complete, 2 pruned, 1 failed)" in summary
    assert f"best trial #{SWEEP_BEST} (r=16, learning_rate=2e-4, lr_scheduler=cosine, evals_per_epoch=2): " \
        f"accuracy on val 0.800" \
        in summary
    assert "12m 37s of trial time" in summary  # 190 + 64 + 192.5 + 3 + 120 + 188 = 757.5 s
    assert "240 optimizer steps (180 in complete trials, 60 in pruned" in summary and "0 in failed" in summary
    assert f"Optuna study <code>{SWEEP_STUDY}</code>" in section and f"came from it (trial #{SWEEP_BEST})" in section
    # one scatter per searched setting, each with the best trial ringed and the pruned in their strip
    assert section.count('<svg class="scatter"') == 3
    for param in ("r", "learning_rate", "lr_scheduler"):
        assert f"<h3>{param}</h3>" in section
    assert "<h3>evals_per_epoch</h3>" not in section  # the same in every trial: a column, not a plot
    assert section.count('class="pt best"') == 3 and section.count('class="pt pruned"') == 6
    assert section.count('class="pt complete"') == 6  # the failed trial has no dot
    assert "learning_rate (log scale)" in section and ">1e-4<" in section
    # every trial's validation loss on one chart: the two pruned ones dashed
    curves = section.split('id="sweep-curves"', 1)[1].split("</svg>", 1)[0]
    assert curves.count('stroke-dasharray="5 4"') == 2 + 1  # two pruned lines and their legend entry
    assert "validation loss" in curves and f"best (#{SWEEP_BEST})" in curves
    # the table: one row per trial, the best marked, the failed trial's error under its row
    table = section.split('<table id="sweep-table">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr class="([^"]*)" data-state="(\w+)">\s*<td class="num">#(\d+)', table)
    assert [(int(n), state) for _, state, n in rows] == [(0, "COMPLETE"), (1, "PRUNED"), (2, "COMPLETE"),
                                                         (3, "FAIL"), (4, "PRUNED"), (5, "COMPLETE")]
    assert [int(n) for cls, _, n in rows if "best" in cls] == [SWEEP_BEST]
    assert f'#{SWEEP_BEST} <span class="tag">best</span> <span class="tag">this run</span>' in table
    assert table.count('class="trial-error"') == 1 and "CUDA out of memory" in table
    assert "3m 12s" in table and "gpu-1:4242" in table and ">2e-5<" in table and ">failed</span>" in table


def test_sweep_not_from_the_shown_run(reports):
    # headlines.v2's candidate names no study: its most recent one is shown, saying so
    section = _sweep_section(reports["other"])
    assert "Optuna study <code>headlines.v2-new</code>" in section and "headlines.v2-old" not in section
    assert "did not come from this sweep" in section and "this run</span>" not in section
    assert "1 trial</strong> (1 complete, 0 pruned, 0 failed)" in section


def test_no_trials_no_sweep_section(reports):
    page = reports["bare"]
    assert 'id="sweep"' not in page and "#sweep" not in page and "Hyperparameter sweep" not in page


def test_sweep_hostile_text_is_escaped(reports):
    section = _sweep_section(reports["sarcasm"])
    assert "<script" not in section and "<img" not in section
    assert "OutOfMemoryError: CUDA out of memory &lt;/script&gt;&lt;script&gt;document.title=&#39;PWNED&#39;" \
        in section  # the failed trial's error
    assert '<td class="param mono">&lt;script&gt;document.title=&#39;PWNED&#39;;alert(1)&lt;/script&gt;</td>' \
        in section  # a param value, in the table
    assert ">&lt;script&gt;doc…<" in section  # the same value as a category on its scatter's axis
    assert "&#34;&gt;&lt;img src=x id=pwned onerror=alert(1)&gt;" in section  # the worker


def test_scatter_chart():
    assert scatter_chart([]) is None
    assert scatter_chart([{"x": float("nan"), "y": 0.5, "kind": "complete"}]) is None
    # only pruned trials: no scores, still a chart of where they were
    svg = str(scatter_chart([{"x": 1, "y": None, "kind": "pruned", "label": "<b>"}], title="t"))
    assert 'class="pt pruned"' in svg and ">pruned<" in svg and "&lt;b&gt;" in svg and "<b>" not in svg
    # two trials on the same spot are set side by side, not one on the other
    svg = str(scatter_chart([{"x": 8, "y": 0.7, "kind": "complete"}, {"x": 8, "y": 0.7, "kind": "complete"}]))
    assert len(set(re.findall(r'class="pt complete" cx="([\d.]+)"', svg))) == 2
    assert ">pruned<" not in svg  # no strip without pruned trials
    assert [fmt_float(x) for x in (1e-4, 2.5e-5, 0.001, 0.05, 2.0, 0.0)] == \
        ["1e-4", "2.5e-5", "1e-3", "0.05", "2", "0"]


def _ceiling_store(path) -> Store:
    """One run whose label-scored approaches carry separation metrics (harness/scoring/separation.py)."""
    store = Store(path)
    run = store.start_run("sarcasm", spec_file=None, config=experiment_config())
    numbers = {  # approach: (test accuracy, label AUC, best cut)
        "system/zero_shot": (0.463, 0.42, 0.537), "few_shot_k8_balanced": (0.463, 0.51, 0.545),
        "few_shot_k8_nearest+batch_calibrated": (0.64, 0.70, 0.66), "candidate": (0.735, 0.82, 0.745)}
    metrics = []
    for name, (acc, auc, cut) in numbers.items():
        metrics += [{"approach": name, "split": "test", "metric": m, "value": v} for m, v in
                    (("accuracy", acc), ("label_auc", auc), ("best_threshold_accuracy", cut),
                     ("majority_class_rate", 0.463))]
        metrics.append({"approach": name, "split": "val", "metric": "accuracy", "value": acc})
    refs = ["1"] * 37 + ["0"] * 43  # "0" is the most common answer on test
    store.finish_run(run, RunRecord(
        approaches=[{"approach": n, "kind": "candidate" if n == "candidate" else "baseline", "config": {}}
                    for n in numbers],
        metrics=metrics,
        predictions=[{"approach": "few_shot_k8_nearest+batch_calibrated", "split": "test", "idx": i,
                      "example_key": str(i), "input": f"h{i}", "reference": r, "prediction": r, "score": 1.0}
                     for i, r in enumerate(refs)],
        gates=[{"gate": "five_percent_rule", "outcome": "PASS", "message": "m",
                "details": {"metric": "accuracy", "baseline": "few_shot_k8_nearest+batch_calibrated",
                            "uplift": 0.148, "low": 0.06, "high": 0.24, "threshold": 0.05, "relative": True}}],
        run_fields={"task": "classification", "key_metric": "accuracy"}))
    return store


def test_the_report_says_whether_a_prompt_could_do_better(tmp_path):
    out = tmp_path / "reports"
    write_reports(_ceiling_store(tmp_path / "h.duckdb"), out)
    page = (out / "sarcasm.html").read_text(encoding="utf-8")
    section = page[page.index('id="ceiling"'):page.index('id="curves"')]
    assert 'Always answering "0" scores 0.463 on test. The best baseline, few_shot_k8_nearest+batch_calibrated, ' \
           'scores 0.640: +17.7 points above it.' in section.replace("&#34;", '"')
    assert "2 of 3 prompt baselines rank the classes barely better than chance or worse (test AUC 0.42-0.51)" in section
    assert "reaches only 0.545" in section
    assert "No prompt here could score more than 0.660 however its scores were calibrated" in section
    assert "the candidate scores 0.735 with no such help (AUC 0.82 vs 0.70)" in section
    assert "recalibrating these prompts cannot close it" in section
    # the separation numbers live in their own table, not as columns of the approaches table
    table = page[page.index('id="approach-table"'):page.index('id="ceiling"')]
    assert "label_auc" not in table and "best_threshold_accuracy" not in table
    # the score chart marks each best cut and the line of always answering the most common label
    assert table.count("best cut of its label scores: ") == 4 and "stroke-dasharray" in table


def test_no_ceiling_section_without_label_scores(reports):
    assert 'id="ceiling"' not in reports["sarcasm"]


def test_the_headline_says_when_the_exact_test_held_a_pass_back():
    from harness.judge.decision import decide
    from harness.judge.outcomes import GateResult
    from harness.report.summary import headline

    rule = GateResult("five_percent_rule", "INCONCLUSIVE", "", {"exact_gain_p": 0.035, "discordant": [1, 7]})
    summary = {"threshold": 0.005, "relative": False, "key": "exact_match", "baseline": "retrieval", "uplift": 0.06,
               "low": 0.01, "high": 0.12, "confidence": 0.95}
    text = headline(summary, decide([rule]))
    assert "clears the 0.5-point bar, but it rests on 8 rows where the two answers differ" in text
    assert "straddles" not in text
