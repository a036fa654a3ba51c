"""The synthetic store the report tests read (tests/test_report.py and tests/test_report_browser.py).

Three experiments, built through the real `Store` API:

- sarcasm: a run that keeps prompting, a failed run, then a fine-tune run full of hostile text
  whose candidate is the best trial of a sweep;
- headlines.v2: an inconclusive rule, and sweep trials its candidate did not come from;
- baselines-only: no candidate, the rule skipped, no sweep.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from harness.store import RunRecord, Store

# Hostile text planted in the synthetic store (model outputs and data rows are untrusted). Each one,
# if it ever ran, would open a dialog and leave a trace the browser test looks for: a changed
# document.title or an element that only the payload creates.
XSS = "<script>document.title='PWNED';alert(1)</script>"
ATTR_XSS = '"><img src=x id=pwned onerror=alert(1)>'
JS_URL = "javascript:document.title='PWNED';alert(1)"
CLOSE_SCRIPT = "</script><script>document.title='PWNED';alert(1)</script>"


def experiment_config(lr: float = 2e-4) -> dict:
    """The sarcasm spec as the store records it; lr is the candidate's learning rate."""
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

    def params(r: int, learning_rate: float, lr_scheduler: str = "cosine") -> dict:
        return {"r": r, "learning_rate": learning_rate, "lr_scheduler": lr_scheduler, "evals_per_epoch": 2}

    return [
        _trial(SWEEP_STUDY, "sarcasm", 0, "COMPLETE", params(8, 1e-4), 0.70, full, seconds=190.0),
        _trial(SWEEP_STUDY, "sarcasm", 1, "PRUNED", params(16, 2e-5), None, [(20, 1.9)], seconds=64.0),
        _trial(SWEEP_STUDY, "sarcasm", SWEEP_BEST, "COMPLETE", params(16, 2e-4), 0.80,
               [(20, 1.0), (40, 0.7), (60, 0.6)], seconds=192.5),
        _trial(SWEEP_STUDY, "sarcasm", 3, "FAIL", params(64, 1e-3), None, [], seconds=3.0, worker=ATTR_XSS,
               error=f"OutOfMemoryError: CUDA out of memory {CLOSE_SCRIPT}"),
        _trial(SWEEP_STUDY, "sarcasm", 4, "PRUNED", params(8, 5e-5, XSS), None, [(20, 2.1), (40, 1.8)], seconds=120.0),
        _trial(SWEEP_STUDY, "sarcasm", 5, "COMPLETE", params(32, 5e-4, XSS), 0.75, [(20, 1.1), (40, 0.8), (60, 0.9)],
               seconds=188.0),
        _trial("headlines.v2-old", "headlines.v2", 0, "COMPLETE", {"r": 8}, 0.6, [(10, 1.0)]),
        _trial("headlines.v2-new", "headlines.v2", 7, "COMPLETE", {"alpha": 16}, 0.7, [(10, 0.9)]),
    ]


def build_store(path) -> tuple[Store, tuple[str, str, str]]:
    """The synthetic store at path (see the module docstring). Returns the store and the three
    sarcasm run ids, oldest first."""
    store = Store(path)
    # sarcasm: a first run that keeps prompting, a failed run, then one that says fine-tune.
    first = store.start_run("sarcasm", spec_file="experiments/test_sarcasm.py", config=experiment_config(),
                            provenance=_provenance())
    store.finish_run(first, _record(candidate_right=[1, 0, 1, 0, 1, 1, 0, 1], baseline_right=[1, 1, 1, 0, 1, 1, 0, 1],
                                    outcome="FAIL", data_sha="11" * 32))
    broken = store.start_run("sarcasm", spec_file="experiments/test_sarcasm.py", config=experiment_config(),
                             provenance=_provenance())
    store.fail_run(broken, "DataError: sarcasm: data file experiments/data/sarcasm.jsonl: line 4 is not JSON")
    second = store.start_run("sarcasm", spec_file="experiments/test_sarcasm.py", config=experiment_config(lr=1e-4),
                             provenance=_provenance())
    store.finish_run(second, _record(candidate_right=[0, 1, 1, 1, 1, 1, 1, 1], baseline_right=[1, 0, 0, 1, 0, 1, 1, 0],
                                     outcome="PASS", data_sha="22" * 32, hostile=True,
                                     sweep={"study": SWEEP_STUDY, "trial": SWEEP_BEST,
                                            "params": {"r": 16, "learning_rate": 2e-4, "lr_scheduler": "cosine"}}))
    store.record_trials(_sweep_trials())
    # a second experiment whose rule is inconclusive
    other = store.start_run("headlines.v2", spec_file=None, config=experiment_config(), provenance=None)
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
