"""Scoring the capability suite's options: each question's prompt run once vs once per option.

    python bench/bench_continuations.py                  # 96 of the 228 screen questions, A B B A once
    python bench/bench_continuations.py --questions 228  # the whole screen (~2.5x as long)

Both sides score the same MMLU screen questions (`capability.items`: four (prompt, option) rows
per question, the prompt "The following are questions ... Answer:") with the same 4-bit NF4
SmolLM2 model object, in batches of 16 rows, as the regression gate does:

  old  `score_continuations(..., share_prompts=False)`: every row is prompt and option together,
       so each question's prompt is run four times;
  new  `score_continuations(...)`: the four rows of a question share its prompt, which is run once;
       its cache is copied to each option, and only the options' tokens run after it.

Runs alternate A B B A (x --rounds) in this one process, after an untimed warm-up of both. Printed:
each run's seconds, sum(old) / sum(new), the median over adjacent old/new pairs of their ratio, the
largest |difference| between the two sides' log-likelihoods and how often they choose the same
option. The questions are spread evenly over the screen's subjects (file order).
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

from harness import models  # noqa: E402
from harness.judge import capability  # noqa: E402
from harness.scoring import batched as scoring  # noqa: E402

BATCH_SIZE = 16  # Experiment.eval_batch_size's default, what the regression gate scores with
SIDES = {"old": False, "new": True}  # side -> share_prompts


def spread(indices: list[int], n: int) -> list[int]:
    """n of `indices`, evenly spaced, so every part of the file (every subject) is represented."""
    return [indices[k * len(indices) // n] for k in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=96,
                        help="screen questions scored by each run (default 96 of 228: the bench stays under ~6 min)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the A B B A block (default 1: 4 runs)")
    args = parser.parse_args()

    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()

    suite = capability.load_suite("mmlu")
    screen = suite.screen_questions
    if not 0 < args.questions <= len(screen):
        sys.exit(f"--questions must be 1..{len(screen)} (the screen's questions)")
    indices = spread(screen, args.questions)
    prompts, conts = capability.items(suite, indices)
    resolved = models.resolve("smollm2-135m-instruct")
    tokenizer = models.load_tokenizer(resolved)
    model = models.load_model(resolved, quantize=True)
    head_tokens = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts[::4]]
    option_tokens = [len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in conts]
    print(f"bench_continuations: SmolLM2-135M-Instruct 4-bit NF4 on {models.device()}, torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs; {len(indices)} screen questions x 4 options = "
          f"{len(prompts)} rows, batch {BATCH_SIZE}; prompt tokens mean {statistics.mean(head_tokens):.0f} "
          f"(max {max(head_tokens)}), option tokens mean {statistics.mean(option_tokens):.1f} "
          f"(max {max(option_tokens)}); load average {os.getloadavg()[0]:.1f}", flush=True)

    def score(side: str, rows: int = len(prompts)) -> list[float]:
        return scoring.score_continuations(model, tokenizer, prompts[:rows], conts[:rows], batch_size=BATCH_SIZE,
                                           share_prompts=SIDES[side])[0]

    for side in SIDES:  # untimed warm-up: first-call allocations, lazy kernels
        score(side, rows=2 * BATCH_SIZE)

    order = ["old", "new", "new", "old"] * args.rounds
    seconds: list[float] = []
    logliks: dict[str, list[float]] = {}
    for i, side in enumerate(order):
        start_cpu, start = time.process_time(), time.perf_counter()
        logliks[side] = score(side)
        seconds.append(time.perf_counter() - start)
        # cores busy = process CPU seconds / wall seconds: well under the thread count means other work took the CPU
        busy = (time.process_time() - start_cpu) / seconds[-1]
        print(f"  run {i + 1}/{len(order)} {side}: {seconds[-1]:6.1f}s ({len(prompts) / seconds[-1]:.1f} rows/s); "
              f"cores busy {busy:.1f}, load average {os.getloadavg()[0]:.1f}", flush=True)

    total = {side: sum(t for t, s in zip(seconds, order) if s == side) for side in SIDES}
    # Adjacent runs (1-2, 3-4, ...) are one old and one new run, taken closest in time.
    pair_ratios = [seconds[i] / seconds[i + 1] if order[i] == "old" else seconds[i + 1] / seconds[i]
                   for i in range(0, len(order), 2)]
    difference = max(abs(a - b) for a, b in zip(logliks["old"], logliks["new"]))
    chosen = {side: capability.answers(suite, indices, logliks[side]) for side in SIDES}
    same = sum(a == b for a, b in zip(chosen["old"], chosen["new"]))
    correct = {side: sum(c == suite.rows[i].answer for c, i in zip(chosen[side], indices)) for side in SIDES}
    print(f"  old/new per adjacent pair: {', '.join(f'{r:.2f}' for r in pair_ratios)}")
    print(f"  log-likelihoods: max |old - new| {difference:.2e} nats (largest |value| "
          f"{max(abs(x) for x in logliks['old']):.1f}); same chosen option on {same}/{len(indices)} questions; "
          f"correct old {correct['old']}/{len(indices)}, new {correct['new']}/{len(indices)}")
    print()
    print(f"RATIO suite scoring old/new = {total['old'] / total['new']:.2f}x ratio of sums (old {total['old']:.1f}s, "
          f"new {total['new']:.1f}s over {len(order) // 2} runs each); {statistics.median(pair_ratios):.2f}x median "
          f"of {len(pair_ratios)} adjacent pairs; answers agree {same}/{len(indices)}, max |dloglik| {difference:.1e}")


if __name__ == "__main__":
    main()
