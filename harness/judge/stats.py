"""Statistics behind the verdicts: the paired bootstrap interval, its comparison with a bar,
exact McNemar, percentiles.

Pure numpy/scipy so the gates can be re-derived from stored per-example scores without torch.

The central question is "does the candidate beat the baseline by at least `threshold`?". Both
approaches are scored on the same test examples, so the comparison is paired: the bootstrap
resamples example indices and applies the same indices to both score arrays, which keeps the
correlation between the two, when there is any (docs/statistics.md).

Read as tests, at confidence 0.95: PASS (the interval's lower end at or above the bar) is a
one-sided test of "the true uplift is below the bar" at 2.5%, and FAIL (its upper end below
the bar) a one-sided test of the opposite at 2.5%. docs/statistics.md has the simulations.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps

from harness.judge.outcomes import FAIL, INCONCLUSIVE, PASS

# Default bootstrap resamples. The Monte Carlo error of a 2.5% quantile shrinks like
# 1/sqrt(resamples): 20,000 make it about a third of what 2,000 did, when 2,000 could flip a
# close verdict with the seed (docs/statistics.md).
RESAMPLES = 20_000
# Interval ends are compared with a bar with this slack: means of 0/1 rows fall on a 1/n grid,
# so an end can land exactly on the bar, and float rounding (0.12 - 0.07 = 0.04999999999999999)
# must not decide the verdict.
TIE_TOLERANCE = 1e-9
# Index-matrix elements per bootstrap chunk: 4M int64 indices = 32 MB, plus two float gathers.
_CHUNK_ELEMENTS = 4_000_000
_MC_BATCHES = 20  # the resamples are cut into this many batches to estimate the Monte Carlo error


def clears(low: float, bar: float) -> bool:
    """The one comparison rule of every gate: an interval's lower end clears a bar when it is at or above it."""
    return low >= bar - TIE_TOLERANCE


def verdict_of(low: float, high: float, bar: float) -> str:
    """PASS when the interval clears the bar, FAIL when it lies wholly below it, else INCONCLUSIVE."""
    if clears(low, bar):
        return PASS
    if high < bar - TIE_TOLERANCE:
        return FAIL
    return INCONCLUSIVE


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
    outcome: str             # verdict_of(low, high, threshold)
    n: int                   # number of paired examples
    mcnemar_p: float | None  # exact McNemar p-value (any difference) when both score arrays are binary 0/1
    discordant: tuple[int, int] | None  # (base right & cand wrong, base wrong & cand right)
    seed: int
    resamples: int
    low_mc_se: float         # Monte Carlo standard error of `low` (from batches of the resamples)
    high_mc_se: float
    unit_sd: float | None    # sd of one row's share of the uplift (delta method); None for a zero baseline
    exact_gain_p: float | None = None  # one-sided exact p of "no gain", checked before a 0/1 PASS
    # one-sided p of "the uplift is at most the bar": the share of resamples below it (the level at
    # which the interval's lower end would just clear it), and for 0/1 scores at least the exact
    # p of no gain; PASS at one-sided alpha means p_at_bar <= alpha. Holm ranks experiments by it.
    p_at_bar: float | None = None

    @property
    def near_the_bar(self) -> bool:
        """Whether Monte Carlo error alone could move an interval end across the bar."""
        return (abs(self.low - self.threshold) < 2 * self.low_mc_se
                or abs(self.high - self.threshold) < 2 * self.high_mc_se)


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


def exact_gain_p(broken: int, fixed: int) -> float:
    """One-sided exact p-value of "the candidate is no better" on paired 0/1 rows: under it the
    `fixed` rows among the discordant ones are at most Binomial(broken + fixed, 0.5)."""
    n = broken + fixed
    return 1.0 if n == 0 else float(_sps.binom.sf(fixed - 1, n, 0.5))


def _bootstrap_means(cand: np.ndarray, base: np.ndarray, resamples: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Means of `resamples` paired resamples: each row of indices is applied to both arrays.

    For 0/1 scores a resample is fully described by how many rows of each of the four kinds
    (both right, only base right, only candidate right, both wrong) it draws, so it is drawn as
    one multinomial of the four counts: the same distribution, without an index per row."""
    n = cand.size
    if _binary(cand) and _binary(base):
        kinds = [np.sum((cand == 1) & (base == 1)), np.sum((cand == 0) & (base == 1)),
                 np.sum((cand == 1) & (base == 0)), np.sum((cand == 0) & (base == 0))]
        counts = rng.multinomial(n, np.asarray(kinds, dtype=float) / n, size=resamples)
        return (counts[:, 0] + counts[:, 2]) / n, (counts[:, 0] + counts[:, 1]) / n
    rows = max(1, _CHUNK_ELEMENTS // n)
    cand_means = np.empty(resamples)
    base_means = np.empty(resamples)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        cand_means[start:stop] = cand[idx].mean(axis=1)
        base_means[start:stop] = base[idx].mean(axis=1)
    return cand_means, base_means


def _binary(arr: np.ndarray) -> bool:
    return bool(np.all((arr == 0) | (arr == 1)))


def unit_sd(cand: np.ndarray, base: np.ndarray, relative: bool) -> float | None:
    """The sd of one row's contribution to the uplift's estimate: the uplift's standard error is
    unit_sd / sqrt(n). Absolute: sd(cand - base). Relative (a ratio of means R = cand / base):
    the delta method's sd(cand - R * base) / |mean(base)|; None when the baseline mean is 0."""
    if not relative:
        return float(np.std(cand - base, ddof=1)) if cand.size > 1 else 0.0
    base_mean = float(base.mean())
    if base_mean == 0:
        return None
    ratio = float(cand.mean()) / base_mean
    return float(np.std(cand - ratio * base, ddof=1)) / abs(base_mean) if cand.size > 1 else 0.0


def _mc_se(boot: np.ndarray, qs) -> list[float]:
    """Monte Carlo standard errors of the full-sample quantiles, from the spread of the same
    quantiles over batches of the resamples (a batch of B/k resamples has k times the variance)."""
    batches = [np.sort(part) for part in np.array_split(boot, _MC_BATCHES) if part.size >= 50]
    if len(batches) < 2:
        return [math.nan for _ in qs]
    per_batch = np.array([_quantiles(b, qs) for b in batches], dtype=float)
    if not np.all(np.isfinite(per_batch)):  # an unbounded ratio: no finite error to report
        return [math.inf for _ in qs]
    spread = np.std(per_batch, axis=0, ddof=1)
    return [float(v / math.sqrt(len(batches))) for v in spread]


def paired_uplift(candidate_scores: Sequence[float], baseline_scores: Sequence[float], *,
                  threshold: float = 0.05, relative: bool = True, confidence: float = 0.95,
                  resamples: int = RESAMPLES, seed: int = 0) -> Uplift:
    """Uplift of the candidate over the baseline with a paired-bootstrap interval and a verdict.

    Both sequences are per-example scores on the same examples in the same order (0/1 for
    exact match, or a continuous score such as ROUGE-L F1).

    relative=True: uplift = (cand - base) / |base| on the means; threshold 0.05 means +5%.
    A zero baseline mean gives +inf (candidate above), -inf (below) or 0 (both zero), in the
    point estimate and in each resample alike.
    relative=False: uplift = cand - base in metric units; threshold 0.05 means +5 points.

    The interval is the percentile interval of `resamples` paired bootstrap resamples drawn with
    numpy.random.default_rng(seed): (2.5%, 97.5%) at confidence 0.95, with the Monte Carlo error
    of each end. The outcome is `verdict_of(low, high, threshold)`. For binary scores the exact
    McNemar test of any difference on the discordant pairs is reported as well.

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
    low_se, high_se = _mc_se(boot, [tail, 100.0 - tail])
    outcome = verdict_of(low, high, threshold)

    mcnemar_p = discordant = gain_p = None
    p_at_bar = float(np.mean(boot < threshold - TIE_TOLERANCE))
    if _binary(cand) and _binary(base):
        broken = int(np.sum((base == 1) & (cand == 0)))
        fixed = int(np.sum((base == 0) & (cand == 1)))
        discordant = (broken, fixed)
        mcnemar_p = mcnemar_exact(broken, fixed)
        if threshold >= 0:
            p_at_bar = max(p_at_bar, exact_gain_p(broken, fixed))
        if outcome == PASS and threshold >= 0:
            # With few discordant rows the percentile interval is too narrow (8 of them, 7 to 1,
            # gave a lower end of +1 point while the exact test of "no gain at all" has p 0.035).
            # A gain over a bar at or above 0 implies a gain: PASS also needs the exact one-sided
            # test of "the candidate is no better" to reject at the interval's own level.
            gain_p = exact_gain_p(broken, fixed)
            if gain_p > (1.0 - confidence) / 2.0:
                outcome = INCONCLUSIVE

    return Uplift(baseline=base_mean, candidate=cand_mean, uplift=uplift, low=float(low), high=float(high),
                  threshold=float(threshold), relative=bool(relative), outcome=outcome, n=n,
                  mcnemar_p=mcnemar_p, discordant=discordant, seed=int(seed), resamples=resamples,
                  low_mc_se=low_se, high_mc_se=high_se, unit_sd=unit_sd(cand, base, relative),
                  exact_gain_p=gain_p, p_at_bar=p_at_bar)


def paired_cells(p0: float, p1: float, phi: float) -> tuple[float, float, float, float]:
    """P(both right), P(only the baseline right), P(only the candidate right), P(both wrong) for
    0/1 scores with accuracies p0 (baseline) and p1 (candidate) and phi correlation `phi`,
    clipped to what the two marginals allow (the Frechet bounds)."""
    if not (0.0 <= p0 <= 1.0 and 0.0 <= p1 <= 1.0):
        raise ValueError(f"accuracies must lie in [0, 1]: baseline {p0}, candidate {p1}")
    both = p0 * p1 + phi * math.sqrt(p0 * (1 - p0) * p1 * (1 - p1))
    both = min(max(both, max(0.0, p0 + p1 - 1.0)), min(p0, p1))
    return both, p0 - both, p1 - both, 1.0 - p0 - p1 + both


def simulate(true_uplift: float, *, n: int, draws: int, base_rate: float = 0.6, phi: float = 0.0,
             threshold: float = 0.05, relative: bool = True, confidence: float = 0.95, resamples: int = 2000,
             seed: int = 0) -> dict[str, float]:
    """How often `paired_uplift` says PASS, FAIL and INCONCLUSIVE on synthetic experiments with a
    known truth: n paired 0/1 rows, the baseline right with probability base_rate, the candidate
    with base_rate * (1 + true_uplift) if relative (else base_rate + true_uplift), correlated
    with phi `phi`. At a true uplift equal to the threshold the PASS rate is the false-PASS rate
    (the test's size); above it, the power."""
    p1 = base_rate * (1.0 + true_uplift) if relative else base_rate + true_uplift
    if not 0.0 <= p1 <= 1.0:
        raise ValueError(f"base_rate {base_rate} with true_uplift {true_uplift} gives candidate accuracy {p1}, "
                         "outside [0, 1]")
    cells = np.clip(np.array(paired_cells(base_rate, p1, phi)), 0.0, None)
    rng = np.random.default_rng(seed)
    tables = rng.multinomial(n, cells / cells.sum(), size=draws)
    # the four kinds of row, as (candidate, baseline) scores
    cand_of, base_of = np.array([1.0, 0.0, 1.0, 0.0]), np.array([1.0, 1.0, 0.0, 0.0])
    counts = {PASS: 0, FAIL: 0, INCONCLUSIVE: 0}
    for i, table in enumerate(tables):
        kinds = np.repeat(np.arange(4), table)
        result = paired_uplift(cand_of[kinds], base_of[kinds], threshold=threshold, relative=relative,
                               confidence=confidence, resamples=resamples, seed=seed + 1 + i)
        counts[result.outcome] += 1
    return {k: v / draws for k, v in counts.items()}
