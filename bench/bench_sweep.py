"""How many optimizer steps does pruning save in a sweep, and does it cost the winner anything?

    .venv/bin/python bench/bench_sweep.py [--train 96] [--val 48] [--trials 6]

Runs the same seeded sweep twice in this one invocation on the embedded SmolLM2-135M (QLoRA
on this machine's CPU, or CUDA when present), on a slice of the shipped sarcasm data:
once with the median pruner (harness's default) and once without. Each run gets a fresh
store and Optuna journal, so nothing is shared or cached between them.

Printed: every trial of each sweep, then the ratio of optimizer steps (pruned / unpruned)
and the best validation accuracy of each. Steps are counted, not timed: the ratio does not
move with other work on a shared machine. Wall time is printed beside it for scale.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sweep_once(pruner: str | None, args, work: Path) -> tuple[list[dict], float]:
    from harness import Experiment, QLoRA, Sweep, baselines
    from harness._engine import run_sweep
    from harness.store import Store

    work.mkdir(parents=True)
    rows = (ROOT / "experiments/data/sarcasm.jsonl").read_text(encoding="utf-8").splitlines()
    (work / "data.jsonl").write_text("\n".join(rows[: args.train + args.val + 40]) + "\n", encoding="utf-8")
    shutil.copy(ROOT / "baselines/sarcasm/system.md", work / "system.md")
    experiment = Experiment(
        name="sweep-bench", data="data.jsonl", task="classification", split=(args.train, args.val, 40),
        baselines=[baselines.zero_shot("system.md")], regression=None,
        underpowered="warn", candidate=QLoRA(r=16, alpha=32, learning_rate=2e-4, epochs=2),
        sweep=Sweep(r=[4, 8, 16, 32], learning_rate=(2e-5, 2e-3), epochs=[1, 2, 3], evals_per_epoch=2,
                    trials=args.trials, seed=args.seed, pruner=pruner))
    store = Store(work / "h.duckdb")
    started = time.perf_counter()
    run_sweep(experiment, store, root=work, log=lambda m: print(f"    {m}", file=sys.stderr) if args.verbose else None)
    return store.trials(experiment="sweep-bench"), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=96)
    parser.add_argument("--val", type=int, default=48)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, pruner in (("pruned", "median"), ("unpruned", None)):
            trials, seconds = sweep_once(pruner, args, Path(tmp) / label)
            results[label] = (trials, seconds)
            print(f"{label} sweep ({seconds:.0f}s):")
            for t in trials:
                value = f"{t['value']:.3f}" if t["value"] is not None else "  -  "
                params = ", ".join(f"{k}={v:.2g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in t["params"].items() if k != "evals_per_epoch")
                print(f"  #{t['number']} {t['state']:<8} val acc {value}  {t['steps']:>3} steps  {params}")

    steps = {k: sum(t["steps"] or 0 for t in v[0]) for k, v in results.items()}
    best = {k: max((t["value"] for t in v[0] if t["value"] is not None), default=float("nan"))
            for k, v in results.items()}
    pruned_count = sum(t["state"] == "PRUNED" for t in results["pruned"][0])
    print()
    print(f"RATIO optimizer steps pruned/unpruned = {steps['pruned'] / steps['unpruned']:.3f} "
          f"({steps['pruned']} vs {steps['unpruned']} steps; {pruned_count} of {args.trials} trials pruned); "
          f"best val accuracy {best['pruned']:.3f} pruned vs {best['unpruned']:.3f} unpruned; "
          f"wall {results['pruned'][1]:.0f}s vs {results['unpruned'][1]:.0f}s")


if __name__ == "__main__":
    main()
