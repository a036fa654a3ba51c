"""Several experiments judged in one session: Holm's family-wise correction (opt-in).

Each experiment's five-percent rule is a one-sided test at alpha (2.5%, or less on a repeated
look). Judging m experiments at once and acting on every PASS raises the chance that at least
one PASS is false to about 1 - (1 - alpha)^m: 12% for five experiments at the bar. Holm's
step-down procedure keeps it at alpha for any dependence between the experiments:

    order the experiments by p (each rule's `p_at_bar`, smallest first);
    the i-th (1-based) keeps its PASS only if p_i <= alpha_i / (m - i + 1) and every one
    before it kept its PASS too; the first that does not, and all after it, do not.

alpha_i is the experiment's own one-sided level (its look's, harness/judge/looks.py). A PASS
that Holm does not keep becomes INCONCLUSIVE (the evidence still shows no harm, only not
enough for the family); FAIL and INCONCLUSIVE stay as they are. The members are the
experiments whose rule was judged (not SKIPped, not a spent look). With one member nothing
changes. docs/statistics.md has the simulation and the command that reproduces it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from harness.judge.outcomes import INCONCLUSIVE, PASS, SKIP, GateResult


def members(rules: Mapping[str, GateResult]) -> list[str]:
    """The experiments a family judges: a rule with a p-value, neither skipped nor a spent look."""
    return [name for name, rule in rules.items()
            if rule.outcome != SKIP and rule.details.get("p_at_bar") is not None
            and not rule.details.get("looks_spent")]


def holm(rules: Mapping[str, GateResult]) -> dict[str, GateResult]:
    """Every rule of `rules` (experiment -> its five-percent rule), with Holm's step-down applied
    across the family; rules outside the family come back unchanged."""
    family = members(rules)
    out = dict(rules)
    m = len(family)
    if m < 2:
        return out
    ordered = sorted(family, key=lambda name: (rules[name].details["p_at_bar"], name))
    still_rejecting = True
    for rank, name in enumerate(ordered, start=1):
        rule = rules[name]
        p = rule.details["p_at_bar"]
        alpha = rule.details["alpha_one_sided"]  # the rule's own level: its look's (gates.five_percent_rule)
        level = alpha / (m - rank + 1)
        still_rejecting = still_rejecting and p <= level
        facts = {"method": "holm", "size": m, "rank": rank, "alpha_one_sided": level, "p_at_bar": p,
                 "members": ordered, "kept": rule.outcome == PASS and still_rejecting}
        said = (f"Holm across the {m} experiments judged in this session: ranked {rank} by p={p:.3g}, "
                f"which must be at most {level:.3g} ({alpha:.3g} / {m - rank + 1})")
        if rule.outcome == PASS and not still_rejecting:
            why = "it is not" if p > level else "an experiment ranked before it did not keep its PASS"
            out[name] = dataclasses.replace(
                rule, outcome=INCONCLUSIVE,
                message=f"{rule.message}; {said}: {why}, so the family does not show this gain (INCONCLUSIVE)",
                details={**rule.details, "family": facts, "outcome": INCONCLUSIVE, "outcome_alone": PASS})
        else:
            out[name] = dataclasses.replace(rule, message=f"{rule.message}; {said}",
                                            details={**rule.details, "family": facts})
    return out


def simulate(uplifts: list[float], *, n: int, draws: int, seed: int = 0, base_rate: float = 0.6,
             threshold: float = 0.05, resamples: int = 2000) -> dict:
    """Sessions of len(uplifts) independent experiments (n paired 0/1 test rows each, phi 0, the
    baseline right with probability base_rate, the candidate `uplift` points above it), each
    judged by the harness's own `gates.five_percent_rule` in points and then as one family:
    per experiment, how often it PASSes alone and under Holm; and how often any does."""
    import numpy as np

    from harness.judge import gates, stats

    rng = np.random.default_rng(seed)
    k = len(uplifts)
    alone, holm_ = np.zeros(k), np.zeros(k)
    any_alone = any_holm = 0
    cells = [np.clip(stats.paired_cells(base_rate, base_rate + d, 0.0), 0, None) for d in uplifts]
    cand_of, base_of = np.array([1.0, 0.0, 1.0, 0.0]), np.array([1.0, 1.0, 0.0, 0.0])
    for draw in range(draws):
        rules = {}
        for i, c in enumerate(cells):
            kinds = np.repeat(np.arange(4), rng.multinomial(n, c / c.sum()))
            rules[str(i)] = gates.five_percent_rule("accuracy", cand_of[kinds], "baseline", base_of[kinds],
                                                    threshold=threshold, relative=False,
                                                    baseline_pick_score=base_rate, resamples=resamples, seed=draw)
        judged = holm(rules)
        got_alone = np.array([rules[str(i)].outcome == PASS for i in range(k)])
        got_holm = np.array([judged[str(i)].outcome == PASS for i in range(k)])
        alone, holm_ = alone + got_alone, holm_ + got_holm
        any_alone += bool(got_alone.any())
        any_holm += bool(got_holm.any())
    return {"alone": (alone / draws).tolist(), "holm": (holm_ / draws).tolist(),
            "any_alone": any_alone / draws, "any_holm": any_holm / draws}
