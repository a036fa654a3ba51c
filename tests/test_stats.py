"""Tests for harness.judge.stats: hand-computed cases, determinism, and the simulation proof."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from harness.judge import stats
from harness.judge.stats import paired_uplift


def test_identical_arrays_give_zero_uplift_and_fail():
    scores = [1, 0, 1, 1, 0, 1, 0, 1, 1, 0]
    u = paired_uplift(scores, scores, threshold=0.05)
    assert u.uplift == 0.0
    assert (u.low, u.high) == (0.0, 0.0)
    assert u.outcome == "FAIL"  # high 0 < threshold 0.05
    assert u.discordant == (0, 0)
    assert u.mcnemar_p == 1.0


def test_all_right_vs_half_right_passes():
    cand = [1.0] * 100
    base = [1.0, 0.0] * 50
    u = paired_uplift(cand, base)
    assert u.candidate == 1.0 and u.baseline == 0.5
    assert u.uplift == pytest.approx(1.0)  # (1.0 - 0.5) / 0.5
    assert u.low >= 0.05 and u.low <= 1.0 <= u.high
    assert u.outcome == "PASS"
    assert u.discordant == (0, 50)
    assert u.mcnemar_p == pytest.approx(2 * 0.5 ** 50)  # 2 * P(Binomial(50, .5) <= 0)


def test_absolute_mode_is_in_metric_units():
    # ROUGE-like continuous scores: candidate is exactly 0.1 higher on every example.
    base = np.linspace(0.2, 0.6, 50)
    cand = base + 0.1
    u = paired_uplift(cand, base, threshold=0.05, relative=False)
    assert u.relative is False
    assert u.uplift == pytest.approx(0.1)
    # Every resample has the same constant difference, so the interval collapses on it.
    assert u.low == pytest.approx(0.1) and u.high == pytest.approx(0.1)
    assert u.outcome == "PASS"
    assert u.mcnemar_p is None and u.discordant is None
    # Same data in relative mode: 0.1 / 0.4 = 25%.
    assert paired_uplift(cand, base).uplift == pytest.approx(0.1 / 0.4)


def test_zero_baseline_relative_is_infinite_not_an_error():
    u = paired_uplift([1, 0, 1, 0], [0, 0, 0, 0])
    assert u.uplift == math.inf
    assert u.outcome in ("PASS", "INCONCLUSIVE")  # some resamples draw only the candidate's zeros
    both_zero = paired_uplift([0, 0, 0], [0, 0, 0])
    assert both_zero.uplift == 0.0 and both_zero.outcome == "FAIL"


@pytest.mark.parametrize("b,c", [(0, 0), (0, 5), (3, 3), (7, 2), (1, 20), (40, 55), (120, 80)])
def test_mcnemar_exact_matches_scipy_binomtest(b, c):
    expected = 1.0 if b + c == 0 else binomtest(min(b, c), b + c, 0.5).pvalue
    assert stats.mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)
    assert stats.mcnemar_exact(b, c) == stats.mcnemar_exact(c, b)


def test_percentile_matches_numpy():
    rng = np.random.default_rng(3)
    values = rng.exponential(100.0, size=37)
    for q in (0, 5, 25, 50, 90, 95, 99.5, 100):
        assert stats.percentile(values, q) == pytest.approx(np.percentile(values, q))
    assert stats.percentile([7], 95) == 7.0
    assert stats.percentile([1, 2, 3, 4], 50) == 2.5
    with pytest.raises(ValueError):
        stats.percentile([], 50)


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="same examples"):
        paired_uplift([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="empty"):
        paired_uplift([], [])
    with pytest.raises(ValueError, match="confidence"):
        paired_uplift([1, 0], [0, 1], confidence=1.5)


def test_same_seed_same_result_and_seed_matters():
    rng = np.random.default_rng(11)
    base = (rng.random(300) < 0.6).astype(float)
    cand = np.where(rng.random(300) < 0.8, base, 1 - base)
    a = paired_uplift(cand, base, seed=7)
    assert a == paired_uplift(list(cand), list(base), seed=7)
    other = paired_uplift(cand, base, seed=8)
    assert (other.low, other.high) != (a.low, a.high)
    assert other.uplift == a.uplift  # the point estimate does not depend on the seed


def test_big_n_is_fast_and_chunked():
    import time

    rng = np.random.default_rng(5)
    base = rng.random(1000)
    cand = base + rng.normal(0.02, 0.1, 1000)
    start = time.perf_counter()
    paired_uplift(cand, base, resamples=2000)
    assert time.perf_counter() - start < 0.5  # ~0.02 s typically; generous for a shared CI box
    # More than one chunk (4M elements / 20k = 200 rows per chunk) still gives a sane interval.
    big = paired_uplift(np.ones(20_000), np.full(20_000, 0.5), resamples=300)
    assert big.low == big.high == pytest.approx(1.0)


def test_binary_scores_are_resampled_as_counts_with_the_same_interval_as_indices():
    """0/1 pairs are drawn as multinomial counts of the four kinds of row: the same bootstrap
    distribution as resampling indices, so the ends agree within Monte Carlo error."""
    rng = np.random.default_rng(3)
    base = (rng.random(400) < 0.6).astype(float)
    cand = np.where(rng.random(400) < 0.75, base, 1 - base)
    fast = paired_uplift(cand, base, resamples=20_000, seed=1)
    noisy = paired_uplift(cand + 1e-9, base, resamples=20_000, seed=1)  # not 0/1: the index bootstrap
    assert noisy.low == pytest.approx(fast.low, abs=4 * fast.low_mc_se + 1e-6)
    assert noisy.high == pytest.approx(fast.high, abs=4 * fast.high_mc_se + 1e-6)


def test_monte_carlo_error_is_reported_and_shrinks_with_resamples():
    rng = np.random.default_rng(4)
    base = (rng.random(800) < 0.645).astype(float)
    cand = np.where(rng.random(800) < 0.6, base, 1 - base)
    few, many = paired_uplift(cand, base, resamples=2_000), paired_uplift(cand, base, resamples=20_000)
    assert 0 < many.low_mc_se < few.low_mc_se
    assert many.low_mc_se == pytest.approx(few.low_mc_se / math.sqrt(10), rel=0.6)  # 1/sqrt(resamples)
    width = many.high - many.low
    assert many.low_mc_se < 0.02 * width  # small beside the interval at the default resamples


def test_an_end_on_the_bar_clears_it_whatever_the_float_rounding():
    assert 0.12 - 0.07 != 0.05 and stats.clears(0.12 - 0.07, 0.05) and stats.clears(0.17 - 0.12, 0.05)
    assert stats.verdict_of(0.12 - 0.07, 0.2, 0.05) == "PASS"
    assert stats.verdict_of(-0.1, 0.12 - 0.07, 0.05) == "INCONCLUSIVE"  # an upper end on the bar is not a FAIL
    assert stats.verdict_of(-0.1, 0.049, 0.05) == "FAIL"


def test_simulation_rejects_impossible_accuracy():
    with pytest.raises(ValueError, match="outside"):
        stats.simulate(0.8, n=100, draws=1, base_rate=0.6)  # 0.6 * 1.8 = 1.08 > 1
