"""HTML reports: rendered from the store alone, escaped, self-contained, inside out_dir."""
from __future__ import annotations

import base64
import hashlib
import math
import re

import pytest

from harness.report import (ReportError, _config_view, _curves, _epoch_marks, _safe_path, interval_chart,
                            line_chart, log_ticks, nice_ticks, sparkline, verdict, write_reports)
from harness.store import RunRecord, Store

# Hostile text planted in the synthetic store (model outputs and data rows are untrusted). Each one,
# if it ever ran, would open a dialog and leave a trace the browser test looks for: a changed
# document.title or an element that only the payload creates.
XSS = "<script>document.title='PWNED';alert(1)</script>"
ATTR_XSS = '"><img src=x id=pwned onerror=alert(1)>'
JS_URL = "javascript:document.title='PWNED';alert(1)"
CLOSE_SCRIPT = "</script><script>document.title='PWNED';alert(1)</script>"


def _config(lr: float = 2e-4) -> dict:
    return {"name": "sarcasm", "metric": "accuracy", "threshold": 0.05, "relative": True,
            "baselines": [{"name": "zero_shot"}, {"name": "few_shot_k8", "k": 8}],
            "candidate": {"r": 16, "alpha": 32, "learning_rate": lr, "epochs": 2}}


def _provenance() -> dict:
    return {"git_commit": "0123456789abcdef0123456789abcdef01234567",
            "versions": {"torch": "2.5.1", "transformers": "5.0.0", "duckdb": "1.1.3"},
            "hardware": {"platform": "Linux-x86_64", "device": "cpu", "cpus": 2},
            "seeds": {"split": 0, "train": 0, "bootstrap": 0}}


def _record(*, candidate_right: list[int], baseline_right: list[int], outcome: str, data_sha: str,
            hostile: bool = False) -> RunRecord:
    n = len(candidate_right)
    cand_acc, base_acc = sum(candidate_right) / n, sum(baseline_right) / n
    uplift = (cand_acc - base_acc) / base_acc
    predictions = []
    for approach, right in (("few_shot_k8", baseline_right), ("candidate", candidate_right)):
        for i, ok in enumerate(right):
            text, reference = f"headline {i}", "sarcastic"
            if hostile and i == 0:
                text = f"{XSS} {ATTR_XSS} {CLOSE_SCRIPT}"
                reference = JS_URL
            predictions.append({"approach": approach, "split": "test", "idx": i,
                                "example_key": ATTR_XSS if hostile and i == 0 else f"line-{i + 1}",
                                "input": text, "reference": reference,
                                "prediction": (XSS if hostile and approach == "candidate" else "sarcastic") if ok
                                else "literal", "score": float(ok)})
    return RunRecord(
        checks=[{"name": "duplicates", "level": "warning", "message": "2 duplicate rows", "lines": [3, 7]},
                {"name": "label_balance", "level": "info", "message": "60/40", "lines": []}],
        approaches=[
            {"approach": "candidate", "kind": "candidate", "config": {"r": 16, "steps": 60, "device": "cpu"},
             "prompt_tokens": 41.0, "latency_p50_ms": 31.0, "latency_p95_ms": 55.0, "train_seconds": 192.5,
             "adapter_path": JS_URL if hostile else "runs/x/adapter", "adapter_sha256": "ab" * 32},
            {"approach": "zero_shot", "kind": "baseline",
             "config": {"k": 0, "system_prompt": CLOSE_SCRIPT if hostile else "Label the headline."},
             "prompt_tokens": 60.0,
             "latency_p50_ms": 35.0, "latency_p95_ms": 60.0},
            {"approach": "few_shot_k8", "kind": "baseline", "config": {"k": 8}, "prompt_tokens": 412.0,
             "latency_p50_ms": 120.0, "latency_p95_ms": 180.0},
        ],
        metrics=[
            {"approach": "zero_shot", "split": "val", "metric": "accuracy", "value": 0.55},
            {"approach": "zero_shot", "split": "test", "metric": "accuracy", "value": 0.52},
            {"approach": "zero_shot", "split": "test", "metric": "macro_f1", "value": 0.50},
            {"approach": "few_shot_k8", "split": "val", "metric": "accuracy", "value": 0.66},
            {"approach": "few_shot_k8", "split": "test", "metric": "accuracy", "value": base_acc},
            {"approach": "few_shot_k8", "split": "test", "metric": "macro_f1", "value": 0.61},
            {"approach": "candidate", "split": "val", "metric": "accuracy", "value": 0.8},
            {"approach": "candidate", "split": "test", "metric": "accuracy", "value": cand_acc},
            {"approach": "candidate", "split": "test", "metric": "macro_f1", "value": float("nan")},
            {"approach": "candidate", "split": "train", "metric": "accuracy", "value": 0.9},
        ],
        predictions=predictions,
        curves=[{"approach": "candidate", "step": s, "epoch": s / 30, "split": "train", "loss": 2.0 / (1 + s / 10)}
                for s in range(0, 61, 5)]
        # the fine-tune run also evaluates before training (step 0, loss 5.0), as real runs do: its
        # loss spans more than 10x and gets a log axis; the other runs keep a linear one
        + [{"approach": "candidate", "step": s, "epoch": s / 30, "split": "val",
            "loss": 5.0 if s == 0 else 1.5 / (1 + s / 20)}
           for s in ((0, 20, 40, 60) if hostile else (20, 40, 60))],
        gates=[
            {"gate": "data_quality", "outcome": "PASS", "message": "no errors, 1 warning(s)", "details": {}},
            {"gate": "five_percent_rule", "outcome": outcome,
             "message": f"accuracy {cand_acc:.3f} vs few_shot_k8 {base_acc:.3f}, uplift {uplift * 100:+.1f}%",
             "details": {"metric": "accuracy", "baseline": "few_shot_k8", "baseline_score": base_acc,
                         "candidate_score": cand_acc, "uplift": uplift, "low": uplift - 0.08, "high": uplift + 0.08,
                         "threshold": 0.05, "relative": True, "n": n, "mcnemar_p": 0.01}},
            {"gate": "overfit", "outcome": "PASS", "message": "no sign of overfitting", "details": {}},
        ],
        run_fields={"task": "classification", "key_metric": "accuracy", "model": "smollm2-135m-instruct",
                    "model_sha256": "cd" * 32,
                    "data_path": JS_URL if hostile else "experiments/data/sarcasm.jsonl",
                    "data_sha256": data_sha, "test_sha256": "ef" * 32, "provenance": _provenance()},
    )


def build_store(path) -> tuple[Store, tuple[str, str, str]]:
    """The synthetic store every report test reads (tests/test_report_browser.py too).

    sarcasm: a run that keeps prompting, a failed run, then a fine-tune run full of hostile text;
    headlines.v2: an inconclusive rule; baselines-only: no candidate, the rule skipped.
    Returns the store and the three sarcasm run ids, oldest first.
    """
    store = Store(path)
    # sarcasm: a first run that keeps prompting, a failed run, then one that says fine-tune.
    first = store.start_run("sarcasm", spec_file="experiments/test_sarcasm.py", config=_config(),
                            provenance=_provenance())
    store.finish_run(first, _record(candidate_right=[1, 0, 1, 0, 1, 1, 0, 1], baseline_right=[1, 1, 1, 0, 1, 1, 0, 1],
                                    outcome="FAIL", data_sha="11" * 32))
    broken = store.start_run("sarcasm", spec_file="experiments/test_sarcasm.py", config=_config(),
                             provenance=_provenance())
    store.fail_run(broken, "DataError: sarcasm: data file experiments/data/sarcasm.jsonl: line 4 is not JSON")
    second = store.start_run("sarcasm", spec_file="experiments/test_sarcasm.py", config=_config(lr=1e-4),
                             provenance=_provenance())
    store.finish_run(second, _record(candidate_right=[0, 1, 1, 1, 1, 1, 1, 1], baseline_right=[1, 0, 0, 1, 0, 1, 1, 0],
                                     outcome="PASS", data_sha="22" * 32, hostile=True))
    # a second experiment whose rule is inconclusive
    other = store.start_run("headlines.v2", spec_file=None, config=_config(), provenance=None)
    store.finish_run(other, _record(candidate_right=[1, 0, 1, 1], baseline_right=[1, 0, 1, 0],
                                    outcome="INCONCLUSIVE", data_sha="33" * 32))
    # a third, baselines only: no candidate, no curves, the rule skipped
    bare = store.start_run("baselines-only", spec_file=None, config={"metric": "accuracy"})
    store.finish_run(bare, RunRecord(
        approaches=[{"approach": "zero_shot", "kind": "baseline", "config": {}}],
        metrics=[{"approach": "zero_shot", "split": "test", "metric": "accuracy", "value": 0.5}],
        gates=[{"gate": "five_percent_rule", "outcome": "SKIP", "message": "no candidate declared; baselines only"}],
        run_fields={"key_metric": "accuracy"}))
    return store, (first, broken, second)


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


def test_verdicts_in_plain_words(reports):
    assert "Fine-tune" in reports["sarcasm"]
    assert "Inconclusive" in reports["other"]
    assert "Keep prompting" in reports["sarcasm"]  # the first run, in the history
    index = reports["index"]
    assert "Fine-tune" in index and "Inconclusive" in index
    assert 'href="sarcasm.html"' in index and 'href="headlines.v2.html"' in index


def test_verdict_rules():
    def run(**outcomes):
        return {"status": "complete", "gates": [{"gate": g, "outcome": o} for g, o in outcomes.items()]}

    assert verdict(run(five_percent_rule="PASS", overfit="PASS"))["label"] == "Fine-tune"
    assert verdict(run(five_percent_rule="PASS", overfit="FAIL"))["label"] == "Inconclusive"
    assert verdict(run(five_percent_rule="FAIL", overfit="PASS"))["label"] == "Keep prompting"
    assert verdict(run(five_percent_rule="INCONCLUSIVE"))["label"] == "Inconclusive"
    assert verdict(run(five_percent_rule="SKIP"))["label"] == "Inconclusive"
    assert verdict({"status": "failed", "gates": []})["label"] == "Run failed"


def test_baselines_only_page(reports):
    page = reports["bare"]
    assert "Inconclusive" in page and "No training curves recorded" in page
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
            _safe_path(tmp_path, bad)
    assert _safe_path(tmp_path, "sarcasm") == (tmp_path / "sarcasm.html").resolve()


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
    view = _config_view({"name": "few_shot_k8", "k": 8, "system_prompt": "x" * 500, "shots": [["a", "1"]],
                         "seed": 0, "a": 1, "b": 2, "c": 3, "d": 4}, "few_shot_k8")
    assert view["brief"] == "k=8, a=1, b=2, c=3" and view["count"] == 9 and '"shots"' in view["full"]
    assert _config_view({}, "x") is None and _config_view(None, "x") is None


def test_loss_chart_axes():
    # a first evaluation at 5.3 and training ending near 0.2: a 26x range gets a log axis
    rows = [{"approach": "candidate", "step": s, "epoch": s / 60, "split": "train", "loss": l}
            for s, l in ((10, 2.7), (20, 0.27), (60, 0.22), (120, 0.18))]
    rows += [{"approach": "candidate", "step": s, "epoch": s / 60, "split": "val", "loss": l}
             for s, l in ((0, 5.27), (60, 0.23), (120, 0.2))]
    svg = str(_curves(rows)[0]["svg"])
    assert "loss (log scale)" in svg and "training step" in svg
    assert "epoch 1" in svg and "epoch 2" in svg
    assert log_ticks(0.18, 5.27) == [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
    assert log_ticks(1.0, 1.0) == [1.0, 2.0]
    assert "<path" in str(line_chart([{"label": "x", "points": [(0, 1.0), (1, 1.0)]}], log_y=True))
    assert _epoch_marks([(30, 1.0), (60, 2.0)]) == [(30, "epoch 1"), (60, "epoch 2")]
    assert _epoch_marks([]) == []
    flat = str(_curves([{**r, "loss": 1 + r["step"] / 1000} for r in rows])[0]["svg"])
    assert "log scale" not in flat and ">loss<" in flat


def test_interval_chart_labels():
    svg = str(interval_chart(0.589, 0.432, 0.767, 0.05, True, "PASS", axis_label="relative uplift in accuracy"))
    for text in ("+58.9%", "+43.2%", "+76.7%", "bar +5.0%", "clears the bar", "relative uplift in accuracy", "80%"):
        assert f">{text}<" in svg
    compact = str(interval_chart(0.589, 0.432, 0.767, 0.05, True, "PASS", compact=True))
    assert 'class="interval compact"' in compact and "<text" not in compact
