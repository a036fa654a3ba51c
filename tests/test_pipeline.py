"""The pipeline on the tiny model, called directly (no pytest plugin in between)."""
import csv
import re

import pytest

from harness import Experiment, baselines
from harness._engine import run_experiment
from harness._engine.events import of
from harness.store import Store


def test_a_csv_with_a_column_mapping_in_the_spec_runs(tmp_path, tiny_model_dir):
    with open(tmp_path / "data.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["headline", "is_sarcastic"])
        for i in range(60):
            w.writerow([f"area man {i}" if i % 2 else f"senate bill {i}", str(i % 2)])
    (tmp_path / "s.md").write_text("answer 1 or 0")
    spec = Experiment(name="csv", data="data.csv", model=str(tiny_model_dir), split=(40, 10, 10),
                      columns={"input": "headline", "output": "is_sarcastic"},
                      baselines=[baselines.zero_shot("s.md")], regression=None, forgetting=None)
    store = Store(tmp_path / "h.duckdb")
    result = run_experiment(spec, store, root=tmp_path, log=lambda _: None)
    assert result.task == "classification" and result.candidate is None
    assert result.gates["five_percent_rule"].outcome == "SKIP"
    [run] = store.runs("csv")
    assert run.status == "complete"
    preds = store.rows("predictions", run.run_id, split="test")
    assert len(preds) == 10 and {p["reference"] for p in preds} <= {"0", "1"}
    assert preds[0]["input"].startswith(("area man", "senate bill"))


def test_a_candidate_that_cannot_fit_fails_before_training(tmp_path, tiny_model_dir, monkeypatch):
    import pytest
    from tiny import write_classification_jsonl

    from harness import QLoRA
    from harness.candidate import estimate
    from harness.errors import ModelError

    write_classification_jsonl(tmp_path / "data.jsonl", n=40)
    (tmp_path / "s.md").write_text("answer 1 or 0")
    monkeypatch.setattr(estimate, "available_memory", lambda device="cuda": 64 * 2**20)  # a 64 MiB machine
    spec = Experiment(name="big", data="data.jsonl", model=str(tiny_model_dir), split=(24, 8, 8),
                      baselines=[baselines.zero_shot("s.md")], underpowered="warn", candidate=QLoRA(epochs=1), regression=None, forgetting=None)
    seen = []
    store = Store(tmp_path / "h.duckdb")
    with pytest.raises(ModelError, match=r"big: not training: QLoRA of .* needs ~0\.\d GiB .* but cpu has 0\.1 GiB"):
        run_experiment(spec, store, root=tmp_path, log=lambda _: None, on_event=seen.append)
    assert of(seen, "baseline.picked") and of(seen, "power.planned")  # it got as far as the candidate
    for kind in ("memory.checked", "training.progress", "candidate.trained"):
        assert not of(seen, kind), kind  # nothing trained
    tokens = int(re.search(r"batch 8 x (\d+) tokens", store.runs("big")[0].error).group(1))
    assert 15 <= tokens <= 60  # the longest templated train row, not the length of a dict
    [run] = store.runs("big")
    assert run.status == "failed" and "not training" in run.error


def test_baselines_are_scored_on_a_base_that_never_carries_the_adapter(tmp_path, tiny_model_dir):
    """peft attaches adapters in place; scoring baselines on test after training must still see
    the untouched base (a bug once made the baselines' test scores those of base + adapter)."""
    from tiny import write_classification_jsonl

    from harness import QLoRA
    from harness.data import load as load_data
    from harness.models import ResolvedModel, load_model, load_tokenizer
    from harness.prompting import prompts
    from harness.scoring import batched as scoring

    write_classification_jsonl(tmp_path / "data.jsonl", n=64)
    (tmp_path / "s.md").write_text("you label news headlines. answer with the label only: 1 or 0.")
    spec = Experiment(name="clean", data="data.jsonl", model=str(tiny_model_dir), split=(40, 8, 16),
                      baselines=[baselines.zero_shot("s.md")], regression=None, forgetting=None,
                      underpowered="warn", candidate=QLoRA(r=8, alpha=16, learning_rate=3e-2, epochs=3, warmup_ratio=0.0))
    store = Store(tmp_path / "h.duckdb")
    result = run_experiment(spec, store, root=tmp_path, log=lambda _: None)
    run_id = store.runs("clean")[0].run_id
    stored = store.rows("predictions", run_id, approach="zero_shot", split="test")
    resolved = ResolvedModel("tiny", str(tiny_model_dir), "x")
    tokenizer = load_tokenizer(resolved)
    tokenizer.padding_side = "left"
    system = (tmp_path / "s.md").read_text()
    samples = {s.input_text: s for s in load_data(tmp_path / "data.jsonl").samples}
    rendered = [scoring.render(tokenizer, prompts.baseline_messages(samples[p["input"]], system, []))
                for p in stored]
    fresh = scoring.score_labels(load_model(resolved, quantize=True), tokenizer, rendered, ["0", "1"])
    assert [p["prediction"] for p in stored] == fresh.predictions
    candidate = store.rows("predictions", run_id, approach="candidate", split="test")
    assert [p["prediction"] for p in candidate] != fresh.predictions  # the adapter does change answers
    assert result.baselines["zero_shot"].metrics["test"]["accuracy"] == \
        sum(p == s["reference"] for p, s in zip(fresh.predictions, stored)) / len(stored)


def test_perplexity_of_references_and_label_generation_agreement_are_reported(tmp_path, tiny_model_dir):
    import math

    from tiny import write_classification_jsonl

    from harness import QLoRA

    write_classification_jsonl(tmp_path / "data.jsonl", n=48)
    (tmp_path / "s.md").write_text("answer 1 or 0")
    spec = Experiment(name="ppl", data="data.jsonl", model=str(tiny_model_dir), split=(24, 12, 12),
                      baselines=[baselines.zero_shot("s.md")], underpowered="warn", candidate=QLoRA(epochs=1, batch_size=8),
                      metrics=("perplexity",), regression=None, forgetting=None)
    store = Store(tmp_path / "h.duckdb")
    lines = []
    result = run_experiment(spec, store, root=tmp_path, log=lines.append)
    checked = {e.fields["approach"]: e.fields for e in of(result.events, "agreement.checked")}
    assert set(checked) == {"zero_shot", "candidate"}
    for approach in (result.baselines["zero_shot"], result.candidate):
        test = approach.metrics["test"]
        assert test["perplexity"] > 1 and math.isfinite(test["perplexity"])
        assert test["perplexity"] == pytest.approx(math.exp(-test["perplexity_mean_log_likelihood"]))
        assert 0 <= test["generation_valid_rate"] <= 1 and test["agreement_rows"] == 12
        agreement = test["label_generation_agreement"]
        assert math.isnan(agreement) if test["generation_valid_rate"] == 0 else 0 <= agreement <= 1
        facts = checked[approach.name]
        assert facts["rows"] == 12 and facts["valid"] == round(test["generation_valid_rate"] * 12)
        assert facts["agreement"] == agreement or math.isnan(agreement) and math.isnan(facts["agreement"])

    # The printed log is a contract too: it is the events' text, in order, and its key lines read as before.
    assert lines == [e.text for e in result.events if e.text]
    assert "ppl: classification, 24 train / 12 val / 12 test rows; key metric accuracy" in lines
    [picked] = of(result.events, "baseline.picked")
    assert f"ppl: best baseline on val: zero_shot (accuracy {picked.fields['value']:.3f})" in lines
    assert any(re.fullmatch(r"ppl: candidate: step 3/3 epoch 1\.00 loss \d+\.\d{4} \(\d+s elapsed, ~0s left\)", line)
               for line in lines), lines
    scored = {e.fields["approach"]: e.fields["scores"] for e in of(result.events, "approach.scored")}
    assert f"ppl: candidate accuracy val {scored['candidate']['val']:.3f}, test {scored['candidate']['test']:.3f}" \
        in lines
    assert scored["candidate"] == {s: v["accuracy"] for s, v in result.candidate.metrics.items()}
    [run] = store.runs("ppl")
    stored = {(m["approach"], m["split"], m["metric"]) for m in store.rows("metrics", run.run_id)}
    assert ("candidate", "test", "perplexity") in stored and ("zero_shot", "val", "perplexity") in stored
    assert ("candidate", "test", "label_generation_agreement") in stored
    # a rerun takes perplexity inputs and generations from the output cache
    rerun = run_experiment(spec, store, root=tmp_path, log=lambda _: None)
    assert rerun.candidate.metrics["test"]["perplexity"] == pytest.approx(result.candidate.metrics["test"]["perplexity"])
    from_cache = {e.fields["what"]: (e.fields["cached"], e.fields["total"]) for e in of(rerun.events, "scoring.cached")}
    for what in ("candidate test reference perplexity", "candidate greedy generation (agreement check)"):
        assert from_cache[f"ppl: {what}"] == (12, 12), from_cache
    assert of(rerun.events, "candidate.cached") and not of(rerun.events, "training.progress")


def test_a_generated_answer_gives_a_label_only_when_it_says_one():
    from harness.scoring.batched import generated_label

    labels = ["0", "1", "not sarcastic"]
    assert generated_label(" 1", labels) == "1"
    assert generated_label('"1."', labels) == "1"
    assert generated_label("Not sarcastic - it reports a fact", labels) == "not sarcastic"
    assert generated_label("10", labels) is None  # a different number, not label "1"
    assert generated_label("I think it is sarcastic", labels) is None
    assert generated_label("", labels) is None


def test_a_tie_on_the_key_metric_goes_to_the_prompt_that_tells_the_classes_apart():
    from harness._engine import Approach
    from harness._engine.baselines import selection_key

    one_class = Approach("one_class", "baseline", {}, metrics={"val": {"accuracy": 0.575, "macro_f1": 0.36}},
                         prompt_token_counts={"val": [40, 40]})
    both = Approach("both", "baseline", {}, metrics={"val": {"accuracy": 0.575, "macro_f1": 0.57}},
                    prompt_token_counts={"val": [200, 200]})
    short = Approach("short", "baseline", {}, metrics={"val": {"accuracy": 0.575, "macro_f1": 0.57}},
                     prompt_token_counts={"val": [60, 60]})
    assert max([one_class, both], key=lambda a: selection_key(a, "val", "accuracy")).name == "both"
    assert max([both, short], key=lambda a: selection_key(a, "val", "accuracy")).name == "short"
    better = Approach("better", "baseline", {}, metrics={"val": {"accuracy": 0.6, "macro_f1": 0.3}})
    assert max([both, better], key=lambda a: selection_key(a, "val", "accuracy")).name == "better"
    # generation: exact match 0 for every prompt a small model cannot follow; ROUGE breaks the tie
    closed = Approach("closed", "baseline", {}, metrics={"val": {"exact_match": 0.0, "rouge": 0.026}})
    retrieved = Approach("retrieved", "baseline", {}, metrics={"val": {"exact_match": 0.0, "rouge": 0.042}})
    assert max([closed, retrieved], key=lambda a: selection_key(a, "val", "exact_match", ["rouge"])).name \
        == "retrieved"
