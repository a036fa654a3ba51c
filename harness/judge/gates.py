"""Gates: each turns stored numbers into a verdict that reads like a finding.

Every function here is pure: given scores, curves and thresholds it returns a `GateResult`
whose details hold every number and policy behind it, so an outcome can be re-derived from
the store alone. What the outcomes add up to is decided in one place, `judge.decision`.
"""
from __future__ import annotations

import math
from dataclasses import asdict

from harness.judge import looks, power, stats
from harness.judge.outcomes import DATA_QUALITY, FAIL, FIVE_PERCENT_RULE, INCONCLUSIVE, PASS, GateResult
from harness.judge.units import uplift_text


def data_quality(checks: list) -> GateResult:
    """FAIL on any error-level check; warnings are listed but do not fail."""
    errors = [c for c in checks if c.level == "error"]
    warnings = [c for c in checks if c.level == "warning"]
    details = {"errors": len(errors), "warnings": len(warnings), "checks": [c.name for c in checks]}
    if errors:
        return GateResult(DATA_QUALITY, FAIL, "; ".join(f"{c.name}: {c.message}" for c in errors), details)
    summary = "; ".join(f"{c.name}: {c.message}" for c in warnings) or "no warnings"
    return GateResult(DATA_QUALITY, PASS, f"no errors, {len(warnings)} warning(s): {summary}", details)


# Below this validation score of the chosen baseline, a relative uplift is not measurable: on a
# 100-row split that is under 10 right answers, where the ratio's interval is set by a handful
# of rows (at 3 or fewer the bootstrap finds resamples with none, and the ratio is infinite).
# Declared here, before any test row is seen, and decided on the selection split, never on test.
RELATIVE_MIN_BASELINE = 0.10


def judged_bar(threshold: float, relative: bool, baseline_pick_score: float | None) -> tuple[float, bool]:
    """(the bar, whether it is relative) the five-percent rule judges against, fixed before test:
    the declared rule, or points at threshold x RELATIVE_MIN_BASELINE over a baseline below the floor."""
    if relative and baseline_pick_score is not None and baseline_pick_score < RELATIVE_MIN_BASELINE:
        return threshold * RELATIVE_MIN_BASELINE, False
    return threshold, relative


def planned_power(baseline_pick_scores: list[float], n_test: int, *, threshold: float = 0.05, relative: bool = True,
                  confidence: float = 0.95, picked_on: str = "val") -> power.PowerStatement | None:
    """What the test split can show, stated before training: from the chosen baseline's
    per-row scores on the selection split, the test split's size and the bar, with the
    candidate assumed twice the bar better and uncorrelated with the baseline (phi 0).
    None when nothing can be said (a relative rule over a baseline at 0)."""
    if not baseline_pick_scores:
        return None
    mean = sum(baseline_pick_scores) / len(baseline_pick_scores)
    bar, judged_relative = judged_bar(threshold, relative, mean)
    binary = all(v in (0, 1) for v in baseline_pick_scores)
    spread = (sum((v - mean) ** 2 for v in baseline_pick_scores) / max(len(baseline_pick_scores) - 1, 1)) ** 0.5
    alternative = power.PLANNING_FACTOR * bar
    unit_sd = power.planned_unit_sd(mean, relative=judged_relative, alternative=alternative, binary=binary,
                                    baseline_sd=spread)
    if unit_sd is None:
        return None
    return power.statement(n_test, unit_sd, bar, relative=judged_relative, confidence=confidence,
                           spread_from=f"the chosen baseline on {picked_on} ({mean:.3f}), the candidate assumed "
                                       f"uncorrelated with it (phi 0)")


def five_percent_rule(metric: str, candidate_scores: list[float], baseline_name: str, baseline_scores: list[float],
                      *, threshold: float = 0.05, relative: bool = True, confidence: float = 0.95,
                      allow_inconclusive: bool = False, picked_on: str | None = None,
                      baseline_pick_score: float | None = None, planned: power.PowerStatement | None = None,
                      seed: int = 0, resamples: int = stats.RESAMPLES, look: looks.Look | None = None) -> GateResult:
    """The candidate must beat the best baseline by `threshold`, judged on a paired bootstrap
    interval: PASS when its lower end clears the bar (a one-sided test at 2.5% for confidence
    0.95), FAIL when its upper end is below it, INCONCLUSIVE otherwise.

    baseline_pick_score: the chosen baseline's key metric on the split it was picked on. A
    relative rule over a baseline that scored below RELATIVE_MIN_BASELINE there is judged in
    absolute points instead, with the bar the relative rule has at that floor
    (threshold x RELATIVE_MIN_BASELINE: 0.5 points for 5%), so the bar never jumps: it is
    threshold x max(baseline, floor) either way. The mode is fixed before test is opened.

    look: which look this judgement is at its test rows (harness/judge/looks.py, counted by the
    store's ledger): its interval is computed at `confidence` spent over the budget of looks
    (one-sided (1 - confidence) / 2 / budget), and a look beyond the budget is INCONCLUSIVE,
    whatever its interval. None (a direct call): judged as a single look at `confidence`."""
    declared_confidence = confidence
    if look is not None:
        confidence = look.confidence(declared_confidence)
    bar, judged_relative = judged_bar(threshold, relative, baseline_pick_score)
    floor_note = ""
    if judged_relative != relative:
        floor_note = (f"; judged in points against {bar * 100:.2g} pts ({threshold * 100:g}% of "
                      f"{RELATIVE_MIN_BASELINE:.0%}), as {baseline_name} scored {baseline_pick_score:.3f} on "
                      f"{picked_on or 'the selection split'}, below the {RELATIVE_MIN_BASELINE:.0%} where a "
                      f"relative uplift is measurable")
    u = stats.paired_uplift(candidate_scores, baseline_scores, threshold=bar, relative=judged_relative,
                            confidence=confidence, resamples=resamples, seed=seed)
    unbounded = not all(map(math.isfinite, (u.uplift, u.low, u.high)))
    outcome = INCONCLUSIVE if unbounded else u.outcome  # an infinite ratio proves nothing either way
    if look is not None and look.spent:
        outcome = INCONCLUSIVE  # the budget of looks at these rows is spent: no verdict either way
    fmt = lambda x: uplift_text(x, u.relative)  # noqa: E731
    limit = f"{bar * 100:g}%" if u.relative else f"{bar * 100:.2g} pts"
    relation = {PASS: ">=", FAIL: "<"}.get(outcome, "vs")
    message = (f"{metric} {u.candidate:.3f} vs {baseline_name} {u.baseline:.3f}, uplift {fmt(u.uplift)} "
               f"({confidence * 100:g}% CI {fmt(u.low)}..{fmt(u.high)}) {relation} {limit} on {u.n} paired test rows")
    message += floor_note
    if look is not None and look.counted:
        message += f"; {look.text(declared_confidence)}"
        if look.spent:
            message += f": {look.spent_text()}"
    if unbounded:
        message += ("; the relative interval is unbounded (the baseline has almost no right answers on test): "
                    "set relative=False to judge in points")
    if outcome == PASS:
        message += f"; the lower end clears the bar (a one-sided test at {(1 - confidence) / 2:.1%})"
    elif u.exact_gain_p is not None and not unbounded and u.outcome != PASS:
        message += (f"; the lower end clears the bar, but on {sum(u.discordant)} discordant rows the exact test "
                    f"does not confirm any gain (one-sided p={u.exact_gain_p:.3g} > {(1 - confidence) / 2:.3g})")
    if u.mcnemar_p is not None:
        message += (f"; McNemar p={u.mcnemar_p:.3g} for any difference ({u.discordant[1]} fixed, "
                    f"{u.discordant[0]} broken)")
    if u.near_the_bar and outcome != INCONCLUSIVE:
        message += (f"; an end lies within Monte Carlo error of the bar (+/-{max(u.low_mc_se, u.high_mc_se) * 100:.2g} "
                    f"{'%' if u.relative else 'pts'} at {u.resamples:,} resamples): raise resamples to be sure")
    statement = None
    if u.unit_sd is not None and not unbounded:
        statement = power.statement(u.n, u.unit_sd, bar, relative=u.relative, spread_from="this test split",
                                    confidence=confidence)
        if outcome == INCONCLUSIVE:
            message += f"; {statement.text()}, on a fresh test split (rows judged before count as another look)"
    details = asdict(u)
    details.update(metric=metric, baseline=baseline_name, baseline_score=u.baseline, candidate_score=u.candidate,
                   confidence=confidence, allow_inconclusive=allow_inconclusive, relative_unbounded=unbounded,
                   picked_on=picked_on, baseline_pick_score=baseline_pick_score, declared_threshold=threshold,
                   declared_relative=relative, relative_floor=RELATIVE_MIN_BASELINE,
                   power=statement.to_dict() if statement else None, outcome=outcome,
                   planned=planned.to_dict() if planned else None, declared_confidence=declared_confidence)
    details.update(look.to_dict(declared_confidence) if look is not None else
                   {"look": None, "looks_budget": None, "overlaps": [], "look_id": None, "repeat_of": None,
                    "looks_spent": False, "alpha_one_sided": looks.alpha_one_sided(declared_confidence)})
    if outcome == INCONCLUSIVE and allow_inconclusive:
        message += " (allowed by the spec)"
    return GateResult(FIVE_PERCENT_RULE, outcome, message, details)
