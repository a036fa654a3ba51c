import json

import pytest
import torch
from tiny import write_classification_jsonl

from harness import data
from harness.errors import HarnessError
from harness.export import RECORD, export
from harness.files import adapter_sha256
from harness.models import load_model, resolve
from harness.prompting import prompts
from harness.scoring import batched as scoring
from harness.store import RunRecord, Store


def make_adapter(model_dir, out, seed=0):
    """A LoRA adapter on the tiny model whose B matrices are non-zero, so it changes the outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    model.save_pretrained(out)
    return out


def record_run(store, root, model_dir, adapter, experiment="toy", outcome="PASS", details=None):
    samples = data.load(root / "toy.jsonl").samples
    test = samples[-12:]
    run_id = store.start_run(experiment, spec_file=None, config={"name": experiment})
    predictions = [{"approach": a, "split": "test", "idx": i, "example_key": s.key, "input": s.input_text,
                    "reference": s.answer, "prediction": s.answer, "score": 1.0}
                   for a in ("candidate", "zero_shot") for i, s in enumerate(test)]
    record = RunRecord(
        approaches=[{"approach": "candidate", "kind": "candidate", "config": {"r": 4}, "prompt_tokens": 20.0,
                     "latency_p50_ms": 5.0, "train_seconds": 10.0, "adapter_path": str(adapter),
                     "adapter_sha256": adapter_sha256(adapter)},
                    {"approach": "zero_shot", "kind": "baseline", "config": {}, "prompt_tokens": 40.0,
                     "latency_p50_ms": 4.0}],
        predictions=predictions,
        gates=[{"gate": "data_quality", "outcome": "PASS", "message": "no errors", "details": {}},
               {"gate": "five_percent_rule", "outcome": outcome, "message": "accuracy 0.900 vs zero_shot 0.500",
                "details": details or {}}],
        run_fields={"task": "classification", "key_metric": "accuracy", "model": str(model_dir),
                    "model_sha256": resolve(str(model_dir)).sha256, "data_path": "toy.jsonl"})
    store.finish_run(run_id, record)
    return run_id


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("project")
    write_classification_jsonl(root / "toy.jsonl", n=40)
    store = Store(root / "h.duckdb")
    good = make_adapter(tiny_model_dir, root / "adapters" / "good")
    record_run(store, root, tiny_model_dir, good, "toy")
    record_run(store, root, tiny_model_dir, make_adapter(tiny_model_dir, root / "adapters" / "bad", seed=1), "bad",
               outcome="FAIL")
    return root, store, good


def logits(model, tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return model(input_ids=ids).logits[0, -1].float()


def test_export_merges_and_matches_base_plus_adapter(project, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, store, adapter = project
    out = root / "exported"
    lines = []
    result = export(store, "toy", out, sample=6, root=root, log=lines.append)
    assert result.rows == 6 and result.prompts_from == "data" and result.dtype == "float32"
    assert result.base == "dequantized"
    assert result.max_abs_logit_diff <= result.tolerance and result.predictions_equal == 6
    assert result.token_argmax_agreement == 1.0 and not result.forced
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert not (out / "adapter_config.json").exists()  # a plain model, no peft needed
    record = json.loads((out / RECORD).read_text())
    assert record["adapter_sha256"] == adapter_sha256(adapter) and record["run_id"] == result.run_id
    assert record["gates"] == {"data_quality": "PASS", "five_percent_rule": "PASS"}
    assert any("exported to" in line for line in lines)
    assert not [p for p in root.iterdir() if p.name.startswith(".exported")]  # no temporary folder left

    # An independent check with plain transformers: the export equals the 4-bit base the adapter
    # was trained on + the adapter, not the base alone.
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(out)
    sample = data.load(root / "toy.jsonl").samples[-1]
    text = scoring.render(tokenizer, prompts.candidate_messages(sample))
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert all(type(m).__module__.startswith(("torch", "transformers")) for m in merged.modules())
    trained_on = load_model(resolve(str(tiny_model_dir)), quantize=True)
    plain = logits(trained_on, tokenizer, text)
    with_adapter = logits(PeftModel.from_pretrained(trained_on, adapter).eval(), tokenizer, text)
    got = logits(merged, tokenizer, text)
    assert torch.allclose(got, with_adapter, atol=1e-4)
    assert (got - plain).abs().max() > 0.1  # the adapter matters, so the match above means something

    again = export(store, "toy", out, sample=2, root=root, log=lambda _: None)  # a previous export is replaced
    assert again.rows == 2 and json.loads((out / RECORD).read_text())["rows"] == 2


def test_the_original_base_merges_into_the_checkpoint_weights(project, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, store, adapter = project
    out = root / "original"
    result = export(store, "toy", out, sample=4, root=root, base="original", log=lambda _: None)
    assert result.base == "original" and result.max_abs_logit_diff <= result.tolerance
    tokenizer = AutoTokenizer.from_pretrained(out)
    text = scoring.render(tokenizer, [{"role": "user", "content": "area man cat 3"}])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    expected = logits(PeftModel.from_pretrained(base, adapter).eval(), tokenizer, text)
    assert torch.allclose(logits(AutoModelForCausalLM.from_pretrained(out), tokenizer, text), expected, atol=1e-4)
    with pytest.raises(HarnessError, match="base must be one of dequantized, original"):
        export(store, "toy", root / "x", base="nf4", root=root, log=lambda _: None)


def test_failed_gates_refuse_unless_forced(project):
    root, store, _ = project
    out = root / "bad-export"
    with pytest.raises(HarnessError) as info:
        export(store, "bad", out, root=root, log=lambda _: None)
    assert str(info.value).startswith("bad: run ")
    assert "five_percent_rule FAIL: accuracy 0.900 vs zero_shot 0.500" in str(info.value)
    assert str(info.value).endswith("export refused; pass --force to export it anyway")
    assert not out.exists()
    result = export(store, "bad", out, force=True, sample=3, root=root, log=lambda _: None)
    assert result.forced and result.failed_gates == ["five_percent_rule"]
    assert json.loads((out / RECORD).read_text())["forced"] is True


def test_an_allowed_inconclusive_lets_ci_go_on_but_does_not_export_unless_forced(project, tiny_model_dir):
    root, store, adapter = project
    record_run(store, root, tiny_model_dir, adapter, "maybe", outcome="INCONCLUSIVE",
               details={"allow_inconclusive": True})
    with pytest.raises(HarnessError, match=r"verdict is Inconclusive, not Fine-tune \(five_percent_rule "
                                           r"INCONCLUSIVE \(allowed by the spec\): .*export refused"):
        export(store, "maybe", root / "maybe-export", sample=2, root=root, log=lambda _: None)
    assert not (root / "maybe-export").exists()
    result = export(store, "maybe", root / "maybe-export", force=True, sample=2, root=root, log=lambda _: None)
    assert result.rows == 2 and result.forced and result.failed_gates == ["five_percent_rule"]


def test_refuses_a_non_empty_folder_and_unknown_experiments(project):
    root, store, _ = project
    busy = root / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(HarnessError, match="is not empty and is not a previous export"):
        export(store, "toy", busy, root=root, log=lambda _: None)
    assert (busy / "notes.txt").read_text() == "mine"
    with pytest.raises(HarnessError, match="no runs of experiment 'nope'"):
        export(store, "nope", root / "x", root=root, log=lambda _: None)
