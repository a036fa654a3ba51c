"""The gates of a run, applied to what was scored; each gate is given its policy
(`allow_inconclusive`, `picked_on`) and writes its own verdict."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from harness._engine import events as kinds
from harness._engine.candidate import Candidate
from harness._engine.evaluate import Approach, Scoring
from harness._engine.events import Events
from harness._engine.prepare import Prepared, test_draw
from harness.errors import SpecError
from harness.judge import gates, looks, power, regression
from harness.judge.outcomes import SKIP, GateResult
from harness.spec.experiment import Experiment
from harness.store import RunRecord, Store, ledger


class RegressionSuite:
    """The general-ability suite (harness/judge/regression.py), scored on the base model before
    training and on the candidate after: scores by who answered ("base", "candidate")."""

    def __init__(self, suite: regression.Suite):
        self.suite, self.prompts = suite, [regression.prompt(q) for q in suite.rows]
        self.scores: dict[str, regression.SuiteScores] = {}

    @classmethod
    def declared(cls, experiment: Experiment, root: Path) -> RegressionSuite | None:
        """The experiment's suite; None without one, or without a candidate to compare."""
        if not (experiment.regression and experiment.candidate):
            return None
        return cls(regression.load_suite(experiment.regression, root=root))

    def score(self, scoring: Scoring, who: str, model_id: str, load_model: Callable[[], object]) -> None:
        scored = scoring.scorer.score_labels(model_id, load_model, self.prompts, regression.CONTINUATIONS,
                                             f"{scoring.experiment_name}: regression suite, {who}")
        self.scores[who] = regression.from_predictions(self.suite, scored.predictions)


def plan_power(experiment: Experiment, p: Prepared, best: Approach, picked_on: str,
               events: Events, store: Store | None = None) -> power.PowerStatement | None:
    """Before any training: what the sealed test split can show against the chosen baseline, at
    the error rate its look will be judged at (the ledger's budget of looks at these rows).
    An underpowered experiment stops here unless the spec says `underpowered="warn"`."""
    if experiment.candidate is None:
        return None
    budget, seen = (ledger.budget(store, experiment.name, (s.key for s in p.splits.test), experiment.looks)
                    if store is not None else (experiment.looks, 0))
    planned = gates.planned_power(best.scores[picked_on], len(p.test), threshold=experiment.threshold,
                                  relative=experiment.relative, picked_on=picked_on,
                                  confidence=looks.spent_confidence(experiment.confidence, budget))
    if planned is None:
        return None
    said = f"{experiment.name}: before training: {planned.text()}"
    if budget > 1 or seen:
        said += (f" (at one-sided {looks.alpha_one_sided(experiment.confidence, budget):.2%}: a budget of {budget} "
                 f"look{'s' * (budget != 1)} at these test rows, {seen} already recorded")
        said += ("; the budget is spent, so unless this run repeats one of those judgements exactly its verdict "
                 "is INCONCLUSIVE: set fresh_test=True to draw rows never judged)" if seen >= budget else ")")
    facts = {"power": planned.power_now, "wanted": power.WANTED, "test_rows": len(p.test),
             "statement": planned.to_dict(), "looks_budget": budget, "looks_before": seen}
    if planned.power_now >= power.WANTED:
        events.emit(kinds.POWER_PLANNED, said, underpowered=False, **facts)
        return planned
    if experiment.underpowered == "fail":
        raise SpecError(f"{said}; so {len(p.test):,} test rows are underpowered ({planned.power_now:.0%} power there): "
                        f"give the test split more rows, or set underpowered=\"warn\" in the spec to train anyway")
    events.emit(kinds.POWER_PLANNED, f"{said}; underpowered ({planned.power_now:.0%} power there), training anyway "
                f"as the spec says (underpowered=\"warn\")", underpowered=True, **facts)
    return planned


def judge(experiment: Experiment, p: Prepared, best: Approach, picked_on: str, candidate: Candidate | None,
          suite: RegressionSuite | None, planned: power.PowerStatement | None = None, *, store: Store | None = None,
          record: RunRecord | None = None) -> dict[str, GateResult]:
    """Every gate's verdict, by gate name; without a candidate only the data is judged. With a
    store, the five-percent rule's judgement is counted as a look at its test rows (the ledger,
    harness/store/ledger.py) and added to `record.looks`, written with the run."""
    verdicts = {"data_quality": p.quality}
    if candidate is None:
        verdicts["five_percent_rule"] = GateResult("five_percent_rule", SKIP, "no candidate declared; baselines only")
        return verdicts
    key, tuned = p.scoring.key_metric.name, candidate.approach
    row_keys = [s.key for s in p.splits.test]
    look = None
    if store is not None:
        look = ledger.count(store, experiment.name, row_keys, judged_on_test(experiment, key, best, candidate),
                            experiment.looks)
    verdicts["five_percent_rule"] = gates.five_percent_rule(
        key, tuned.scores["test"], best.name, best.scores["test"], threshold=experiment.threshold,
        relative=experiment.relative, confidence=experiment.confidence,
        allow_inconclusive=experiment.allows_inconclusive("five_percent_rule"), picked_on=picked_on,
        baseline_pick_score=best.metrics[picked_on][key], planned=planned, seed=experiment.bootstrap_seed,
        resamples=experiment.resamples, look=look)
    if look is not None and record is not None:
        record.looks.append(ledger.entry(experiment.name, look, verdicts["five_percent_rule"].outcome, row_keys,
                                         draw=test_draw(experiment, p.data_sha)))
    if suite:
        verdicts["regression"] = regression.regression_gate(
            suite.scores["base"], suite.scores["candidate"], delta=experiment.regression_delta,
            confidence=experiment.confidence, seed=experiment.bootstrap_seed, resamples=experiment.resamples,
            allow_inconclusive=experiment.allows_inconclusive("regression"))
    verdicts["overfit"] = gates.overfit(candidate.curves, train_score=tuned.metrics["train"][key],
                                        test_score=tuned.metrics["test"][key], metric=key)
    return verdicts


def judged_on_test(experiment: Experiment, key_metric: str, best: Approach, candidate: Candidate) -> dict:
    """What decides the five-percent rule's verdict besides the rows: the candidate (its adapter and
    config), the baseline it is judged against and the rule's settings. The same rows and the same
    of all this (a CI rerun, a cache hit) is the same look; a change in any of it, another look."""
    return {"candidate": {"adapter_sha256": candidate.trained.adapter_sha256, "config": candidate.approach.config},
            "baseline": {"name": best.name, "config": best.config},
            "rule": {"metric": key_metric, "threshold": experiment.threshold, "relative": experiment.relative,
                     "confidence": experiment.confidence, "bootstrap_seed": experiment.bootstrap_seed,
                     "resamples": experiment.resamples}}
