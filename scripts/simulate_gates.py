"""Simulate the gates' error rates and power through the harness's own statistics, and print
the tables of docs/statistics.md (markdown).

    .venv/bin/python scripts/simulate_gates.py [--draws 4000]
    .venv/bin/python scripts/simulate_gates.py --looks [--draws 4000]   # only the table of repeated looks
    .venv/bin/python scripts/simulate_gates.py --family [--draws 4000]  # only the table of Holm across experiments
    .venv/bin/python scripts/simulate_gates.py --overfit [--draws 4000] # only the overfit gate's tables
    .venv/bin/python scripts/simulate_gates.py --regression [--draws 1000]  # only the regression gate's table

Every number comes from `harness.judge.stats.simulate` (synthetic paired 0/1 rows with a known
truth, judged by `paired_uplift` exactly as the gates judge them) or from the gates themselves;
seeded, so a rerun prints the same tables.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.judge import family, gates, looks, overfit, power, regression, stats  # noqa: E402


def pct(x: float) -> str:
    return f"{x * 100:.1f}"


def looks_table(draws: int, resamples: int) -> None:
    """False PASS at the bar after 1, 2 and 5 looks at nested test splits (200, 400, ... rows, each a
    superset of the last, the same candidate re-judged): naive re-gating vs the ledger's alpha / looks."""
    sizes = (200, 400, 600, 800, 1000)
    print("### Repeated looks at nested test splits (true uplift exactly +5%; base 0.645, phi 0)\n")
    print(f"Look k judges the first {', '.join(map(str, sizes))} rows: a superset of the last look's.\n")
    print("| looks | rows judged | naive false PASS % | ledger, looks=k declared | ledger, looks=5 declared |")
    print("| ---: | --- | ---: | ---: | ---: |")
    five = looks.simulate(0.05, sizes=sizes, draws=draws, budget=5, resamples=resamples, seed=11)
    for k in (1, 2, 5):
        declared = five if k == 5 else looks.simulate(0.05, sizes=sizes, draws=draws, budget=k,
                                                      resamples=resamples, seed=11)  # the same draws
        print(f"| {k} | {', '.join(map(str, sizes[:k]))} | {pct(five['naive'][k - 1])} | "
              f"{pct(declared['ledger'][k - 1])} | {pct(five['ledger'][k - 1])} |")


def family_table(draws: int, resamples: int) -> None:
    """Several experiments judged in one session: how often any false PASS, with and without Holm."""
    print("### Several experiments in one session: Holm (each at a true +5 points, the bar; base 0.6, phi 0, "
          "300 test rows each)\n")
    print("| experiments | any false PASS %, each judged alone | any false PASS %, Holm |")
    print("| ---: | ---: | ---: |")
    for m in (2, 5, 10):
        r = family.simulate([0.05] * m, n=300, draws=draws, seed=7, resamples=resamples)
        print(f"| {m} | {pct(r['any_alone'])} | {pct(r['any_holm'])} |")
    r = family.simulate([0.20] + [0.05] * 4, n=300, draws=draws, seed=8, resamples=resamples)
    print(f"\nOne real +20-point gain among four experiments at the bar: it PASSes in {pct(r['alone'][0])}% of "
          f"sessions judged alone and in {pct(r['holm'][0])}% under Holm.")


def overfit_table(draws: int) -> None:
    """The overfit gate on synthetic curves (`overfit.simulate_overfit`: 120 val rows, per-row noise sd 0.3
    nats at each evaluation, train loss falling throughout), and its fit-gap warning."""
    print("### The overfit gate: false FAIL on a flat plateau, detection of a real overfit\n")
    print("Val loss drops at the first evaluation, then stays flat (rise 0) or, from a third of the way in, rises "
          "linearly to `rise` nats above its 1-nat plateau at the last evaluation; 120 val rows, iid N(0, 0.3) "
          "per row at every evaluation, train loss falling throughout.\n")
    print("| evaluations after step 0 | old rule FAIL % (now a warning) | FAIL % at rise 0 | FAIL % at rise 0.1 | "
          "FAIL % at rise 0.15 | FAIL % at rise 0.2 | FAIL % at rise 0.3, early stopping kept the best |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    power_draws = max(500, draws // 4)
    for evaluations in (3, 4, 6, 12):
        old = overfit.simulate_overfit(evaluations, draws=draws, row_losses=False, seed=1)
        flat = overfit.simulate_overfit(evaluations, draws=draws, seed=1)
        rises = [overfit.simulate_overfit(evaluations, draws=power_draws, rise=rise, seed=2)
                 for rise in (0.1, 0.15, 0.2)]
        rolled = overfit.simulate_overfit(evaluations, draws=power_draws, rise=0.3, early_stopping=True, seed=3)
        print(f"| {evaluations} | {pct(old['warned'])} | {pct(flat['FAIL'])} | "
              + " | ".join(pct(r["FAIL"]) for r in rises) + f" | {pct(rolled['FAIL'])} |")
    print(f"\n({draws:,} draws at rise 0, {power_draws:,} at the others.)")
    print("\n### The fit-gap warning (per-row losses, Gamma(2) around the true means; bar: val loss above train "
          "loss by 20% of it)\n")
    print("| true train / val loss | true val / train ratio | warned % at 200 train / 50 val rows | "
          "warned % at 480 train / 120 val rows |")
    print("| --- | ---: | ---: | ---: |")
    for train_loss, val_loss in ((1.0, 1.0), (1.0, 1.1), (1.0, 1.2), (1.0, 1.35), (1.0, 1.5), (0.2, 0.4)):
        rates = [overfit.simulate_gap(train_loss, val_loss, draws=draws, train_rows=t, val_rows=v, seed=4)
                 for t, v in ((200, 50), (480, 120))]
        print(f"| {train_loss} / {val_loss} | {val_loss / train_loss:.2f} | {pct(rates[0])} | {pct(rates[1])} |")


def regression_table(draws: int, resamples: int) -> None:
    """The regression gate through its own instruments and `regression.combine` (regression.simulate)."""
    margin = -math.log(1.05)
    print("### The regression gate: each instrument alone and both together\n")
    print("| instrument(s) | truth | PASS % | INCONCLUSIVE % | FAIL % |")
    print("| --- | --- | ---: | ---: | ---: |")
    cases = [
        ("probe, 250 documents, paired sd 0.2", "no loss", dict(probe_shift=0.0, suite_shift=None, paired_sd=0.2)),
        ("probe, 250 documents, paired sd 0.2", "at the margin (x1.05)",
         dict(probe_shift=margin, suite_shift=None, paired_sd=0.2)),
        ("probe, 250 documents, paired sd 0.2", "twice the margin (x1.10)",
         dict(probe_shift=2 * margin, suite_shift=None, paired_sd=0.2)),
        ("probe, 250 documents, paired sd 0.2", "a small loss (x1.02)",
         dict(probe_shift=-math.log(1.02), suite_shift=None, paired_sd=0.2)),
        ("suite, 1,140 questions, 5% discordant", "no loss", dict(probe_shift=None, suite_shift=0.0)),
        ("suite, 1,140 questions, 5% discordant", "at the margin (-2 pts)", dict(probe_shift=None, suite_shift=-0.02)),
        ("suite, 1,140 questions, 8% discordant", "a real loss (-5 pts)",
         dict(probe_shift=None, suite_shift=-0.05, discordance=0.08)),
        ("both", "no loss anywhere", dict(probe_shift=0.0, suite_shift=0.0, paired_sd=0.05)),
        ("both", "suite at its margin, probe no loss", dict(probe_shift=0.0, suite_shift=-0.02, paired_sd=0.05)),
    ]
    for what, truth, kwargs in cases:
        r = regression.simulate(draws=draws, resamples=resamples, documents=250, seed=3, **kwargs)
        print(f"| {what} | {truth} | {pct(r['PASS'])} | {pct(r['INCONCLUSIVE'])} | {pct(r['FAIL'])} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4000, help="synthetic experiments per cell")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per experiment")
    parser.add_argument("--looks", action="store_true", help="print only the table of repeated looks")
    parser.add_argument("--family", action="store_true", help="print only the table of Holm across experiments")
    parser.add_argument("--overfit", action="store_true", help="print only the overfit gate's tables")
    parser.add_argument("--regression", action="store_true", help="print only the regression gate's table")
    args = parser.parse_args()
    draws, resamples = args.draws, args.resamples
    started = time.perf_counter()
    se = 3 * math.sqrt(0.025 * 0.975 / draws) * 100
    print(f"{draws:,} draws per cell, {resamples:,} resamples each; the Monte Carlo band (3 SE) of a 2.5% rate "
          f"is +/-{se:.2f} points.\n")
    if args.regression:
        regression_table(draws, resamples)
        print(f"\n({time.perf_counter() - started:.0f} s)")
        return 0
    if args.overfit:
        overfit_table(draws)
        print(f"\n({time.perf_counter() - started:.0f} s)")
        return 0
    if args.looks or args.family:
        (looks_table if args.looks else family_table)(draws, resamples)
        print(f"\n({time.perf_counter() - started:.0f} s)")
        return 0

    print("### The five-percent rule at the boundary (true uplift exactly +5%)\n")
    print("| base | phi | test rows | false PASS % | false FAIL % |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for base, phi in ((0.645, 0.0), (0.6, 0.5), (0.15, 0.3)):
        for n in (200, 800, 1000):
            r = stats.simulate(0.05, n=n, draws=draws, base_rate=base, phi=phi, resamples=resamples, seed=1)
            print(f"| {base} | {phi} | {n} | {pct(r['PASS'])} | {pct(r['FAIL'])} |")

    print("\n### The same check with narrower intervals (what the test must reject)\n")
    print("| confidence | false PASS % at the boundary (base 0.645, phi 0, 800 rows) |")
    print("| ---: | ---: |")
    for confidence in (0.95, 0.9, 0.5):
        r = stats.simulate(0.05, n=800, draws=draws, base_rate=0.645, phi=0.0, resamples=resamples, seed=1,
                           confidence=confidence)
        print(f"| {confidence} | {pct(r['PASS'])} |")

    print("\n### Power at a true +15% (base 0.6): simulated, and the planning formula\n")
    print("| phi | test rows | PASS % (simulated) | PASS % (harness.judge.power) |")
    print("| ---: | ---: | ---: | ---: |")
    for phi in (0.0, 0.5):
        for n in (200, 800, 1000):
            r = stats.simulate(0.15, n=n, draws=max(1000, draws // 4), base_rate=0.6, phi=phi,
                               resamples=resamples, seed=2)
            p0, p1 = 0.6, 0.69
            both, *_ = stats.paired_cells(p0, p1, phi)
            ratio = p1 / p0
            unit_sd = math.sqrt(p1 * (1 - p1) + ratio ** 2 * p0 * (1 - p0) - 2 * ratio * (both - p0 * p1)) / p0
            print(f"| {phi} | {n} | {pct(r['PASS'])} | {pct(power.power(0.15, n, unit_sd, 0.05))} |")

    print("\n### Rows needed at the planning alternative (+10%, twice the bar; base 0.645, phi 0)\n")
    p0, p1 = 0.645, 0.645 * 1.10
    unit_sd = power.planned_unit_sd(p0, relative=True, alternative=0.10, binary=True)
    rows = {p: power.rows_for(0.10, unit_sd, 0.05, p) for p in (0.5, 0.8)}
    print("| power wanted | rows (formula) | PASS % simulated at those rows |")
    print("| ---: | ---: | ---: |")
    for wanted, n in rows.items():
        r = stats.simulate(0.10, n=n, draws=max(1000, draws // 4), base_rate=p0, phi=0.0, resamples=resamples,
                           seed=3)
        print(f"| {wanted:.0%} | {n:,} | {pct(r['PASS'])} |")

    print("\n### The near-zero rule: decided on validation, continuous\n")
    print("| baseline right (test) | candidate right | baseline on val | mode | bar | uplift (95% CI) | verdict |")
    print("| ---: | ---: | ---: | --- | ---: | --- | --- |")
    for base_right, cand_right, val in ((3, 7, 0.04), (4, 8, 0.04), (3, 7, None), (4, 8, None), (12, 20, 0.12)):
        base = [1.0] * base_right + [0.0] * (100 - base_right)
        cand = [1.0] * cand_right + [0.0] * (100 - cand_right)
        v = gates.five_percent_rule("exact_match", cand, "b", base, baseline_pick_score=val, picked_on="val")
        d = v.details
        fmt = (lambda x: f"{x * 100:+.1f}%") if d["relative"] else (lambda x: f"{x * 100:+.1f} pts")
        bar = f"{d['threshold'] * 100:g}%" if d["relative"] else f"{d['threshold'] * 100:.2g} pts"
        print(f"| {base_right}/100 | {cand_right}/100 | {'-' if val is None else val} | "
              f"{'relative' if d['relative'] else 'points'} | {bar} | {fmt(d['uplift'])} "
              f"({fmt(d['low'])}..{fmt(d['high'])}) | {v.outcome} |")

    print("\n### The regression gate (non-inferiority, margin -2 points; base 0.6, phi 0.5)\n")
    print("| questions | PASS % at no loss (power) | PASS % at -2 pts (size) | FAIL % at -5 pts |")
    print("| ---: | ---: | ---: | ---: |")
    for n in (228, 1000, 2000):
        kwargs = dict(n=n, draws=max(1000, draws // 4), base_rate=0.6, phi=0.5, relative=False, threshold=-0.02,
                      resamples=resamples)
        none, margin, loss = (stats.simulate(d, seed=4, **kwargs) for d in (0.0, -0.02, -0.05))
        print(f"| {n} | {pct(none['PASS'])} | {pct(margin['PASS'])} | {pct(loss['FAIL'])} |")

    print()
    looks_table(draws, resamples)
    print()
    family_table(draws, resamples)
    print()
    overfit_table(draws)

    print(f"\n({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
