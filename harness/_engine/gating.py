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
from harness.judge import capability, forgetting, gates, looks, overfit, power, regression
from harness.judge.outcomes import SKIP, GateResult
from harness.spec.experiment import Experiment
from harness.store import RunRecord, Store, ledger


class Regression:
    """The regression gate's instruments (harness/judge/regression.py), scored on the base model
    before training and on the candidate after: the forgetting probe's documents, and the
    capability suite's screen, then (if the base clears it) the rest of the suite."""

    def __init__(self, experiment: Experiment, probe: forgetting.Probe | None, suite: capability.Suite | None):
        self.experiment, self.probe, self.suite = experiment, probe, suite
        self.probe_scores: dict[str, forgetting.ProbeScores] = {}
        self.suite_scores: dict[str, capability.SuiteScores] = {}
        self.screen: capability.Screen | None = None
        self.planned: dict = {}

    @classmethod
    def declared(cls, experiment: Experiment, root: Path) -> Regression | None:
        """The experiment's instruments; None without any, or without a candidate to compare."""
        if not ((experiment.forgetting or experiment.regression) and experiment.candidate):
            return None
        return cls(experiment, forgetting.load_probe(experiment.forgetting, root=root) if experiment.forgetting else None,
                   capability.load_suite(experiment.regression, root=root) if experiment.regression else None)

    @property
    def suite_judged(self) -> bool:
        return self.suite is not None and self.screen is not None and self.screen.passed

    def score_base(self, scoring: Scoring, model_id: str, load_model: Callable[[], object], events: Events) -> None:
        """Before training: the base on the probe and the suite's screen (then the rest of the
        suite if it clears it), and the power each instrument will have, said and kept."""
        experiment = self.experiment
        self._score(scoring, "base", model_id, load_model)
        self.planned = regression.plan(probe=self.probe_scores.get("base"), suite=self.suite_scores.get("base"),
                                       screen=self.screen, margin=experiment.forgetting_margin,
                                       delta=experiment.regression_delta, confidence=experiment.confidence)
        if self.planned:
            underpowered = regression.is_underpowered(self.planned)
            events.emit(kinds.REGRESSION_PLANNED, f"{experiment.name}: before training: regression gate: "
                        f"{regression.planned_text(self.planned)}", underpowered=underpowered, planned=self.planned)

    def score_candidate(self, scoring: Scoring, model_id: str, load_model: Callable[[], object]) -> None:
        self._score(scoring, "candidate", model_id, load_model)

    def _score(self, scoring: Scoring, who: str, model_id: str, load_model: Callable[[], object]) -> None:
        if self.probe is not None:
            start = forgetting.boundary(scoring.scorer.tokenizer)
            loglik, tokens = scoring.scorer.continuations(model_id, load_model, [start] * len(self.probe.texts),
                                                          list(self.probe.texts),
                                                          f"{scoring.experiment_name}: forgetting probe, {who}")
            self.probe_scores[who] = forgetting.from_logliks(self.probe, loglik, tokens)
        if self.suite is None:
            return
        if who == "base":
            self.suite_scores[who] = self._answer(scoring, who, model_id, load_model, self.suite.screen_questions,
                                                  "screen")
            self.screen = capability.screen(self.suite_scores[who], self.experiment.regression_delta,
                                            self.experiment.confidence)
        if self.suite_judged:
            self.suite_scores[who] = self._answer(scoring, who, model_id, load_model, list(range(len(self.suite.rows))),
                                                  "suite")

    def _answer(self, scoring: Scoring, who: str, model_id: str, load_model: Callable[[], object],
                indices: list[int], part: str) -> capability.SuiteScores:
        prompts, conts = capability.items(self.suite, indices)
        # the screen's answers are in the output cache when the whole suite follows: only the rest is scored
        loglik, _ = scoring.scorer.continuations(model_id, load_model, prompts, conts,
                                                 f"{scoring.experiment_name}: capability suite {part}, {who}")
        return capability.from_answers(self.suite, indices, capability.answers(self.suite, indices, loglik))

    def gate(self) -> GateResult:
        experiment, parts = self.experiment, {}
        settings = {"confidence": experiment.confidence, "seed": experiment.bootstrap_seed,
                    "resamples": experiment.resamples}
        if self.probe is not None:
            parts[regression.PROBE] = regression.probe_part(self.probe_scores["base"], self.probe_scores["candidate"],
                                                            margin=experiment.forgetting_margin, **settings)
        if self.suite is not None:
            parts[regression.SUITE] = (regression.suite_part(self.suite_scores["base"], self.suite_scores["candidate"],
                                                             delta=experiment.regression_delta, **settings)
                                       if self.suite_judged else capability.skipped(self.suite, self.screen))
        return regression.combine(parts, planned=self.planned,
                                  allow_inconclusive=experiment.allows_inconclusive("regression"))


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
          suite: Regression | None, planned: power.PowerStatement | None = None, *, store: Store | None = None,
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
        verdicts["regression"] = suite.gate()
    verdicts["overfit"] = overfit.gate(candidate.curves, train_row_losses=candidate.trained.train_row_losses,
                                       kept_step=candidate.trained.kept_step, confidence=experiment.confidence)
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
