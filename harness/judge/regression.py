"""Regression gate: did fine-tuning cost the model its general ability (catastrophic forgetting)?

Two instruments, each a non-inferiority test on paired measurements of the base (before
training) and the candidate (after):

- the forgetting probe (harness/judge/forgetting.py): per-token log-likelihood of held general
  text, paired per document; the candidate's perplexity may rise by at most `forgetting_margin`
  (5% by default). Continuous, so a few hundred documents resolve it; it runs on every experiment.
- the capability suite (harness/judge/capability.py): multiple-choice questions scored by option
  likelihood; the candidate may lose at most `regression_delta` accuracy (2 points). It judges
  only where the base answers above chance plus the margin; otherwise it SKIPs, saying so.

They combine as an intersection-union test, decided here and only here: PASS when every
instrument that judged PASSes, FAIL when any FAILs, SKIP when none judged, INCONCLUSIVE otherwise.
A PASS needs each instrument's own one-sided test at 2.5% to pass, so a candidate that lost more
than a margin PASSes at most 2.5% of the time; a false FAIL can come from either instrument, so
a candidate that lost nothing FAILs at most 2 x 2.5% of the time (tests/test_regression_simulated.py).

Power is stated before training, from the base's own scores and a planning assumption about
how alike the candidate will be: PLANNING_CORRELATION.
"""
from __future__ import annotations

from harness.judge import capability, forgetting, power
from harness.judge.outcomes import FAIL, INCONCLUSIVE, PASS, REGRESSION, SKIP, GateResult
from harness.judge.units import signed_points

PROBE, SUITE = "forgetting_probe", "capability_suite"
# Before training, the candidate does not exist, so the spread of its paired differences from
# the base is assumed: its per-item results correlate 0.9 with the base's. An adapter on a
# frozen base changes little of the function; on the shipped sarcasm run the candidate and the
# base disagreed on 6.3% of the letter-scored MMLU questions, a correlation of about 0.87.
# Declared here, never fitted; the verdict's own interval uses the measured spread.
PLANNING_CORRELATION = 0.9


def combine(parts: dict[str, GateResult], *, planned: dict | None = None,
            allow_inconclusive: bool = False) -> GateResult:
    """The regression gate from its instruments' results, by instrument name (PROBE, SUITE)."""
    judged = {name: part for name, part in parts.items() if part.outcome != SKIP}
    outcomes = {part.outcome for part in judged.values()}
    if not judged:
        outcome = SKIP
    elif FAIL in outcomes:
        outcome = FAIL
    elif outcomes == {PASS}:
        outcome = PASS
    else:
        outcome = INCONCLUSIVE
    message = "; ".join(f"{_LABEL[name]}: {part.outcome} - {part.message}" for name, part in parts.items())
    if outcome == INCONCLUSIVE:
        for name, part in judged.items():
            if part.outcome == INCONCLUSIVE and part.details.get("power"):
                message += f"; {_power_text(name, power.PowerStatement(**part.details['power']))}"
    if outcome == INCONCLUSIVE and allow_inconclusive:
        message += " (allowed by the spec)"
    details = {"instruments": {name: part.row() for name, part in parts.items()}, "allow_inconclusive":
               allow_inconclusive, "rule": "intersection-union: PASS when every judged instrument PASSes, FAIL when "
                                           "any FAILs", "planned": planned or {}}
    return GateResult(REGRESSION, outcome, message, details)


_LABEL = {PROBE: "forgetting probe", SUITE: "capability suite"}


def probe_part(base: forgetting.ProbeScores, candidate: forgetting.ProbeScores, *, margin: float, confidence: float,
               seed: int, resamples: int) -> GateResult:
    """The probe's verdict, with the power its measured spread gives at no loss."""
    part = forgetting.judge(base, candidate, margin=margin, confidence=confidence, seed=seed, resamples=resamples)
    return _with_power(part, forgetting.bar(margin), "these documents' paired log-likelihoods", confidence)


def suite_part(base: capability.SuiteScores, candidate: capability.SuiteScores, *, delta: float, confidence: float,
               seed: int, resamples: int) -> GateResult:
    part = capability.judge(base, candidate, delta=delta, confidence=confidence, seed=seed, resamples=resamples)
    return _with_power(part, -delta, "this suite's paired answers", confidence)


def _with_power(part: GateResult, bar: float, spread_from: str, confidence: float) -> GateResult:
    """The part with the power its measured spread gives at no loss (none without a spread)."""
    if part.details["unit_sd"] is None:
        return part
    statement = _statement(part.details["n"], part.details["unit_sd"], bar, spread_from, confidence)
    return GateResult(part.gate, part.outcome, part.message, {**part.details, "power": statement.to_dict()})


def _statement(n: int, unit_sd: float, bar: float, spread_from: str, confidence: float) -> power.PowerStatement:
    # non-inferiority: the natural alternative is no loss at all
    return power.statement(n, unit_sd, bar, relative=False, spread_from=spread_from, alternative=0.0,
                           alternative_is="no loss", confidence=confidence)


def _power_text(name: str, statement: power.PowerStatement) -> str:
    if name == PROBE:
        return statement.text(unit="documents", quantity="difference",
                              fmt=lambda x: f"{x:+.3f} nats/token (perplexity {forgetting.ratio_text(x)})")
    return statement.text(unit="questions", quantity="difference", fmt=lambda x: f"{signed_points(x)} pts")


def plan(*, probe: forgetting.ProbeScores | None, suite: capability.SuiteScores | None,
         screen: capability.Screen | None, margin: float, delta: float, confidence: float) -> dict:
    """Before training: what each instrument can show at no loss, from the base's scores and
    PLANNING_CORRELATION; a suite the base failed to clear the screen of is said to SKIP.
    {instrument: {"power": PowerStatement dict, "text": one clause}}."""
    said = {}
    if probe is not None:
        statement = _statement(len(probe.tokens), forgetting.planned_unit_sd(probe, PLANNING_CORRELATION),
                               forgetting.bar(margin), f"the base's per-document log-likelihoods, the candidate "
                               f"assumed to correlate {PLANNING_CORRELATION:g} with them", confidence)
        said[PROBE] = {"power": statement.to_dict(), "text": _planned_text(PROBE, statement)}
    if screen is not None and not screen.passed:
        said[SUITE] = {"power": None, "text": f"{_LABEL[SUITE]} will SKIP: {screen.text(suite.title if suite else '')}"}
    elif suite is not None:
        statement = _statement(suite.n, capability.planned_unit_sd(suite.accuracy, PLANNING_CORRELATION),
                               -delta, f"the base's accuracy ({suite.accuracy:.3f}), the candidate assumed to "
                               f"agree with it at phi {PLANNING_CORRELATION:g}", confidence)
        said[SUITE] = {"power": statement.to_dict(), "text": _planned_text(SUITE, statement)}
    return said


def _planned_text(name: str, statement: power.PowerStatement) -> str:
    return f"{_LABEL[name]}: {statement.power_now:.0%} power to PASS at no loss; {_power_text(name, statement)}"


def planned_text(planned: dict) -> str:
    return "; ".join(entry["text"] for entry in planned.values())


def is_underpowered(planned: dict) -> bool:
    return any(entry["power"] and entry["power"]["power_now"] < power.WANTED for entry in planned.values())



def simulate(*, probe_shift: float | None, suite_shift: float | None, draws: int, seed: int = 0,
             documents: int = 250, doc_sd: float = 0.4, paired_sd: float = 0.05, questions: int = 1140,
             base_accuracy: float = 0.45, discordance: float = 0.05, margin: float = 0.05, delta: float = 0.02,
             resamples: int = 2000) -> dict:
    """Outcome rates of the regression gate, judged by the harness's own instruments and `combine`,
    on simulated base/candidate pairs. probe_shift: the true change in per-token log-likelihood
    (nats; -ln(1.05) is the margin), each document's own change spread `paired_sd` around it.
    suite_shift: the true change in accuracy (-0.02 is the margin), with `discordance` of the
    questions answered differently. None leaves that instrument out. {outcome: rate}."""
    import numpy as np

    rng = np.random.default_rng(seed)
    counts = {PASS: 0, FAIL: 0, INCONCLUSIVE: 0, SKIP: 0}
    settings = {"confidence": 0.95, "resamples": resamples}
    for draw in range(draws):
        parts = {}
        if probe_shift is not None:
            base = rng.normal(-3.5, doc_sd, documents)
            cand = base + probe_shift + rng.normal(0, paired_sd, documents)
            scores = [forgetting.ProbeScores("sim", "sim", "x", list(v), [1] * documents) for v in (base, cand)]
            parts[PROBE] = forgetting.judge(*scores, margin=margin, seed=draw, **settings)
        if suite_shift is not None:
            # discordant pairs split so that (fixed - broken) / n is the true shift
            broken, fixed = (discordance - suite_shift) / 2, (discordance + suite_shift) / 2
            both = base_accuracy - broken
            kinds = np.repeat(np.arange(4), rng.multinomial(questions, [both, broken, fixed, 1 - both - broken - fixed]))
            base_right, cand_right = np.isin(kinds, (0, 1)).astype(int), np.isin(kinds, (0, 2)).astype(int)
            made = [capability.SuiteScores("sim", "sim", "x", list(range(questions)), ["s"] * questions, list(v),
                                           ["A"] * questions) for v in (base_right, cand_right)]
            parts[SUITE] = capability.judge(*made, delta=delta, seed=draw, **settings)
        counts[combine(parts).outcome] += 1
    return {k: v / draws for k, v in counts.items()}
