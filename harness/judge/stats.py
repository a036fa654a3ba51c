"""Statistics behind the verdicts: paired bootstrap uplift, exact McNemar, percentiles.

Pure numpy/scipy so the gates can be re-derived from stored per-example scores without torch.

The central question is "does the candidate beat the baseline by at least `threshold`?". Both
approaches are scored on the same test examples, so the comparison is paired: the bootstrap
resamples example indices and applies the same indices to both score arrays, which keeps the
(usually strong) correlation between the two and gives a much tighter interval than treating
the two means as independent.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"

# Upper bound on n_to_settle: when the point estimate sits right on the threshold no finite
# test set settles it, and a number this size reads as "effectively never".
MAX_N_TO_SETTLE = 10_000_000
# Index-matrix elements per bootstrap chunk: 4M int64 indices = 32 MB, plus two float gathers.
_CHUNK_ELEMENTS = 4_000_000
_TINY = 1e-12


@dataclass(frozen=True)
class Uplift:
    """The result of a paired comparison of candidate against baseline."""

    baseline: float          # mean of baseline per-example scores
    candidate: float         # mean of candidate per-example scores
    uplift: float            # relative (cand-base)/|base|, or absolute cand-base in metric units
    low: float               # lower end of the paired-bootstrap percentile interval of uplift
    high: float              # upper end
    threshold: float         # the uplift the candidate must clear, e.g. 0.05
    relative: bool
    outcome: str             # PASS if low >= threshold, FAIL if high < threshold, else INCONCLUSIVE
    n: int                   # number of paired examples
    n_to_settle: int | None  # INCONCLUSIVE only: estimated test-set size that would settle it
    mcnemar_p: float | None  # exact McNemar p-value when both score arrays are binary 0/1
    discordant: tuple[int, int] | None  # (base right & cand wrong, base wrong & cand right)
    seed: int
    resamples: int


def _as_scores(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of per-example scores, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: need at least one per-example score")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite scores")
    return arr


def _relative(cand, base):
    """(cand - base) / |base|, elementwise, with the zero-baseline case defined.

    A baseline mean of exactly 0 has no relative scale: the uplift is +inf when the candidate is
    above it, -inf when below, and 0 when both are 0 (no change). |base| keeps the sign meaning
    "better" even for metrics that can go negative.
    """
    cand = np.asarray(cand, dtype=float)
    base = np.asarray(base, dtype=float)
    diff = cand - base
    denom = np.abs(base)
    zero = denom == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(zero, np.sign(diff) * np.inf, diff / np.where(zero, 1.0, denom))
    # sign(0) * inf is nan: both means 0 is "no change".
    out = np.where(zero & (diff == 0), 0.0, out)
    return out


def _quantiles(sorted_values: np.ndarray, qs) -> list[float]:
    """Linear-interpolation quantiles (numpy's default method) of already-sorted values.

    Written out so that two equal infinite neighbours give inf, not inf - inf = nan.
    """
    n = sorted_values.size
    out = []
    for q in qs:
        pos = (n - 1) * (q / 100.0)
        lo = int(math.floor(pos))
        hi = min(lo + 1, n - 1)
        a, b = float(sorted_values[lo]), float(sorted_values[hi])
        frac = pos - lo
        if a == b or frac == 0:
            out.append(a)
        else:
            out.append(a + (b - a) * frac)
    return out


def percentile(values, q) -> float:
    """The q-th percentile (0..100) of `values`, linearly interpolated like `numpy.percentile`.

    Used for latency p50/p95. Raises ValueError on empty input or q outside [0, 100].
    """
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError("percentile of an empty sequence is undefined")
    q = float(q)
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    return _quantiles(np.sort(arr), [q])[0]


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for discordant counts b and c.

    Under the null both kinds of disagreement are equally likely, so min(b, c) is
    Binomial(b + c, 0.5); the two-sided p is twice the smaller tail, capped at 1.
    No discordant pairs (b = c = 0) gives p = 1.
    """
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2.0 * _sps.binom.cdf(min(b, c), b + c, 0.5)))


def _bootstrap_means(cand: np.ndarray, base: np.ndarray, resamples: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Means of `resamples` paired resamples: each row of indices is applied to both arrays."""
    n = cand.size
    rows = max(1, _CHUNK_ELEMENTS // n)
    cand_means = np.empty(resamples)
    base_means = np.empty(resamples)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        cand_means[start:stop] = cand[idx].mean(axis=1)
        base_means[start:stop] = base[idx].mean(axis=1)
    return cand_means, base_means


def _n_to_settle(n: int, uplift: float, low: float, high: float, threshold: float) -> int:
    """Test-set size at which the interval should stop straddling the threshold.

    The half-width shrinks like 1/sqrt(n), so it falls to the gap |uplift - threshold| at
    n * (half_width / gap)**2. At least n + 1 (this n did not settle it), at most MAX_N_TO_SETTLE.
    """
    half_width = (high - low) / 2.0
    gap = max(abs(uplift - threshold), _TINY)
    if not math.isfinite(half_width) or not math.isfinite(gap):
        return MAX_N_TO_SETTLE
    ratio = half_width / gap
    if ratio * ratio * n >= MAX_N_TO_SETTLE:  # checked before ceil to avoid float overflow
        return MAX_N_TO_SETTLE
    return int(min(MAX_N_TO_SETTLE, max(n + 1, math.ceil(n * ratio * ratio))))


def paired_uplift(candidate_scores: Sequence[float], baseline_scores: Sequence[float], *,
                  threshold: float = 0.05, relative: bool = True, confidence: float = 0.95,
                  resamples: int = 2000, seed: int = 0) -> Uplift:
    """Uplift of the candidate over the baseline with a paired-bootstrap interval and a verdict.

    Both sequences are per-example scores on the same examples in the same order (0/1 for
    exact match, or a continuous score such as ROUGE-L F1).

    relative=True: uplift = (cand - base) / |base| on the means; threshold 0.05 means +5%.
    A zero baseline mean gives +inf (candidate above), -inf (below) or 0 (both zero), in the
    point estimate and in each resample alike.
    relative=False: uplift = cand - base in metric units; threshold 0.05 means +5 points.

    The interval is the percentile interval of `resamples` paired bootstrap resamples drawn with
    numpy.random.default_rng(seed): (2.5%, 97.5%) at confidence 0.95. The outcome is PASS when
    low >= threshold, FAIL when high < threshold, INCONCLUSIVE otherwise. For binary scores the
    exact McNemar test on the discordant pairs is reported as well.

    Raises ValueError on empty input, a length mismatch, non-finite scores, or bad settings.
    """
    cand = _as_scores(candidate_scores, "candidate_scores")
    base = _as_scores(baseline_scores, "baseline_scores")
    if cand.size != base.size:
        raise ValueError(f"paired scores must cover the same examples: candidate has {cand.size} "
                         f"scores, baseline has {base.size}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    resamples = int(resamples)
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    n = int(cand.size)

    cand_mean, base_mean = float(cand.mean()), float(base.mean())
    if relative:
        uplift = float(_relative(cand_mean, base_mean))
    else:
        uplift = cand_mean - base_mean

    rng = np.random.default_rng(seed)
    cand_means, base_means = _bootstrap_means(cand, base, resamples, rng)
    boot = _relative(cand_means, base_means) if relative else cand_means - base_means
    tail = (1.0 - confidence) / 2.0 * 100.0  # 0.95 -> 2.5, so the interval is (2.5%, 97.5%)
    low, high = _quantiles(np.sort(boot), [tail, 100.0 - tail])

    if low >= threshold:
        outcome = PASS
    elif high < threshold:
        outcome = FAIL
    else:
        outcome = INCONCLUSIVE
    n_to_settle = _n_to_settle(n, uplift, low, high, threshold) if outcome == INCONCLUSIVE else None

    mcnemar_p = discordant = None
    if np.all((cand == 0) | (cand == 1)) and np.all((base == 0) | (base == 1)):
        broken = int(np.sum((base == 1) & (cand == 0)))
        fixed = int(np.sum((base == 0) & (cand == 1)))
        discordant = (broken, fixed)
        mcnemar_p = mcnemar_exact(broken, fixed)

    return Uplift(baseline=base_mean, candidate=cand_mean, uplift=uplift, low=float(low), high=float(high),
                  threshold=float(threshold), relative=bool(relative), outcome=outcome, n=n,
                  n_to_settle=n_to_settle, mcnemar_p=mcnemar_p, discordant=discordant,
                  seed=int(seed), resamples=resamples)


def simulate_pass_rate(true_uplift: float, *, n: int = 1000, draws: int = 200, base_rate: float = 0.6,
                       threshold: float = 0.05, relative: bool = True, seed: int = 0, resamples: int = 1000,
                       correlation: float = 0.5) -> float:
    """Fraction of synthetic experiments with a known true uplift that `paired_uplift` calls PASS.

    Each draw makes n paired binary outcomes: the baseline is right with probability
    p0 = base_rate, the candidate with p1 = base_rate * (1 + true_uplift) (a relative uplift).
    The pair is positively correlated, as two models scored on the same examples are (easy rows
    are easy for both): the candidate is sampled conditional on the baseline so that both
    marginals are exact and the phi correlation is `correlation`, clipped to what the marginals
    allow. The rate at a true uplift below the threshold is the false-PASS rate; above it, the power.

    Raises ValueError when p1 falls outside [0, 1].
    """
    p0 = float(base_rate)
    p1 = p0 * (1.0 + float(true_uplift))
    if not (0.0 <= p0 <= 1.0 and 0.0 <= p1 <= 1.0):
        raise ValueError(f"base_rate {p0} with true_uplift {true_uplift} gives candidate accuracy {p1}, "
                         "outside [0, 1]")
    # P(both right) from the phi coefficient, clipped to the Frechet bounds of the two marginals.
    both = p0 * p1 + correlation * math.sqrt(p0 * (1 - p0) * p1 * (1 - p1))
    both = min(max(both, max(0.0, p0 + p1 - 1.0)), min(p0, p1))
    p_cand_if_right = both / p0 if p0 > 0 else 0.0
    p_cand_if_wrong = (p1 - both) / (1 - p0) if p0 < 1 else 0.0

    rng = np.random.default_rng(seed)
    base = rng.random((draws, n)) < p0
    u = rng.random((draws, n))
    cand = np.where(base, u < p_cand_if_right, u < p_cand_if_wrong)
    base, cand = base.astype(float), cand.astype(float)
    passes = 0
    for i in range(draws):
        # Each draw gets its own bootstrap seed so the draws are independent experiments.
        result = paired_uplift(cand[i], base[i], threshold=threshold, relative=relative,
                               resamples=resamples, seed=seed + i)
        passes += result.outcome == PASS
    return passes / draws
