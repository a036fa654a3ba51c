from harness import prompts
from harness.data import load, split
from harness.experiment import QLoRA
from harness.models import ResolvedModel, load_model, load_tokenizer
from harness.train import conversation, train
from tiny import write_classification_jsonl


def test_qlora_training_moves_the_loss_and_saves_the_adapter(tmp_path, tiny_model_dir):
    data = load(write_classification_jsonl(tmp_path / "d.jsonl", n=48))
    parts = split(data.samples, (32, 8, 8), seed=0, stratify=True)
    rows = lambda ss: [conversation(prompts.candidate_messages(s), s.answer) for s in ss]
    resolved = ResolvedModel("tiny", str(tiny_model_dir), "x")
    model = load_model(resolved, quantize=True)
    assert getattr(model, "is_loaded_in_4bit", False)
    tokenizer = load_tokenizer(resolved)
    spec = QLoRA(r=8, alpha=16, learning_rate=3e-2, epochs=3, batch_size=8, evals_per_epoch=1, warmup_ratio=0.0)
    lines = []
    peft_model, trained = train(model, tokenizer, spec, rows(parts.train), rows(parts.val), tmp_path / "out",
                                log=lines.append)
    val = [c["loss"] for c in trained.curves if c["split"] == "val"]
    train_losses = [c["loss"] for c in trained.curves if c["split"] == "train"]
    assert len(val) >= 3 and val[0] == [c for c in trained.curves if c["step"] == 0][0]["loss"]
    assert val[-1] < val[0] - 0.5, val  # the answer tokens are learnable: loss must drop clearly
    assert train_losses[-1] < train_losses[0]
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()
    assert len(trained.adapter_sha256) == 64
    assert trained.trainable_params > 0 and trained.steps == 12  # 32 rows / batch 8 * 3 epochs
    assert any("step 12/12" in line for line in lines), lines
