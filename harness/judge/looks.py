"""Repeated looks at the test rows: which look a judgement is, and the error rate it is judged at.

A look is one judgement of the five-percent rule (PASS, FAIL or INCONCLUSIVE) of a candidate on
a test split. Judging again on rows already judged (the same split after another training run,
or a superset of it after "collect more data") is another look at the same evidence: at 2.5%
one-sided per look, five looks at growing nested splits give about 6.5% false PASS at the bar
(docs/statistics.md). The store keeps a ledger of looks (harness/store/ledger.py); this module
is its arithmetic, pure:

- `look_id`: a judgement's identity, the hash of its sorted test row keys and of everything that
  decides its verdict (the candidate's adapter and config, the baseline, the rule's settings).
  The same judgement made again (a CI rerun, a cache hit) is the same look, not a new one.
- `count`: given the earlier looks whose rows overlap this one's, this look's number and budget.
- Bonferroni spending: with a budget of B looks declared at the first look of the rows
  (`Experiment.looks`), every look is judged at one-sided alpha / B (`spent_confidence`). That
  holds for any dependence between looks (nested supersets are strongly dependent), so B looks
  keep false PASS at the bar at or below alpha. A look beyond the budget cannot PASS or FAIL.
- `simulate`: the false PASS rate after each of several nested looks, naive and spent, through
  the harness's own `stats.paired_uplift`.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def look_id(row_keys: Iterable[str], judged: dict) -> str:
    """The identity of one judgement: the sorted test row keys (each a content hash) and `judged`,
    everything that decides the verdict (candidate adapter and config, baseline, rule settings)."""
    h = hashlib.sha256()
    for key in sorted(set(row_keys)):
        h.update(key.encode())
        h.update(b"\n")
    h.update(json.dumps(judged, sort_keys=True, default=str).encode())
    return h.hexdigest()


def draw_id(data_sha256: str, settings: dict) -> str:
    """The identity of a test split's draw: the data file's hash and the settings that split it
    (split, seed, max_rows, columns, fresh_test). `fresh_test` keeps out of test the rows judged at
    looks of other draws only, so a rerun of the same draw redraws the same fresh split."""
    return hashlib.sha256(json.dumps([data_sha256, settings], sort_keys=True, default=str).encode()).hexdigest()


def spent_confidence(confidence: float, budget: int) -> float:
    """The two-sided confidence each look's interval is computed at: each one-sided error
    (1 - confidence) / 2 divided by the budget (Bonferroni). 0.95 over 5 looks: 0.99."""
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"a budget of looks must be a positive integer, got {budget!r}")
    return 1.0 - (1.0 - confidence) / budget


def alpha_one_sided(confidence: float, budget: int = 1) -> float:
    """The one-sided error rate each look is judged at: (1 - confidence) / 2 / budget."""
    return (1.0 - spent_confidence(confidence, budget)) / 2.0


@dataclass(frozen=True)
class Prior:
    """An earlier look recorded in the ledger whose test rows overlap this one's."""

    look_id: str
    run_id: str
    look: int          # its number when it was judged
    looks_budget: int  # the budget in force when it was judged


@dataclass(frozen=True)
class Look:
    """Which look a judgement is at its test rows, and at what error rate it is judged."""

    look_id: str
    look: int                    # 1-based, among distinct looks at overlapping rows
    budget: int                  # the looks declared at the first look of these rows
    overlaps: tuple[str, ...]    # run ids of the earlier distinct looks at overlapping rows
    repeat_of: str | None = None  # the run that made this very judgement before (the same look again)

    @property
    def spent(self) -> bool:
        """Beyond the budget: this look may not PASS or FAIL."""
        return self.look > self.budget

    @property
    def counted(self) -> bool:
        """Whether the verdict's message says anything about looks (not for a lone first look of a budget of 1)."""
        return self.look > 1 or self.budget > 1

    def confidence(self, declared: float) -> float:
        return spent_confidence(declared, self.budget)

    def alpha_one_sided(self, declared: float) -> float:
        return alpha_one_sided(declared, self.budget)

    def text(self, declared: float) -> str:
        """'look k of B on these test rows (overlaps run ...)', with the error rate it is judged at."""
        where = f" (overlaps run {', '.join(self.overlaps)})" if self.overlaps else ""
        said = f"look {self.look} of {self.budget} on these test rows{where}"
        if self.spent:
            return said
        return (f"{said}, judged at one-sided {self.alpha_one_sided(declared):.2%} "
                f"({(1 - declared) / 2:.1%} / {self.budget} looks)")

    def spent_text(self) -> str:
        """Why a look beyond the budget is INCONCLUSIVE, and how to go on."""
        times = "once" if len(self.overlaps) == 1 else f"{len(self.overlaps)} times"
        return (f"these test rows were already judged {times} (run {', '.join(self.overlaps)}) and the budget of "
                f"{self.budget} look{'s' if self.budget != 1 else ''} declared at their first look (looks="
                f"{self.budget}) is spent, so this look can neither PASS nor FAIL: draw a fresh test split "
                f"(fresh_test=True in the spec, with rows never judged) to judge again")

    def to_dict(self, declared: float) -> dict:
        return {"look": self.look, "looks_budget": self.budget, "alpha_one_sided": self.alpha_one_sided(declared),
                "overlaps": list(self.overlaps), "look_id": self.look_id, "repeat_of": self.repeat_of,
                "looks_spent": self.spent}


def budget_for(priors: Sequence[Prior], declared: int) -> int:
    """The budget that counts: the one recorded at the first of the earlier looks, else `declared`
    (raising `looks` in the spec after seeing a result buys no more alpha). priors: oldest first."""
    return priors[0].looks_budget if priors else declared


def count(this_id: str, priors: Sequence[Prior], declared: int) -> Look:
    """This judgement's look. priors: the ledger's earlier looks whose rows overlap this one's,
    oldest first (several rows may share a look_id: the same judgement made by several runs).

    The same judgement made before keeps the number and budget it had then; a new one is the
    next look at these rows, under the budget of the first of them."""
    firsts: dict[str, Prior] = {}
    for p in priors:
        firsts.setdefault(p.look_id, p)
    if this_id in firsts:
        first = firsts[this_id]
        before = [p.run_id for p in firsts.values() if p.look < first.look]
        return Look(this_id, first.look, first.looks_budget, tuple(before), repeat_of=first.run_id)
    ordered = list(firsts.values())
    return Look(this_id, len(ordered) + 1, budget_for(ordered, declared), tuple(p.run_id for p in ordered))


def simulate(true_uplift: float, *, sizes: Sequence[int], draws: int, budget: int, base_rate: float = 0.645,
             phi: float = 0.0, threshold: float = 0.05, confidence: float = 0.95, resamples: int = 2000,
             seed: int = 0) -> dict[str, list[float]]:
    """False PASS (at a true uplift at the bar; else the PASS rate) after each of len(sizes) looks at
    nested test splits: look k judges the first sizes[k] rows of one draw of max(sizes) paired 0/1
    rows, so each split is a superset of the last and the same candidate is re-judged on more rows.

    Returns cumulative rates, entry k being P(a PASS at any of the first k+1 looks):
    "naive": every look at `confidence` (re-gating as if each were the first);
    "ledger": every look at `spent_confidence(confidence, budget)`.
    Each look runs `stats.paired_uplift`, as the gate does, with the draw's bootstrap seed (a spec's
    bootstrap_seed stays the same from run to run). The same resamples at a wider interval give a
    lower lower end, so a spent look is judged only where the naive one passed."""
    import numpy as np

    from harness.judge import stats
    from harness.judge.outcomes import PASS

    sizes = sorted(sizes)
    p1 = base_rate * (1.0 + true_uplift)
    cells = np.clip(np.array(stats.paired_cells(base_rate, p1, phi)), 0.0, None)
    rng = np.random.default_rng(seed)
    kinds = rng.choice(4, size=(draws, sizes[-1]), p=cells / cells.sum())
    cand_of, base_of = np.array([1.0, 0.0, 1.0, 0.0]), np.array([1.0, 1.0, 0.0, 0.0])
    spent = spent_confidence(confidence, budget)
    first = {"naive": np.full(draws, len(sizes)), "ledger": np.full(draws, len(sizes))}
    for i in range(draws):
        for k, n in enumerate(sizes):
            cand, base = cand_of[kinds[i, :n]], base_of[kinds[i, :n]]
            judged = dict(threshold=threshold, relative=True, resamples=resamples, seed=seed + 1 + i)
            if stats.paired_uplift(cand, base, confidence=confidence, **judged).outcome != PASS:
                continue
            first["naive"][i] = min(first["naive"][i], k)
            if stats.paired_uplift(cand, base, confidence=spent, **judged).outcome == PASS:
                first["ledger"][i] = k
                break
    return {name: [float(np.mean(at <= k)) for k in range(len(sizes))] for name, at in first.items()}
