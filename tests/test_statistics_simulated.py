"""The 5% rule's error rates, by simulation through the harness's own `stats.paired_uplift`.

Each test is a claim docs/statistics.md makes, checked so that it could fail: a test of
"false PASS at the boundary is 2.5%" must reject a 50% interval (about 25% false PASS) and a
90% one (5%). Rates are compared with a band of 3 Monte Carlo standard errors around the
claim: with 3,000 draws the standard error of a 2.5% rate is 0.29 points, so the band is
1.6%..3.4%. Every simulation is seeded, so a run is exactly repeatable.
"""
from __future__ import annotations

import math

import pytest

from harness.judge import gates, power, stats

DRAWS = 3000
NOMINAL = 0.025  # one-sided error of each verdict at confidence 0.95


def band(rate: float, draws: int) -> float:
    return 3 * math.sqrt(rate * (1 - rate) / draws)


def within(observed: float, expected: float, draws: int) -> bool:
    return abs(observed - expected) <= band(expected, draws)


# The shipped sarcasm run's shape: base 0.645, phi 0 (its table had phi = 0.009), 800 test rows.
SHIPPED = dict(n=800, base_rate=0.645, phi=0.0)


def test_false_pass_and_false_fail_at_the_boundary_are_each_2_5_percent():
    rates = stats.simulate(0.05, draws=DRAWS, resamples=2000, seed=1, **SHIPPED)
    print(f"at a true +5% (the bar): {rates}")
    assert within(rates["PASS"], NOMINAL, DRAWS), rates
    assert within(rates["FAIL"], NOMINAL, DRAWS), rates


@pytest.mark.parametrize("confidence", [0.5, 0.9])
def test_the_boundary_check_rejects_a_narrower_interval(confidence):
    """The check above could fail: a 50% or 90% interval gives 25% or 5% false PASS."""
    rates = stats.simulate(0.05, draws=DRAWS, resamples=2000, seed=1, confidence=confidence, **SHIPPED)
    print(f"confidence {confidence}: {rates}")
    assert not within(rates["PASS"], NOMINAL, DRAWS)
    assert rates["PASS"] == pytest.approx((1 - confidence) / 2, abs=band((1 - confidence) / 2, DRAWS))


# Power at a true +15% over a base of 0.6 (docs/statistics.md, with the review's figures:
# 24 / 69 / 79% at phi 0 and 41 / 94 / 97% at phi 0.5 for 200 / 800 / 1,000 rows).
POWER = {(200, 0.0): 0.239, (800, 0.0): 0.692, (1000, 0.0): 0.795,
         (200, 0.5): 0.411, (800, 0.5): 0.939, (1000, 0.5): 0.971}


@pytest.mark.parametrize(("n", "phi"), POWER)
def test_power_at_a_true_15_percent_and_the_planning_formula(n, phi):
    draws = 1000
    rate = stats.simulate(0.15, n=n, draws=draws, base_rate=0.6, phi=phi, resamples=2000, seed=2)["PASS"]
    print(f"power at +15%, n={n}, phi={phi}: {rate:.3f}")
    assert within(rate, POWER[(n, phi)], draws)
    # the normal-approximation formula that rows-needed and the pre-training statement use is
    # slightly conservative (it never promises more power than the gate has), and close
    p0, p1 = 0.6, 0.69
    both, *_ = stats.paired_cells(p0, p1, phi)
    ratio = p1 / p0
    unit_sd = math.sqrt(p1 * (1 - p1) + ratio ** 2 * p0 * (1 - p0) - 2 * ratio * (both - p0 * p1)) / p0
    predicted = power.power(0.15, n, unit_sd, 0.05)
    assert predicted - band(rate, draws) <= rate <= predicted + 0.07


def test_rows_needed_do_not_swing_with_the_observed_uplift():
    """Two INCONCLUSIVE runs of the same truth, one lucky and one not, ask for the same rows
    (the assumption is twice the bar, not the point estimate); the old plug-in asked for 559 and
    1,705 on the shipped runs."""
    import numpy as np

    def table(fixed: int, broken: int, n: int = 800, both: int = 368):
        base = np.array([1.0] * (both + broken) + [0.0] * (n - both - broken))
        cand = np.array([1.0] * both + [0.0] * broken + [1.0] * fixed + [0.0] * (n - both - broken - fixed))
        return cand, base

    def judged(fixed: int):
        cand, base = table(fixed=fixed, broken=148)
        return gates.five_percent_rule("accuracy", cand, "best", base, baseline_pick_score=0.64)

    lucky, unlucky = judged(205), judged(180)
    assert lucky.outcome == unlucky.outcome == "INCONCLUSIVE"
    a, b = lucky.details["power"], unlucky.details["power"]
    assert a["alternative"] == b["alternative"] == pytest.approx(0.10)
    # only the per-row spread differs (353 vs 328 discordant rows): within 20%, where a plug-in of
    # the observed gap, squared, would differ about 25-fold ((+11.0% - 5%) vs (+6.2% - 5%))
    assert a["rows_80"] == pytest.approx(b["rows_80"], rel=0.2)
    gaps = (lucky.details["uplift"] - 0.05, unlucky.details["uplift"] - 0.05)
    assert (gaps[0] / gaps[1]) ** 2 > 10
    assert 3000 < a["rows_80"] < 4200 and a["rows_50"] < a["rows_80"]  # the review's 80%: 3,647
    assert f"about {a['rows_50']:,}-{a['rows_80']:,} test rows (50%-80% power)" in lucky.message
    assert "if the true uplift is +10.0% (2x the bar)" in lucky.message


def test_the_near_zero_rule_is_decided_on_validation_and_is_continuous():
    """3/100 and 4/100 baseline right answers on test are judged the same way: the mode comes
    from the baseline's validation score, and the points bar equals the relative bar at the floor."""
    def judged(base_right: int, cand_right: int, val: float):
        base = [1.0] * base_right + [0.0] * (100 - base_right)
        cand = [1.0] * cand_right + [0.0] * (100 - cand_right)
        return gates.five_percent_rule("exact_match", cand, "zero_shot", base, baseline_pick_score=val,
                                       picked_on="val")

    three, four = judged(3, 7, val=0.04), judged(4, 8, val=0.04)
    assert three.details["relative"] is four.details["relative"] is False
    assert three.details["threshold"] == four.details["threshold"] == pytest.approx(0.05 * gates.RELATIVE_MIN_BASELINE)
    assert three.outcome == four.outcome
    assert abs(three.details["low"] - four.details["low"]) < 0.02  # the same +4 points, nearly the same interval
    # above the floor on validation the rule stays relative, with the bar it has at the floor
    relative = judged(12, 20, val=0.12)
    assert relative.details["relative"] is True and relative.details["threshold"] == 0.05
    assert 0.05 * 0.10 == pytest.approx(three.details["threshold"])  # continuous at the floor
