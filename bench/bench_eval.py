"""Harness evaluation vs the per-example `generate` loop most fine-tuning guides show.

    python bench/bench_eval.py                      # 256 rows zero-shot, 128 rows few-shot k=8
    python bench/bench_eval.py --n 64 --fewshot-n 32  # a quick look
    python bench/bench_eval.py --candidate           # a candidate's adapter merged for scoring vs unmerged

Both sides score the same sarcasm test rows with the same 4-bit NF4 SmolLM2 model object:

  harness  `harness.scoring.batched.score_labels`: batches of 16, left-padded, one forward per batch,
           the label with the higher log-likelihood wins, shared-prefix KV cache;
  naive    for each row: `apply_chat_template(..., return_tensors="pt")`, one greedy
           `model.generate(max_new_tokens=...)`, decode, parse the label.

The machine is shared, so nothing here is compared across runs: the rows are cut into chunks
and the two sides alternate chunk by chunk (A B, B A, A B, ...), and only ratios of times taken
within this one invocation are printed: the median over chunks of each chunk's ratio (the
headline: robust to a burst of other work landing on one side of one chunk), and the ratio of
the sums. A second part times few-shot (k=8) prompts, where the shared prefix is long, with
and without the harness's prefix cache, alternating the same way.

--candidate times what scoring a fine-tuned candidate costs instead: A = the adapter merged into
an fp32 copy of the dequantized base (`harness.models.with_adapter`, what a run does on CPU), B =
the adapter unmerged on the 4-bit base (peft's `PeftModel.from_pretrained`), both label scoring
--n rows and greedily generating a quarter of them (the agreement check), alternating by chunk.
The adapter has the shipped candidate's shape (r=16, alpha=32, every linear layer) and random
weights in both of its matrices, so it moves every output; the speed does not depend on what
it learnt.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from harness import data, models  # noqa: E402
from harness.prompting import prompts  # noqa: E402
from harness.prompting.shots import random_shots  # noqa: E402
from harness.scoring import batched as scoring  # noqa: E402

LABELS = ["0", "1"]
SPLIT = (480, 120, 400)  # as experiments/test_sarcasm.py: train / val / test rows
BATCH_SIZE = 16          # Experiment.eval_batch_size's default, what the pipeline uses
WORDS = re.compile(r"\w+")


def parse_label(text: str) -> str | None:
    """The label a generated answer gives, or None: it must open with one label ("1", "0.", "Label: 1")
    and not name the other one too ("1 or 0" is no answer)."""
    words = WORDS.findall(text.lower())
    while words and words[0] in ("label", "answer"):
        words = words[1:]
    if not words or words[0] not in LABELS:
        return None
    return words[0] if not any(w in LABELS and w != words[0] for w in words) else None


def harness_predict(model, tokenizer, messages: list[list[dict]], *, use_prefix_cache: bool = True) -> list[str]:
    tokenizer.padding_side = "left"
    rendered = [scoring.render(tokenizer, m) for m in messages]
    return scoring.score_labels(model, tokenizer, rendered, LABELS, batch_size=BATCH_SIZE,
                                use_prefix_cache=use_prefix_cache).predictions


@torch.inference_mode()
def naive_predict(model, tokenizer, messages: list[list[dict]], *, max_new_tokens: int) -> list[str]:
    """The loop from the guides, one example at a time; the raw decoded text of each."""
    model.eval()
    outputs = []
    for m in messages:
        inputs = tokenizer.apply_chat_template(m, add_generation_prompt=True, return_tensors="pt")
        if not torch.is_tensor(inputs):  # transformers 5 returns a BatchEncoding (ids and mask)
            inputs = inputs["input_ids"]
        inputs = inputs.to(model.device)
        out = model.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
        outputs.append(tokenizer.decode(out[0, inputs.shape[1]:], skip_special_tokens=True))
    return outputs


@dataclass
class Alternated:
    """Per-chunk seconds of two sides run on the same chunks, and their outputs in row order."""

    seconds_a: list[float] = field(default_factory=list)
    seconds_b: list[float] = field(default_factory=list)
    out_a: list = field(default_factory=list)
    out_b: list = field(default_factory=list)

    @property
    def ratio_of_sums(self) -> float:
        return sum(self.seconds_b) / sum(self.seconds_a)

    @property
    def median_ratio(self) -> float:
        """Median over chunks of b/a: a burst of other work landing on one side of one chunk moves it little."""
        return statistics.median(b / a for a, b in zip(self.seconds_a, self.seconds_b))


def alternate(chunks: list[list], a, b) -> Alternated:
    """Run a(chunk) and b(chunk) back to back on every chunk, in the order A B, B A, A B, ..."""
    result = Alternated()
    for i, chunk in enumerate(chunks):
        cpu = {}
        for side in ("ab" if i % 2 == 0 else "ba"):
            start, start_cpu = time.perf_counter(), time.process_time()
            out = (a if side == "a" else b)(chunk)
            seconds = time.perf_counter() - start
            cpu[side] = (time.process_time() - start_cpu) / seconds
            (result.seconds_a if side == "a" else result.seconds_b).append(seconds)
            (result.out_a if side == "a" else result.out_b).extend(out)
        a_s, b_s = result.seconds_a[-1], result.seconds_b[-1]
        # cores busy = process CPU seconds / wall seconds: well under the thread count means other work took the CPU
        print(f"  chunk {i + 1}/{len(chunks)} ({len(chunk)} rows, {'A then B' if i % 2 == 0 else 'B then A'}): "
              f"A {a_s:.2f}s, B {b_s:.2f}s, B/A {b_s / a_s:.1f}; cores busy A {cpu['a']:.1f} B {cpu['b']:.1f}, "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
    return result


def chunked(items: list, parts: int) -> list[list]:
    size = -(-len(items) // parts)
    return [items[i:i + size] for i in range(0, len(items), size)]


def candidate_bench(args, model_rows, tokenizer, resolved) -> None:
    """A = merged into fp32 (harness.models.with_adapter), B = unmerged on the 4-bit base."""
    import tempfile

    from peft import LoraConfig, PeftModel, get_peft_model

    adapter = Path(tempfile.mkdtemp(prefix="bench_eval-adapter-"))
    torch.manual_seed(0)
    get_peft_model(models.load_model(resolved, quantize=True),
                   LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM",
                              init_lora_weights=False)).save_pretrained(adapter)
    merged = models.with_adapter(models.load_model(resolved, quantize=True), str(adapter), merge=True)
    unmerged = PeftModel.from_pretrained(models.load_model(resolved, quantize=True), str(adapter)).eval()
    tokenizer.padding_side = "left"
    rendered = [scoring.render(tokenizer, m) for m in model_rows]

    def labels(model):
        return lambda c: scoring.score_labels(model, tokenizer, c, LABELS, batch_size=BATCH_SIZE).label_logprobs

    def generated(model):
        return lambda c: scoring.generate(model, tokenizer, c, max_new_tokens=args.max_new_tokens,
                                          batch_size=BATCH_SIZE).predictions

    labels(merged)(rendered[:4]), labels(unmerged)(rendered[:4])  # untimed warm-up
    print(f"candidate label scoring, {len(rendered)} rows: A = adapter merged into fp32, B = unmerged on NF4",
          flush=True)
    scored = alternate(chunked(rendered, args.chunks), labels(merged), labels(unmerged))
    gen_rows = rendered[:max(BATCH_SIZE, len(rendered) // 4)]
    print(f"candidate greedy generation, {len(gen_rows)} rows, max_new_tokens {args.max_new_tokens}: A = merged, "
          f"B = unmerged", flush=True)
    gen = alternate(chunked(gen_rows, max(1, len(gen_rows) // BATCH_SIZE)), generated(merged), generated(unmerged))
    worst = max(abs(a[k] - b[k]) for a, b in zip(scored.out_a, scored.out_b) for k in a)
    same = sum(max(a, key=a.get) == max(b, key=b.get) for a, b in zip(scored.out_a, scored.out_b))
    same_gen = sum(a == b for a, b in zip(gen.out_a, gen.out_b))
    print(f"  label log-probabilities: max |merged - unmerged| {worst:.2e} nats; same prediction on "
          f"{same}/{len(rendered)} rows; same generation on {same_gen}/{len(gen_rows)}")
    print()
    print(f"RATIO candidate label scoring unmerged/merged = {scored.median_ratio:.2f}x median of "
          f"{len(scored.seconds_a)} chunks (ratio of sums {scored.ratio_of_sums:.2f}x)")
    print(f"RATIO candidate generation unmerged/merged = {gen.median_ratio:.2f}x median of {len(gen.seconds_a)} "
          f"chunks (ratio of sums {gen.ratio_of_sums:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=256, help="zero-shot rows (default 256)")
    parser.add_argument("--max-new-tokens", type=int, default=5,
                        help="the naive loop's max_new_tokens (default 5: a label plus room for a stray token "
                             "or two, the small value guides use for label answers)")
    parser.add_argument("--fewshot-n", type=int, default=128,
                        help="rows for the few-shot k=8 prefix-cache comparison (default 128; 0 skips it)")
    parser.add_argument("--k", type=int, default=8, help="few-shot examples (default 8, as the shipped baseline)")
    parser.add_argument("--chunks", type=int, default=8,
                        help="chunks the two sides alternate over (default 8: 32 rows, two batches, each)")
    parser.add_argument("--candidate", action="store_true",
                        help="time a candidate's scoring with its adapter merged vs unmerged instead")
    args = parser.parse_args()

    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()

    dataset = data.load(ROOT / "experiments" / "data" / "sarcasm.jsonl")
    splits = data.split(dataset.samples, SPLIT, seed=0, stratify=True)
    pool = splits.test + splits.val  # held-out rows, test first
    if args.n > len(pool) or args.fewshot_n > len(pool):
        sys.exit(f"--n and --fewshot-n can be at most {len(pool)} (the held-out rows)")
    system = (ROOT / "baselines" / "sarcasm" / "system.md").read_text(encoding="utf-8").strip()
    resolved = models.resolve("smollm2-135m-instruct")
    tokenizer = models.load_tokenizer(resolved)
    if args.candidate:
        print(f"bench_eval --candidate: SmolLM2-135M-Instruct on {models.device()}, torch threads "
              f"{torch.get_num_threads()}, {os.cpu_count()} CPUs; batch {BATCH_SIZE}; load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        candidate_bench(args, [prompts.candidate_messages(s) for s in pool[:args.n]], tokenizer, resolved)
        return
    model = models.load_model(resolved, quantize=True)
    print(f"bench_eval: SmolLM2-135M-Instruct 4-bit NF4 on {models.device()}, torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs; batch {BATCH_SIZE}, "
          f"naive max_new_tokens {args.max_new_tokens}; load average {os.getloadavg()[0]:.1f}", flush=True)

    rows = pool[:args.n]
    messages = [prompts.baseline_messages(s, system, []) for s in rows]
    # Untimed warm-up of both paths (first-call allocations, lazy kernels).
    harness_predict(model, tokenizer, [prompts.baseline_messages(s, system, []) for s in splits.train[:4]])
    naive_predict(model, tokenizer, [prompts.baseline_messages(s, system, []) for s in splits.train[:2]],
                  max_new_tokens=args.max_new_tokens)

    print(f"zero-shot, {len(rows)} rows: A = harness score_labels, B = naive generate loop", flush=True)
    zero = alternate(
        chunked(messages, args.chunks), lambda c: harness_predict(model, tokenizer, c),
        lambda c: naive_predict(model, tokenizer, c, max_new_tokens=args.max_new_tokens))
    predicted, generated = zero.out_a, zero.out_b
    t_harness, t_naive = sum(zero.seconds_a), sum(zero.seconds_b)
    parsed = [parse_label(g) for g in generated]
    valid = [i for i, p in enumerate(parsed) if p is not None]
    agree = sum(predicted[i] == parsed[i] for i in valid)
    refs = [s.answer.strip() for s in rows]
    acc_harness = sum(p == r for p, r in zip(predicted, refs)) / len(rows)
    acc_naive = sum(p == r for p, r in zip(parsed, refs)) / len(rows)  # an invalid answer counts wrong
    print(f"  harness {t_harness:.1f}s ({len(rows) / t_harness:.1f} rows/s), naive {t_naive:.1f}s "
          f"({len(rows) / t_naive:.1f} rows/s)")
    print(f"  naive gave a valid label on {len(valid)}/{len(rows)} rows; the two agree on {agree}/{len(valid)} "
          f"of those ({agree / max(len(valid), 1):.1%})")
    print(f"  accuracy vs reference: harness {acc_harness:.3f}, naive {acc_naive:.3f} (invalid = wrong)")
    common = Counter(g.strip() for g in generated).most_common(6)
    print("  commonest naive outputs: " + ", ".join(f"{g!r} x{c}" for g, c in common))

    few_shot = None
    if args.fewshot_n:
        shots = random_shots(splits.train, args.k, 0)  # the shipped baseline's seed
        few = [prompts.baseline_messages(s, system, shots) for s in pool[:args.fewshot_n]]
        lengths = [len(tokenizer(scoring.render(tokenizer, m), add_special_tokens=False)["input_ids"]) for m in few]
        print(f"few-shot k={args.k}, {len(few)} rows (~{sum(lengths) / len(lengths):.0f} prompt tokens): "
              f"A = prefix cache on, B = off", flush=True)
        few_shot = alternate(
            chunked(few, args.chunks), lambda c: harness_predict(model, tokenizer, c),
            lambda c: harness_predict(model, tokenizer, c, use_prefix_cache=False))
        same = sum(a == b for a, b in zip(few_shot.out_a, few_shot.out_b))
        print(f"  cache on {sum(few_shot.seconds_a):.1f}s, off {sum(few_shot.seconds_b):.1f}s; "
              f"same prediction on {same}/{len(few)} rows")

    print(f"  load average at the end {os.getloadavg()[0]:.1f} (other work on the machine)")
    print()
    print(f"RATIO zero-shot naive/harness = {zero.median_ratio:.1f}x median of {len(zero.seconds_a)} chunks "
          f"(ratio of sums {zero.ratio_of_sums:.1f}x; target >= 8x); agreement {agree}/{len(valid)} on the "
          f"{len(valid)}/{len(rows)} rows where generation gave a valid label")
    if few_shot is not None:
        print(f"RATIO few-shot k={args.k} no-cache/cache = {few_shot.median_ratio:.2f}x median of "
              f"{len(few_shot.seconds_a)} chunks (ratio of sums {few_shot.ratio_of_sums:.2f}x)")


if __name__ == "__main__":
    main()
