"""The regression gate's error rates, by simulation through the harness's own instruments and
`regression.combine` (harness/judge/regression.py: simulate). Each bound is one a 50% interval
would break: at the margin it PASSes 25% of the time, not 2.5%.

Monte Carlo error at 600 draws: a true 2.5% reads 2.5 +/- 1.3 points (2 SE), a true 80% reads
80 +/- 3.3; the bounds below leave that room."""
import math

import pytest

from harness.judge import regression

DRAWS = 600
MARGIN = -math.log(1.05)  # the probe's margin as a per-token log-likelihood change


@pytest.mark.parametrize("paired_sd", [0.05, 0.2])
def test_probe_at_its_margin_passes_at_most_the_nominal_rate(paired_sd):
    rates = regression.simulate(probe_shift=MARGIN, suite_shift=None, draws=DRAWS, paired_sd=paired_sd)
    assert rates["PASS"] <= 0.045, rates


def test_probe_has_power_at_no_loss_and_fails_a_real_loss():
    no_loss = regression.simulate(probe_shift=0.0, suite_shift=None, draws=DRAWS, paired_sd=0.2)
    assert no_loss["PASS"] >= 0.85 and no_loss["FAIL"] <= 0.02  # no loss at all is almost never a FAIL
    # a loss of twice the margin (perplexity x1.10)
    assert regression.simulate(probe_shift=2 * MARGIN, suite_shift=None, draws=DRAWS, paired_sd=0.2)["FAIL"] >= 0.8


def test_suite_at_its_margin_passes_at_most_the_nominal_rate():
    rates = regression.simulate(probe_shift=None, suite_shift=-0.02, draws=DRAWS, discordance=0.05)
    assert rates["PASS"] <= 0.045, rates


def test_suite_has_power_at_no_loss_and_fails_a_real_loss():
    # 1,140 questions at 5% discordance: about 85% power at no loss (the planning figure)
    assert regression.simulate(probe_shift=None, suite_shift=0.0, draws=DRAWS, discordance=0.05)["PASS"] >= 0.78
    assert regression.simulate(probe_shift=None, suite_shift=-0.05, draws=DRAWS, discordance=0.08)["FAIL"] >= 0.8


def test_both_instruments_a_loss_in_either_blocks_a_pass():
    # the probe sees nothing, the suite sits at its margin: PASS stays at the suite's own size
    assert regression.simulate(probe_shift=0.0, suite_shift=-0.02, draws=DRAWS, paired_sd=0.05)["PASS"] <= 0.045
    # nothing lost anywhere: a false FAIL is at most the two instruments' 2.5% each
    assert regression.simulate(probe_shift=0.0, suite_shift=0.0, draws=DRAWS, paired_sd=0.05)["FAIL"] <= 0.05
