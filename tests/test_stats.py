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
    assert u.n_to_settle is None
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


def test_inconclusive_gets_n_to_settle_above_n():
    # 60% vs 63%: +5% relative, right on a 5% threshold, on only 200 rows -> cannot tell.
    rng = np.random.default_rng(0)
    n = 200
    base = np.zeros(n)
    base[:120] = 1  # 120 / 200 = 0.60
    cand = base.copy()
    cand[120:126] = 1  # 126 / 200 = 0.63, i.e. (0.63 - 0.60) / 0.60 = +5%
    order = rng.permutation(n)
    u = paired_uplift(cand[order], base[order], threshold=0.04)
    assert u.outcome == "INCONCLUSIVE"
    assert u.low < 0.04 <= u.high
    assert n < u.n_to_settle <= stats.MAX_N_TO_SETTLE
    # Scaling check: n * (half_width / gap)**2.
    half = (u.high - u.low) / 2
    assert u.n_to_settle == max(n + 1, math.ceil(n * (half / abs(u.uplift - 0.04)) ** 2))
    # Point estimate exactly on the threshold: capped, not infinite.
    on = paired_uplift(cand[order], base[order], threshold=u.uplift)
    assert on.outcome == "INCONCLUSIVE" and on.n_to_settle == stats.MAX_N_TO_SETTLE


def test_simulation_small_true_uplift_rarely_passes():
    rate = stats.simulate_pass_rate(0.02, n=1000, draws=200)
    print(f"PASS rate at true uplift 2%: {rate:.3f}")
    assert rate <= 0.05


def test_simulation_large_true_uplift_usually_passes():
    rate = stats.simulate_pass_rate(0.15, n=1000, draws=200)
    print(f"PASS rate at true uplift 15%: {rate:.3f}")
    assert rate >= 0.80


def test_simulation_rejects_impossible_accuracy():
    with pytest.raises(ValueError, match="outside"):
        stats.simulate_pass_rate(0.8, base_rate=0.6)  # 0.6 * 1.8 = 1.08 > 1
