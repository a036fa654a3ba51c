"""Gates: each turns stored numbers into a verdict that reads like a finding.

Every function here is pure: given scores, curves and thresholds it returns a `GateResult`
whose details hold every number and policy behind it, so an outcome can be re-derived from
the store alone. What the outcomes add up to is decided in one place, `judge.decision`.
"""
from __future__ import annotations

import math
from dataclasses import asdict

from harness.judge import stats
from harness.judge.outcomes import DATA_QUALITY, FAIL, FIVE_PERCENT_RULE, INCONCLUSIVE, OVERFIT, PASS, SKIP, GateResult


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def data_quality(checks: list) -> GateResult:
    """FAIL on any error-level check; warnings are listed but do not fail."""
    errors = [c for c in checks if c.level == "error"]
    warnings = [c for c in checks if c.level == "warning"]
    details = {"errors": len(errors), "warnings": len(warnings), "checks": [c.name for c in checks]}
    if errors:
        return GateResult(DATA_QUALITY, FAIL, "; ".join(f"{c.name}: {c.message}" for c in errors), details)
    summary = "; ".join(f"{c.name}: {c.message}" for c in warnings) or "no warnings"
    return GateResult(DATA_QUALITY, PASS, f"no errors, {len(warnings)} warning(s): {summary}", details)


def five_percent_rule(metric: str, candidate_scores: list[float], baseline_name: str, baseline_scores: list[float],
                      *, threshold: float = 0.05, relative: bool = True, confidence: float = 0.95,
                      allow_inconclusive: bool = False, picked_on: str | None = None, seed: int = 0,
                      resamples: int = 2000) -> GateResult:
    """The candidate must beat the best baseline by `threshold`, judged on a paired bootstrap interval.

    A relative uplift has no scale over a baseline at 0: its point estimate or interval runs to
    infinity (one right answer against none is "+inf%"). Then the rule is judged in absolute
    points instead (threshold 0.05 = 5 points), and the message says so."""
    u = stats.paired_uplift(candidate_scores, baseline_scores, threshold=threshold, relative=relative,
                            confidence=confidence, resamples=resamples, seed=seed)
    unbounded = relative and not all(map(math.isfinite, (u.uplift, u.low, u.high)))
    if unbounded:
        u = stats.paired_uplift(candidate_scores, baseline_scores, threshold=threshold, relative=False,
                                confidence=confidence, resamples=resamples, seed=seed)
    fmt = _pct if u.relative else (lambda x: f"{x * 100:+.1f} pts")
    limit = f"{threshold * 100:g}%" if u.relative else f"{threshold * 100:g} pts"
    relation = {"PASS": ">=", "FAIL": "<"}.get(u.outcome, "vs")
    message = (f"{metric} {u.candidate:.3f} vs {baseline_name} {u.baseline:.3f}, uplift {fmt(u.uplift)} "
               f"({confidence * 100:g}% CI {fmt(u.low)}..{fmt(u.high)}) {relation} {limit} on {u.n} paired test rows")
    if unbounded:
        message += "; judged in absolute points, as a relative uplift over a baseline this close to 0 is unbounded"
    if u.mcnemar_p is not None:
        message += f"; McNemar p={u.mcnemar_p:.3g} ({u.discordant[1]} fixed, {u.discordant[0]} broken)"
    outcome = u.outcome
    if outcome == INCONCLUSIVE and u.n_to_settle:
        message += f"; about {u.n_to_settle:,} test rows would settle it"
    details = asdict(u)
    details.update(metric=metric, baseline=baseline_name, baseline_score=u.baseline, candidate_score=u.candidate,
                   confidence=confidence, allow_inconclusive=allow_inconclusive, relative_unbounded=unbounded,
                   picked_on=picked_on)
    if outcome == INCONCLUSIVE and allow_inconclusive:
        message += " (allowed by the spec)"
    return GateResult(FIVE_PERCENT_RULE, outcome, message, details)


def overfit(curves: list[dict], *, train_score: float | None, test_score: float | None, metric: str,
            rising_evals: int = 2, max_gap: float = 0.15) -> GateResult:
    """Overfitting shows as val loss rising while train loss falls, or a wide train-test gap."""
    findings = []
    val = sorted((c["step"], c["loss"]) for c in curves if c["split"] == "val")
    train = sorted((c["step"], c["loss"]) for c in curves if c["split"] == "train")
    for end in range(rising_evals, len(val)):
        window = val[end - rising_evals:end + 1]
        if all(b[1] > a[1] for a, b in zip(window, window[1:])):
            lo, hi = window[0][0], window[-1][0]
            inside = [loss for step, loss in train if lo <= step <= hi]
            if len(inside) >= 2 and inside[-1] < inside[0]:
                points = ", ".join(f"step {s}: {loss:.4f}" for s, loss in window)
                findings.append(f"val loss rose {rising_evals} evaluations in a row ({points}) while train loss "
                                f"fell {inside[0]:.4f} -> {inside[-1]:.4f}")
                break
    if train_score is not None and test_score is not None:
        gap = train_score - test_score
        if train_score >= 0.999 and test_score < 1 - max_gap:
            findings.append(f"perfect train {metric} ({train_score:.3f}) but test {test_score:.3f}")
        elif gap > max_gap:
            findings.append(f"train {metric} {train_score:.3f} vs test {test_score:.3f}: gap {gap:.3f} > {max_gap}")
    details = {"rising_evals": rising_evals, "max_gap": max_gap, "train_score": train_score,
               "test_score": test_score, "val_curve": val}
    if not val and train_score is None:
        return GateResult(OVERFIT, SKIP, "no validation curve or train score to judge", details)
    if findings:
        return GateResult(OVERFIT, FAIL, "; ".join(findings), details)
    tail = f"val loss {val[0][1]:.4f} -> {val[-1][1]:.4f} over {len(val)} evaluations" if val else "no val curve"
    gap_text = (f"; train {metric} {train_score:.3f} vs test {test_score:.3f}"
                if train_score is not None and test_score is not None else "")
    return GateResult(OVERFIT, PASS, f"no sign of overfitting: {tail}{gap_text}", details)
