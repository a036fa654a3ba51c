"""How many test rows a gate needs, and what a given split can show: power, never a plug-in.

A gate PASSes when its interval's lower end clears the bar. With the uplift's standard error
SE = unit_sd / sqrt(n) (stats.unit_sd) and z the interval's normal quantile (1.96 at 95%), a
true uplift u passes with probability about

    power(u, n) = Phi((u - bar) / SE - z)

so the rows for power p at a true u are n = ((z + z_p) * unit_sd / (u - bar))^2, and the
smallest true uplift n rows show with power p is bar + (z + z_p) * unit_sd / sqrt(n).

What it is computed at matters more than the formula. The observed uplift is a noisy draw (at
the boundary it lands on either side of the bar half the time), so plugging it in gives a
number that swings by an order of magnitude from run to run. These functions take the true
uplift as an assumption that is stated with the result: by default the planning alternative,
twice the bar (a team that declared "beat by 5%" would call +10% a clear win), and for the
regression gate's non-inferiority margin, no loss at all. Only the per-row spread (unit_sd)
comes from data, and it is a far steadier quantity than the gap.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

from harness.judge.units import uplift_text

_NORMAL = NormalDist()  # the standard normal, from the standard library: no numpy or scipy to import
POWERS = (0.5, 0.8)
WANTED = 0.8  # the power an experiment should have at the planning alternative before it trains
PLANNING_FACTOR = 2.0  # the planning alternative: a true uplift of twice the bar
MAX_ROWS = 10_000_000  # beyond this, "never" reads better than a number


def _z(confidence: float) -> float:
    return float(_NORMAL.inv_cdf(0.5 + confidence / 2))


def power(true_uplift: float, n: int, unit_sd: float, bar: float, confidence: float = 0.95) -> float:
    """The chance that n rows PASS a gate whose bar is `bar` when the true uplift is `true_uplift`."""
    if unit_sd <= 0:
        return 1.0 if true_uplift >= bar else 0.0
    return float(_NORMAL.cdf((true_uplift - bar) * math.sqrt(n) / unit_sd - _z(confidence)))


def rows_for(true_uplift: float, unit_sd: float, bar: float, power_wanted: float,
             confidence: float = 0.95) -> int | None:
    """Rows for `power_wanted` at `true_uplift`; None when no number of rows gets there
    (the true uplift is not above the bar)."""
    gap = true_uplift - bar
    if gap <= 0:
        return None
    if unit_sd <= 0:
        return 1
    rows = ((_z(confidence) + float(_NORMAL.inv_cdf(power_wanted))) * unit_sd / gap) ** 2
    return int(min(MAX_ROWS, math.ceil(rows)))


def detectable(n: int, unit_sd: float, bar: float, power_wanted: float = 0.8, confidence: float = 0.95) -> float:
    """The smallest true uplift that n rows PASS with probability `power_wanted`."""
    return bar + (_z(confidence) + float(_NORMAL.inv_cdf(power_wanted))) * unit_sd / math.sqrt(max(n, 1))


@dataclass(frozen=True)
class PowerStatement:
    """What a split of n rows can show, at a stated assumption; stored in a gate's details."""

    n: int                          # the rows it is stated for
    bar: float                      # the gate's bar (threshold, or -delta)
    relative: bool
    unit_sd: float                  # per-row spread: uplift SE = unit_sd / sqrt(n)
    spread_from: str                # where unit_sd came from ("this test split", "validation, phi 0", ...)
    alternative: float              # the true uplift assumed for rows_needed
    alternative_is: str             # what that assumption is ("twice the bar", "no loss")
    power_now: float                # power at `alternative` with n rows
    detectable_80: float            # smallest true uplift n rows PASS with 80% power
    rows_50: int | None             # rows for 50% / 80% power at `alternative` (None: never)
    rows_80: int | None
    confidence: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self, unit: str = "test rows", fmt=None, quantity: str = "uplift") -> str:
        """One clause for a gate's message: never "n + 1", always with its assumption."""
        fmt = fmt or (lambda x: uplift_text(x, self.relative))
        if self.rows_80 is None:
            needed = "no number of rows would (the assumed uplift does not clear the bar)"
        elif self.rows_80 >= MAX_ROWS:
            needed = "more rows than any test split holds"
        else:
            needed = f"about {self.rows_50:,}-{self.rows_80:,} {unit} (50%-80% power)"
        return (f"{self.n:,} {unit} have 80% power only for a true {quantity} of {fmt(self.detectable_80)} or "
                f"more; to clear the bar if the true {quantity} is {fmt(self.alternative)} ({self.alternative_is}) takes "
                f"{needed}, with the per-row spread of {self.spread_from}")


def statement(n: int, unit_sd: float, bar: float, *, relative: bool, spread_from: str,
              alternative: float | None = None, alternative_is: str | None = None,
              confidence: float = 0.95) -> PowerStatement:
    """The power statement of a gate whose bar is `bar` (see the module doc for the default
    alternative, twice the bar)."""
    if alternative is None:
        alternative = PLANNING_FACTOR * bar if bar > 0 else bar + 0.05
        alternative_is = f"{PLANNING_FACTOR:g}x the bar" if bar > 0 else "5 points above the bar"
    rows = [rows_for(alternative, unit_sd, bar, p, confidence) for p in POWERS]
    return PowerStatement(n=n, bar=bar, relative=relative, unit_sd=unit_sd, spread_from=spread_from,
                          alternative=alternative, alternative_is=alternative_is or "assumed",
                          power_now=power(alternative, n, unit_sd, bar, confidence),
                          detectable_80=detectable(n, unit_sd, bar, 0.8, confidence),
                          rows_50=rows[0], rows_80=rows[1], confidence=confidence)


def planned_unit_sd(baseline_rate: float, *, relative: bool, alternative: float, binary: bool,
                    baseline_sd: float | None = None) -> float | None:
    """Per-row spread expected before any test row is seen: from the chosen baseline's validation
    score (and, for a continuous metric, the sd of its validation scores), assuming the candidate
    is `alternative` better and the two are uncorrelated (phi 0, what the shipped sarcasm run
    showed: pairing bought nothing there). None when the baseline scores 0 in relative mode."""
    p0 = baseline_rate
    p1 = p0 * (1 + alternative) if relative else p0 + alternative
    if binary:
        p1 = min(max(p1, 0.0), 1.0)
        var_base, var_cand = p0 * (1 - p0), p1 * (1 - p1)
    else:
        var_base = var_cand = (baseline_sd or 0.0) ** 2
    if not relative:
        return math.sqrt(var_base + var_cand)
    if p0 == 0:
        return None
    ratio = p1 / p0
    return math.sqrt(var_cand + ratio ** 2 * var_base) / abs(p0)
