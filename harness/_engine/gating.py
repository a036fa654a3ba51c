"""The gates of a run, applied to what was scored; each gate is given its policy
(`allow_inconclusive`, `picked_on`) and writes its own verdict."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from harness._engine.candidate import Candidate
from harness._engine.evaluate import Approach, Scoring
from harness._engine.prepare import Prepared
from harness.errors import SpecError
from harness.judge import gates, power, regression
from harness.judge.outcomes import SKIP, GateResult
from harness.spec.experiment import Experiment


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
               log: Callable[[str], None]) -> power.PowerStatement | None:
    """Before any training: what the sealed test split can show against the chosen baseline.
    An underpowered experiment stops here unless the spec says `underpowered="warn"`."""
    if experiment.candidate is None:
        return None
    planned = gates.planned_power(best.scores[picked_on], len(p.test), threshold=experiment.threshold,
                                  relative=experiment.relative, confidence=experiment.confidence, picked_on=picked_on)
    if planned is None:
        return None
    said = f"{experiment.name}: before training: {planned.text()}"
    if planned.power_now >= power.WANTED:
        log(said)
        return planned
    if experiment.underpowered == "fail":
        raise SpecError(f"{said}; so {len(p.test):,} test rows are underpowered ({planned.power_now:.0%} power there): "
                        f"give the test split more rows, or set underpowered=\"warn\" in the spec to train anyway")
    log(f"{said}; underpowered ({planned.power_now:.0%} power there), training anyway as the spec says "
        f"(underpowered=\"warn\")")
    return planned


def judge(experiment: Experiment, p: Prepared, best: Approach, picked_on: str, candidate: Candidate | None,
          suite: RegressionSuite | None, planned: power.PowerStatement | None = None) -> dict[str, GateResult]:
    """Every gate's verdict, by gate name; without a candidate only the data is judged."""
    verdicts = {"data_quality": p.quality}
    if candidate is None:
        verdicts["five_percent_rule"] = GateResult("five_percent_rule", SKIP, "no candidate declared; baselines only")
        return verdicts
    key, tuned = p.scoring.key_metric.name, candidate.approach
    verdicts["five_percent_rule"] = gates.five_percent_rule(
        key, tuned.scores["test"], best.name, best.scores["test"], threshold=experiment.threshold,
        relative=experiment.relative, confidence=experiment.confidence,
        allow_inconclusive=experiment.allows_inconclusive("five_percent_rule"), picked_on=picked_on,
        baseline_pick_score=best.metrics[picked_on][key], planned=planned, seed=experiment.bootstrap_seed,
        resamples=experiment.resamples)
    if suite:
        verdicts["regression"] = regression.regression_gate(
            suite.scores["base"], suite.scores["candidate"], delta=experiment.regression_delta,
            confidence=experiment.confidence, seed=experiment.bootstrap_seed, resamples=experiment.resamples,
            allow_inconclusive=experiment.allows_inconclusive("regression"))
    verdicts["overfit"] = gates.overfit(candidate.curves, train_score=tuned.metrics["train"][key],
                                        test_score=tuned.metrics["test"][key], metric=key)
    return verdicts
