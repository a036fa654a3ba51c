"""Greedy generation in batches of 16 (the spec's eval_batch_size) vs larger batches.

    python bench/bench_generate.py                 # 96 HaluEval rows, closed-book 4-shot prompts, 18 new tokens
    python bench/bench_generate.py --sizes 16 64   # the batch sizes compared (first is the reference)

Each decoding step of a batch runs every layer once for the whole batch. On CPU, bitsandbytes
dequantizes each 4-bit weight to fp32 for every forward, and a decode step's matmuls multiply
those weights by only `batch` rows: the step is set by the weights' traffic, not by the rows, so
a larger batch serves more rows for about the same step. Longer prompts padded to the longest in
a bigger batch cost more in the prompt pass; rows are sorted by length first, as the harness does.

The sides alternate (A B B A per round) in one process after an untimed warm-up; printed: seconds
per run for scale, RATIO reference/each (ratio of sums, median of adjacent pairs), and how many
outputs are the same as the reference's (a different batch shape sums in another order, so a
near-tie between two next tokens could fall the other way).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from harness import data, models  # noqa: E402
from harness.prompting import prompts  # noqa: E402
from harness.prompting.shots import random_shots  # noqa: E402
from harness.scoring import batched  # noqa: E402

SPLIT = (200, 50, 100)  # as experiments/test_halueval.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=96, help="held-out rows generated (default 96)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 48], help="batch sizes; the first is A")
    parser.add_argument("--max-new-tokens", type=int, default=18, help="as the HaluEval spec's answers (18)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()

    dataset = data.load(ROOT / "experiments" / "data" / "halueval.jsonl",
                        columns={"input": "question", "output": "right_answer"})
    splits = data.split(dataset.samples, SPLIT, seed=0, stratify=False)
    system = (ROOT / "baselines" / "halueval" / "system.md").read_text(encoding="utf-8").strip()
    shots = random_shots(splits.train, 4, 0)
    rows = (splits.val + splits.test)[:args.n]
    resolved = models.resolve("smollm2-135m-instruct")
    tokenizer = models.load_tokenizer(resolved)
    tokenizer.padding_side = "left"
    model = models.load_model(resolved, quantize=True)
    texts = [batched.render(tokenizer, prompts.baseline_messages(s, system, shots)) for s in rows]
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    print(f"bench_generate: SmolLM2-135M-Instruct 4-bit NF4 on {models.device()}, torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs; {len(texts)} rows, prompt tokens mean "
          f"{sum(lengths) / len(lengths):.0f} (max {max(lengths)}), max_new_tokens {args.max_new_tokens}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    batched.generate(model, tokenizer, texts[:4], max_new_tokens=4, batch_size=4)  # untimed warm-up

    reference, *others = args.sizes
    seconds: dict[int, list[float]] = {size: [] for size in args.sizes}
    outputs: dict[int, list[str]] = {}
    order = []
    for _ in range(args.rounds):
        for other in others:
            order += [reference, other, other, reference]
    for i, size in enumerate(order):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = batched.generate(model, tokenizer, texts, max_new_tokens=args.max_new_tokens, batch_size=size)
        elapsed = time.perf_counter() - start
        seconds[size].append(elapsed)
        outputs[size] = out.predictions
        print(f"  run {i + 1}/{len(order)} batch {size:3d}: {elapsed:6.1f}s ({len(texts) / elapsed:.2f} rows/s); "
              f"cores busy {(time.process_time() - start_cpu) / elapsed:.1f}, load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
    print()
    for other in others:
        pairs = [(order[i], order[i + 1]) for i in range(0, len(order), 2)]
        ratios = []
        runs = {reference: iter(seconds[reference]), other: iter(seconds[other])}
        for a, b in pairs:
            ta, tb = next(runs[a]), next(runs[b])
            ratios.append((ta / tb) if a == reference else (tb / ta))
        same = sum(x == y for x, y in zip(outputs[reference], outputs[other]))
        print(f"RATIO generation batch {reference}/batch {other} = {sum(seconds[reference]) / sum(seconds[other]):.2f}x "
              f"ratio of sums; {statistics.median(ratios):.2f}x median of {len(ratios)} adjacent pairs; same output "
              f"on {same}/{len(texts)} rows")


if __name__ == "__main__":
    main()
