from tiny import write_classification_jsonl

from harness.candidate.train import conversation, train
from harness.data import load, split
from harness.models import ResolvedModel, load_model, load_tokenizer
from harness.prompting import prompts
from harness.spec.experiment import QLoRA


def test_qlora_training_moves_the_loss_and_saves_the_adapter(tmp_path, tiny_model_dir):
    data = load(write_classification_jsonl(tmp_path / "d.jsonl", n=48))
    parts = split(data.samples, (32, 8, 8), seed=0, stratify=True)
    rows = lambda ss: [conversation(prompts.candidate_messages(s), s.answer) for s in ss]
    resolved = ResolvedModel("tiny", str(tiny_model_dir), "x")
    model = load_model(resolved, quantize=True)
    assert getattr(model, "is_loaded_in_4bit", False)
    tokenizer = load_tokenizer(resolved)
    spec = QLoRA(r=8, alpha=16, learning_rate=3e-2, epochs=3, batch_size=8, evals_per_epoch=1, warmup_ratio=0.0)
    peft_model, trained = train(model, tokenizer, spec, rows(parts.train), rows(parts.val), tmp_path / "out",
                                log=lambda _: None)
    val = [c["loss"] for c in trained.curves if c["split"] == "val"]
    train_losses = [c["loss"] for c in trained.curves if c["split"] == "train"]
    assert len(val) >= 3 and val[0] == [c for c in trained.curves if c["step"] == 0][0]["loss"]
    assert val[-1] < val[0] - 0.5, val  # the answer tokens are learnable: loss must drop clearly
    assert train_losses[-1] < train_losses[0]
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()
    assert len(trained.adapter_sha256) == 64
    assert trained.trainable_params > 0 and trained.steps == 12  # 32 rows / batch 8 * 3 epochs
    assert [c["step"] for c in trained.curves if c["split"] == "train"][-1] == 12  # the curve reaches the last step


def test_early_stopping_keeps_the_best_checkpoint(tmp_path, tiny_model_dir):
    """Every train row answers "1" and every val row answers "0". Training first teaches the answer
    format the two splits share (the end of turn after the label: val loss falls), then makes "1"
    ever more certain, and every step of that raises the loss of "0" without bound: val loss
    turns and rises on any CPU. So training stops early and the adapter kept is the best one, not
    the last. Rules the tiny model must discover made the outcome hinge on rounding: with
    coin-flip labels, and again with val labels flipped against train's, val loss kept falling
    through all 12 epochs on an AVX2-only EPYC (Zen 3). There the curve now reads 9.3, 8.6, 6.2
    at step 12, then 7.3 and 7.0: stopped at step 20 of 48, each of the two evaluations after
    the best about 1 nat above it, far beyond rounding."""
    import json

    import torch

    for name, n, seed, label in (("train", 32, 1, "1"), ("val", 16, 2, "0")):
        rows = [json.loads(line) for line in write_classification_jsonl(tmp_path / f"{name}-any.jsonl", n=n,
                                                                         seed=seed).read_text().splitlines()]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({**r, "label": label}) + "\n" for r in rows))

    class parts:  # the two splits, as the engine hands them to train()
        train = load(tmp_path / "train.jsonl").samples
        val = load(tmp_path / "val.jsonl").samples

    rows = lambda ss: [conversation(prompts.candidate_messages(s), s.answer) for s in ss]
    resolved = ResolvedModel("tiny", str(tiny_model_dir), "x")
    model, tokenizer = load_model(resolved, quantize=True), load_tokenizer(resolved)
    spec = QLoRA(r=16, alpha=32, learning_rate=5e-2, epochs=12, batch_size=8, warmup_ratio=0.0,
                 lr_scheduler="constant", early_stopping_patience=2)
    peft_model, trained = train(model, tokenizer, spec, rows(parts.train), rows(parts.val), tmp_path / "out",
                                log=lambda _: None)
    val = [(c["step"], c["loss"]) for c in trained.curves if c["split"] == "val" and c["step"] > 0]
    assert trained.steps < 48, f"should have stopped before 12 epochs: {val}"
    best_step, best_loss = min(val, key=lambda p: p[1])
    assert val[-1][1] > best_loss and best_step < trained.steps
    # the model returned is the best checkpoint: its val loss is the best one on the curve
    peft_model.eval()
    losses = []
    for r in rows(parts.val):
        text = tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text + r["completion"][0]["content"] + "<|im_end|>\n", return_tensors="pt",
                        add_special_tokens=False)["input_ids"]
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        labels = ids.clone()
        labels[:, :n] = -100
        with torch.no_grad():
            losses.append((peft_model(input_ids=ids, labels=labels).loss.item(), ids.shape[1] - n))
    mean = sum(loss * k for loss, k in losses) / sum(k for _, k in losses)
    assert abs(mean - best_loss) < abs(mean - val[-1][1])


def test_val_curve_carries_per_row_losses_and_the_kept_step(tmp_path, tiny_model_dir):
    """Every val evaluation, step 0 included, records each val row's mean completion-token loss
    (the overfit gate pairs them across evaluations), and the trained run says which step's
    weights it delivered. Every answer here is one label token plus the end of turn, so each row
    has as many completion tokens as the next: the row-weighted mean then equals eval_loss (which
    weights tokens) up to float rounding, and 1e-4 relative is far above that (1e-7 measured) yet
    far below any real disagreement. With early stopping, the kept step is the evaluation with the
    lowest eval_loss (the first of equals), whatever the training dynamics."""
    from harness.candidate.train import Trained

    data = load(write_classification_jsonl(tmp_path / "d.jsonl", n=44))
    rows = lambda ss: [conversation(prompts.candidate_messages(s), s.answer) for s in ss]
    resolved = ResolvedModel("tiny", str(tiny_model_dir), "x")
    model, tokenizer = load_model(resolved, quantize=True), load_tokenizer(resolved)
    spec = QLoRA(r=8, alpha=16, learning_rate=3e-2, epochs=2, batch_size=4, evals_per_epoch=2, warmup_ratio=0.0,
                 early_stopping_patience=2)
    _, trained = train(model, tokenizer, spec, rows(data.samples[:32]), rows(data.samples[32:]), tmp_path / "out",
                       log=lambda _: None)  # 12 val rows, eval batches of 8: two batches per evaluation
    val = [c for c in trained.curves if c["split"] == "val"]
    assert val[0]["step"] == 0 and len(val) >= 3
    for point in val:
        assert len(point["row_losses"]) == 12 and all(r > 0 for r in point["row_losses"])
        mean = sum(point["row_losses"]) / 12
        assert abs(mean - point["loss"]) <= 1e-4 * max(1.0, point["loss"]), (point["step"], mean, point["loss"])
    during = [(c["step"], c["loss"]) for c in val if c["step"] > 0]
    best = min(during, key=lambda p: p[1])[0]  # min() returns the first of equal losses, as early stopping keeps
    assert trained.kept_step == best and trained.summary()["kept_step"] == best
    # each train row of the epoch up to the kept step (8 steps of 4 rows), as it was trained on:
    # what the fit-gap warning compares the kept val rows with, with no pass over train rows
    assert len(trained.train_row_losses) == 4 * min(best, 8) and all(r > 0 for r in trained.train_row_losses)
    assert trained.summary()["train_row_losses"] == trained.train_row_losses
    # an adapter cached before kept_step existed still loads (harness/_engine/candidate.py `_adapter`)
    old = {k: v for k, v in trained.summary().items() if k not in ("kept_step", "train_row_losses")}
    assert Trained("adapter", "0" * 64, **old).kept_step is None


def test_the_lm_head_scores_only_answer_tokens_and_trains_the_same(tmp_path, tiny_model_dir, monkeypatch):
    """On CPU, trl's fused LM head is told to project only the positions that carry loss (the
    answer tokens) instead of every position. The same run with and without it gives the same
    train and val losses, per-row val losses included: only which positions pass through the
    vocabulary projection changes, not the arithmetic for the ones that count, and the dropout
    masks draw the same random numbers. 1e-5 relative allows for the matmul over fewer rows
    summing in another order (measured: no difference at all over 8 steps and 3 evaluations)."""
    import contextlib

    import torch

    from harness.candidate import train as train_module

    with train_module.answer_tokens_only_lm_head() as switched:
        from trl.trainer import utils as trl_utils

        assert switched, "this trl has no switch for scoring only answer tokens: training is up to 2x slower on CPU"
        assert trl_utils._use_triton(torch.device("cpu"))
    assert not trl_utils._use_triton(torch.device("cpu"))  # restored afterwards

    data = load(write_classification_jsonl(tmp_path / "d.jsonl", n=40))
    rows = lambda ss: [conversation(prompts.candidate_messages(s), s.answer) for s in ss]
    resolved = ResolvedModel("tiny", str(tiny_model_dir), "x")
    tokenizer = load_tokenizer(resolved)
    spec = QLoRA(r=8, alpha=16, learning_rate=3e-2, epochs=2, batch_size=8, evals_per_epoch=1, warmup_ratio=0.0)

    def run(folder):
        _, trained = train(load_model(resolved, quantize=True), tokenizer, spec, rows(data.samples[:32]),
                           rows(data.samples[32:]), tmp_path / folder, log=lambda _: None)
        return trained.curves

    compact = run("compact")
    monkeypatch.setattr(train_module, "answer_tokens_only_lm_head", lambda: contextlib.nullcontext(False))
    full = run("full")
    assert [(c["step"], c["split"]) for c in compact] == [(c["step"], c["split"]) for c in full]
    close = lambda a, b: abs(a - b) <= 1e-5 * max(1.0, abs(b))
    for a, b in zip(compact, full):
        assert close(a["loss"], b["loss"]), (a, b)
        if a["split"] == "val":
            assert all(close(x, y) for x, y in zip(a["row_losses"], b["row_losses"])), (a["step"],)


def test_the_adapter_merged_for_scoring_scores_as_it_was_trained(tmp_path, tiny_model_dir):
    """On CPU the candidate scores with its adapter merged into an fp32 copy of the dequantized
    base (harness.models.with_adapter) instead of unmerged on the 4-bit base. Dequantizing is
    exact (bitsandbytes' CPU path multiplies by the same fp32 values), so only the merge's own
    rounding differs: label log-probabilities within 1e-4 nats (fp32 sums of W x + B A x in
    another order; measured 2.3e-5 on SmolLM2-135M), the same predictions and generations."""
    import bitsandbytes as bnb
    from peft import PeftModel

    from harness import models
    from harness._engine.scorer import merges_for_scoring
    from harness.scoring import batched

    data = load(write_classification_jsonl(tmp_path / "d.jsonl", n=40))
    rows = lambda ss: [conversation(prompts.candidate_messages(s), s.answer) for s in ss]
    resolved = ResolvedModel("tiny", str(tiny_model_dir), "x")
    tokenizer = load_tokenizer(resolved)
    spec = QLoRA(r=8, alpha=16, learning_rate=3e-2, epochs=1, batch_size=8, warmup_ratio=0.0)
    _, trained = train(load_model(resolved, quantize=True), tokenizer, spec, rows(data.samples[:32]), [],
                       tmp_path / "out", log=lambda _: None)
    base = load_model(resolved, quantize=True)
    assert merges_for_scoring(base)
    merged = models.with_adapter(base, trained.adapter_path, merge=True)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in merged.modules())
    assert not any("lora" in name for name, _ in merged.named_modules())
    unmerged = PeftModel.from_pretrained(load_model(resolved, quantize=True), trained.adapter_path).eval()
    texts = [batched.render(tokenizer, prompts.candidate_messages(s)) for s in data.samples]
    tokenizer.padding_side = "left"
    a = batched.score_labels(merged, tokenizer, texts, ["0", "1"], batch_size=8)
    b = batched.score_labels(unmerged, tokenizer, texts, ["0", "1"], batch_size=8)
    assert a.predictions == b.predictions
    assert max(abs(x[k] - y[k]) for x, y in zip(a.label_logprobs, b.label_logprobs) for k in x) < 1e-4
    ga = batched.generate(merged, tokenizer, texts[:8], max_new_tokens=4, batch_size=8)
    gb = batched.generate(unmerged, tokenizer, texts[:8], max_new_tokens=4, batch_size=8)
    assert ga.predictions == gb.predictions
