"""Harness QLoRA training vs a bare trl SFTTrainer script with the identical configuration.

    python bench/bench_train.py                 # 64 train rows, 1 epoch, batch 8 = 8 steps, no eval
    python bench/bench_train.py --val 32        # both sides also evaluate 32 val rows, before and after
    python bench/bench_train.py --lm-head       # the harness vs itself with trl's LM head over every position

harness  `harness.models.load_model(quantize=True)`, then `harness.candidate.train.train(model, tokenizer,
         QLoRA(...), train_rows, val_rows, out)`: prepare_model_for_kbit_training, SFTTrainer,
         train, save the adapter (and tokenizer), hash it.
bare     what a guide's script does: `from_pretrained` with the same BitsAndBytesConfig (NF4,
         double quantization), prepare_model_for_kbit_training, the same LoraConfig and SFTConfig
         fields, the same rows, `trainer.train()`, `save_pretrained`; plus the one bitsandbytes
         setting harness.models.load_model makes (see bare_run), without which --val trains nothing.

Eval work is made equal: by default neither side evaluates (the harness gets no val rows, so it
skips its step-0 validation loss). With --val N the harness evaluates before training and at
the end of the epoch, and the bare script gets `eval_on_start=True` and the same eval steps,
which is the same two evaluations.

--lm-head compares the harness with itself where trl's fused LM head projects every position
through the vocabulary (what trl does off CUDA) instead of the answer tokens alone
(harness.candidate.train.answer_tokens_only_lm_head); the losses must come out identical.

Runs alternate A B B A (x --rounds, default 2) in this one process, after an untimed warm-up.
Timed: from the loaded model to the saved adapter (model loading is timed too, reported beside
it). Printed: sum(harness) / sum(bare); the median over adjacent harness/bare pairs of their
ratio; and fastest harness run / fastest bare run. Other work on a shared 2-core machine only
ever adds time, and can slow one run 10x, so when the three disagree the last two are the ones
to believe (timeit's reasoning: the minimum is the run least disturbed).
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from harness import QLoRA, data, models
from harness.candidate import train as train_mod  # noqa: E402
from harness.prompting import prompts  # noqa: E402

SPLIT = (480, 120, 400)  # as experiments/test_sarcasm.py


def harness_run(resolved, tokenizer, spec: QLoRA, train_rows, val_rows, out: Path) -> tuple[float, float, list]:
    start = time.perf_counter()
    model = models.load_model(resolved, quantize=True)
    loaded = time.perf_counter()
    _, trained = train_mod.train(model, tokenizer, spec, train_rows, val_rows, out, log=lambda _: None)
    done = time.perf_counter()
    losses = [c["loss"] for c in trained.curves if c["split"] == "train"]
    return loaded - start, done - loaded, losses


def full_head_run(resolved, tokenizer, spec: QLoRA, train_rows, val_rows, out: Path) -> tuple[float, float, list]:
    """The harness with trl's fused LM head scoring every position, as trl does on CPU by default."""
    import contextlib

    switch = train_mod.answer_tokens_only_lm_head
    train_mod.answer_tokens_only_lm_head = lambda: contextlib.nullcontext(False)
    try:
        return harness_run(resolved, tokenizer, spec, train_rows, val_rows, out)
    finally:
        train_mod.answer_tokens_only_lm_head = switch


def bare_run(resolved, tokenizer, spec: QLoRA, train_rows, val_rows, out: Path) -> tuple[float, float, list]:
    """The guide's script, written out; every value below equals what harness.candidate.train sets for `spec`."""
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    dtype = (torch.bfloat16 if bf16 else torch.float16) if cuda else torch.float32
    start = time.perf_counter()
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(resolved.path, quantization_config=bnb, dtype=dtype,
                                                 device_map={"": "cuda" if cuda else "cpu"})
    loaded = time.perf_counter()
    # Without this, on a CPU with AVX512-BF16 (bitsandbytes 0.50) an evaluation before training
    # repacks the 4-bit weights into a path with no backward, and training silently stops
    # learning (--val without it: train loss 4.78, 5.09, 5.52, 5.10 instead of 4.73 ... 1.14).
    # harness.models.load_model does the same; with it both sides do the same work.
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cuda)
    steps_per_epoch = math.ceil(len(train_rows) / spec.batch_size)
    args = SFTConfig(
        output_dir=str(out / "trainer"), per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.batch_size * 2, num_train_epochs=spec.epochs,
        learning_rate=spec.learning_rate, lr_scheduler_type=spec.lr_scheduler, warmup_steps=spec.warmup_ratio,
        weight_decay=spec.weight_decay, max_length=spec.max_length,
        logging_steps=max(1, min(10, steps_per_epoch // 4)),
        eval_strategy="steps" if val_rows else "no", eval_steps=steps_per_epoch, eval_on_start=bool(val_rows),
        save_strategy="no", report_to=[], seed=spec.seed, data_seed=spec.seed, bf16=bf16, fp16=cuda and not bf16,
        use_cpu=not cuda, gradient_checkpointing=cuda, disable_tqdm=True, dataloader_num_workers=0)
    lora = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, task_type="CAUSAL_LM",
                      target_modules=spec.target_modules)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(train_rows),
                         eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
                         processing_class=tokenizer, peft_config=lora)
    trainer.train()
    trainer.model.save_pretrained(out / "adapter")
    done = time.perf_counter()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return loaded - start, done - loaded, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=64, help="train rows (default 64: 8 steps of batch 8)")
    parser.add_argument("--val", type=int, default=0, help="val rows evaluated by both sides (default 0: no eval)")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="repeat the A B B A block (default 2: 8 runs)")
    parser.add_argument("--lm-head", action="store_true",
                        help="B = the harness with the full-vocabulary LM head at every position, not a bare script")
    args = parser.parse_args()

    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    import datasets
    datasets.disable_progress_bars()

    dataset = data.load(ROOT / "experiments" / "data" / "sarcasm.jsonl")
    splits = data.split(dataset.samples, SPLIT, seed=0, stratify=True)
    to_rows = lambda samples: [train_mod.conversation(prompts.candidate_messages(s), s.answer) for s in samples]
    train_rows, val_rows = to_rows(splits.train[:args.rows]), to_rows(splits.val[:args.val])
    spec = QLoRA(r=16, alpha=32, learning_rate=2e-4, epochs=args.epochs)  # the shipped candidate, fewer epochs
    steps = math.ceil(math.ceil(len(train_rows) / spec.batch_size) * spec.epochs)
    resolved = models.resolve("smollm2-135m-instruct")
    tokenizer = models.load_tokenizer(resolved)
    print(f"bench_train: {len(train_rows)} train rows, {len(val_rows)} val rows, batch {spec.batch_size}, "
          f"{steps} steps, r={spec.r}; torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="bench_train-"))
    other = "full" if args.lm_head else "bare"
    runs = {"harness": harness_run, other: full_head_run if args.lm_head else bare_run}
    order = ["harness", other, other, "harness"] * args.rounds
    seconds: list[float] = []
    losses = {}
    loads = {"harness": 0.0, other: 0.0}
    try:
        bare_run(resolved, tokenizer, spec, train_rows[:spec.batch_size], [], work / "warmup")  # untimed
        for i, side in enumerate(order):
            start_cpu, start = time.process_time(), time.perf_counter()
            load_s, train_s, losses[side] = runs[side](resolved, tokenizer, spec, train_rows, val_rows,
                                                       work / f"{i}-{side}")
            busy = (time.process_time() - start_cpu) / (time.perf_counter() - start)
            seconds.append(train_s)
            loads[side] += load_s
            # cores busy = process CPU seconds / wall seconds: well under the thread count means other work
            print(f"  run {i + 1}/{len(order)} {side:7s}: load {load_s:5.1f}s, train+save {train_s:6.1f}s; cores busy "
                  f"{busy:.1f}, load average {os.getloadavg()[0]:.1f}; train losses "
                  f"{[round(x, 4) for x in losses[side]]}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = {side: sum(t for t, s in zip(seconds, order) if s == side) for side in runs}
    # Adjacent runs (1-2, 3-4, ...) are one harness and one bare run, taken closest in time.
    pairs = [(seconds[i], seconds[i + 1]) if order[i] == "harness" else (seconds[i + 1], seconds[i])
             for i in range(0, len(order), 2)]
    pair_ratios = [h / b for h, b in pairs]
    same = losses["harness"] == losses[other]
    print(f"  train losses {'identical' if same else 'DIFFER'} on both sides (same seed, data and config)")
    print(f"  model load: harness {loads['harness']:.1f}s, {other} {loads[other]:.1f}s (summed; not in the ratio)")
    print(f"  harness/{other} per adjacent pair: {', '.join(f'{r:.3f}' for r in pair_ratios)}")
    fastest = {side: min(t for t, s in zip(seconds, order) if s == side) for side in runs}
    print()
    print(f"RATIO train harness/{other} = {total['harness'] / total[other]:.3f} ratio of sums (harness "
          f"{total['harness']:.1f}s, {other} {total[other]:.1f}s over {len(order) // 2} runs each); "
          f"{statistics.median(pair_ratios):.3f} median of {len(pairs)} adjacent pairs; "
          f"{fastest['harness'] / fastest[other]:.3f} fastest/fastest; "
          f"{'' if args.lm_head else 'target <= 1.05, '}{'with' if val_rows else 'no'} eval")

if __name__ == "__main__":
    main()
