"""HTML reports: rendered from the store alone, escaped, self-contained, inside out_dir."""
from __future__ import annotations

import base64
import hashlib
import math
import re
from datetime import datetime, timedelta

import pytest

from harness.report import (
    ReportError,
    _config_view,
    _curves,
    _epoch_marks,
    _float_text,
    _safe_path,
    interval_chart,
    line_chart,
    log_ticks,
    nice_ticks,
    scatter_chart,
    sparkline,
    verdict,
    write_reports,
)
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
            hostile: bool = False, sweep: dict | None = None) -> RunRecord:
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
            {"approach": "candidate", "kind": "candidate",
             "config": {"r": 16, "steps": 60, "device": "cpu", **({"sweep": sweep} if sweep else {})},
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


SWEEP_STUDY = "sarcasm-3f2a9c"
SWEEP_BEST = 2   # the trial with the highest validation accuracy, and the one the fine-tune run used
T0 = datetime(2025, 3, 1, 9, 0)


def _trial(study: str, experiment: str, number: int, state: str, params: dict, value: float | None,
           val_losses: list[tuple[int, float]], *, seconds: float = 60.0, worker: str = "gpu-1:4242",
           error: str | None = None) -> dict:
    steps = max((s for s, _ in val_losses), default=0)
    return {"study": study, "experiment": experiment, "number": number, "state": state, "params": params,
            "key_metric": "accuracy", "value": value,
            "val_metrics": {"accuracy": value} if value is not None else {},
            "curves": [{"step": s, "epoch": s / 30, "split": "val", "loss": loss} for s, loss in val_losses]
            + [{"step": s, "epoch": s / 30, "split": "train", "loss": loss + 0.1} for s, loss in val_losses],
            "steps": steps, "adapter_path": f"runs/{study}/trial-{number}" if state == "COMPLETE" else None,
            "adapter_sha256": None, "seconds": seconds, "worker": worker,
            "started_at": T0 + timedelta(minutes=2 * number),
            "finished_at": T0 + timedelta(minutes=2 * number, seconds=seconds), "error": error}


def _sweep_trials() -> list[dict]:
    """sarcasm's sweep: three complete trials, two pruned, one failed, hostile text in a param
    value, a worker name and an error; headlines.v2: two studies, neither its candidate's."""
    full = [(20, 1.2), (40, 0.9), (60, 0.8)]
    cosine = "cosine"
    return [
        _trial(SWEEP_STUDY, "sarcasm", 0, "COMPLETE", {"r": 8, "learning_rate": 1e-4, "lr_scheduler": cosine, "evals_per_epoch": 2},
               0.70, full, seconds=190.0),
        _trial(SWEEP_STUDY, "sarcasm", 1, "PRUNED", {"r": 16, "learning_rate": 2e-5, "lr_scheduler": cosine, "evals_per_epoch": 2},
               None, [(20, 1.9)], seconds=64.0),
        _trial(SWEEP_STUDY, "sarcasm", SWEEP_BEST, "COMPLETE",
               {"r": 16, "learning_rate": 2e-4, "lr_scheduler": cosine, "evals_per_epoch": 2}, 0.80, [(20, 1.0), (40, 0.7), (60, 0.6)],
               seconds=192.5),
        _trial(SWEEP_STUDY, "sarcasm", 3, "FAIL", {"r": 64, "learning_rate": 1e-3, "lr_scheduler": cosine, "evals_per_epoch": 2},
               None, [], seconds=3.0, worker=ATTR_XSS, error=f"OutOfMemoryError: CUDA out of memory {CLOSE_SCRIPT}"),
        _trial(SWEEP_STUDY, "sarcasm", 4, "PRUNED", {"r": 8, "learning_rate": 5e-5, "lr_scheduler": XSS, "evals_per_epoch": 2},
               None, [(20, 2.1), (40, 1.8)], seconds=120.0),
        _trial(SWEEP_STUDY, "sarcasm", 5, "COMPLETE", {"r": 32, "learning_rate": 5e-4, "lr_scheduler": XSS, "evals_per_epoch": 2},
               0.75, [(20, 1.1), (40, 0.8), (60, 0.9)], seconds=188.0),
        _trial("headlines.v2-old", "headlines.v2", 0, "COMPLETE", {"r": 8}, 0.6, [(10, 1.0)]),
        _trial("headlines.v2-new", "headlines.v2", 7, "COMPLETE", {"alpha": 16}, 0.7, [(10, 0.9)]),
    ]


def build_store(path) -> tuple[Store, tuple[str, str, str]]:
    """The synthetic store every report test reads (tests/test_report_browser.py too).

    sarcasm: a run that keeps prompting, a failed run, then a fine-tune run full of hostile text
    whose candidate is the best trial of a sweep; headlines.v2: an inconclusive rule, and sweep
    trials its candidate did not come from; baselines-only: no candidate, the rule skipped, no sweep.
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
                                     outcome="PASS", data_sha="22" * 32, hostile=True,
                                     sweep={"study": SWEEP_STUDY, "trial": SWEEP_BEST,
                                            "params": {"r": 16, "learning_rate": 2e-4, "lr_scheduler": "cosine"}}))
    store.record_trials(_sweep_trials())
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
        return {"status": status, "gates": [{"gate": g, "outcome": o} for g, o in outcomes.items()]}

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
    assert [_float_text(x) for x in (1e-4, 2.5e-5, 0.001, 0.05, 2.0, 0.0)] == \
        ["1e-4", "2.5e-5", "1e-3", "0.05", "2", "0"]


def _ceiling_store(path) -> Store:
    """One run whose label-scored approaches carry separation metrics (harness/scoring/separation.py)."""
    store = Store(path)
    run = store.start_run("sarcasm", spec_file=None, config=_config())
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
