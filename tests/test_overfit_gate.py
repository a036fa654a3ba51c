"""The overfit gate's error rates, simulated through `overfit.gate` itself (docs/statistics.md,
"The overfit gate"; `scripts/simulate_gates.py --overfit` prints the same table).

Synthetic runs (`overfit.simulated_curves`): 120 val rows (the shipped sarcasm split) with a fixed
difficulty each, iid N(0, 0.3) per row at every evaluation, train loss falling throughout. The
bands: a rate p from n draws has a Monte Carlo SE of sqrt(p(1 - p) / n): 0.5 points at 2.5% and
2000 draws, 1.1 points at 93% and 500 draws."""
import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from harness.judge import overfit

EVALUATIONS = (3, 4, 6, 12)  # 3 x 1 (the default), 2 x 2 (the shipped sweep), 3 x 2, 3 x 4 evaluations


@pytest.mark.parametrize("evaluations", EVALUATIONS)
def test_a_flat_noisy_plateau_fails_at_most_five_percent_of_runs(evaluations):
    """Val loss drops at the first evaluation, then stays flat: the old rule FAILed 15%-85% of
    these runs. Bonferroni over the earlier evaluations holds it under alpha = 2.5%; 5% is the
    issue's bar, 5 SE above it, and a 50% interval (below) lands at 13%-16%, three times that."""
    r = overfit.simulate_overfit(evaluations, draws=2000, seed=1)
    assert r["FAIL"] <= 0.05, r
    assert r["warned"] == 0, r  # train loss falls throughout: a rise within noise says nothing


def test_a_too_narrow_interval_would_be_caught():
    r = overfit.simulate_overfit(6, draws=2000, confidence=0.5, seed=1)
    assert r["FAIL"] > 0.10, r  # 16% measured: the 5% bound above has teeth


@pytest.mark.parametrize("evaluations", EVALUATIONS)
def test_a_real_overfit_is_detected_in_at_least_80_percent_of_runs(evaluations):
    """After its minimum (a third of the way in) val loss rises linearly by 0.15 nats at the last
    evaluation, 15% of a 1-nat plateau, while train loss falls: per row that is 0.36 SD of the
    paired difference (sd 0.3 x sqrt 2), 3.9 SE over 120 rows. Measured 93%-98%."""
    r = overfit.simulate_overfit(evaluations, draws=500, rise=0.15, seed=2)
    assert r["FAIL"] >= 0.80, r


@pytest.mark.parametrize("evaluations", EVALUATIONS)
def test_a_run_early_stopping_rolled_back_is_never_failed(evaluations):
    """A strong overfit (0.3 nats) that early stopping rolled back: the kept checkpoint is the best
    evaluation, so nothing before it is lower and the rising tail after it is not read."""
    r = overfit.simulate_overfit(evaluations, draws=300, rise=0.3, early_stopping=True, seed=3)
    assert r["FAIL"] == 0, r
    assert overfit.simulate_overfit(evaluations, draws=100, rise=0.3, seed=3)["FAIL"] > 0.9  # read to the end: FAIL


@pytest.mark.parametrize("evaluations", EVALUATIONS)
def test_old_curves_without_row_losses_never_fail(evaluations):
    """Curves of adapters cached before per-row losses were recorded: the old heuristic is a
    warning only, on a real overfit as on a plateau (where it fires as often as it used to FAIL)."""
    rising = overfit.simulate_overfit(evaluations, draws=200, rise=0.3, row_losses=False, seed=4)
    plateau = overfit.simulate_overfit(evaluations, draws=500, row_losses=False, seed=4)
    assert rising["FAIL"] == 0 and plateau["FAIL"] == 0
    assert rising["warned"] > 0.9
    assert plateau["warned"] > 0.1  # 17%-84% from 3 to 12 evaluations: the review's 15%-85%


def test_the_verdict_can_be_rederived_from_its_details():
    curves = overfit.simulated_curves(np.random.default_rng(5), 6, rise=0.3)
    v = overfit.gate(curves, kept_step=60)
    d = v.details
    assert v.outcome == "FAIL" and d["kept_step"] == d["judged_step"] == 60 and d["bonferroni_k"] == 6
    assert d["alpha_each"] == pytest.approx(0.025 / 6)
    for c in d["comparisons"]:
        low = c["rise"] - student_t.ppf(1 - d["alpha_each"], c["rows"] - 1) * c["rise_sd"] / math.sqrt(c["rows"])
        assert c["low"] == pytest.approx(low) and c["rose"] == (low > 0)
    assert any(c["rose"] and c["train_fell"] for c in d["comparisons"])
    assert [p[0] for p in d["val_curve"]] == [0, 10, 20, 30, 40, 50, 60]


def test_a_fail_advises_on_validation_only():
    curves = overfit.simulated_curves(np.random.default_rng(6), 4, rise=0.4)
    v = overfit.gate(curves)
    assert v.outcome == "FAIL" and v.message.startswith("val loss rose beyond its noise while train loss fell: ")
    assert "keep the best validation checkpoint (early_stopping_patience in the spec) or train fewer epochs, " \
           "chosen on validation loss alone" in v.message
    assert "test" not in v.message


def test_a_rise_while_train_loss_did_not_fall_is_a_warning():
    curves = [c for c in overfit.simulated_curves(np.random.default_rng(7), 4, rise=0.4) if c["split"] == "val"]
    curves += [{"step": s, "split": "train", "loss": 0.5 + s / 100} for s in (5, 10, 20, 30, 40)]  # rising
    v = overfit.gate(curves)
    assert v.outcome == "PASS" and "warning: val loss rose beyond its noise but train loss did not fall" in v.message


def test_a_rise_within_noise_passes_and_later_evaluations_are_not_read():
    rows = [1.0, 1.4, 0.6, 1.2, 0.8] * 20  # 100 rows, sd 0.28
    val = [(0, [r + 2 for r in rows]), (10, rows), (20, [r + 0.01 for r in rows[::-1]]), (30, [r + 1 for r in rows])]
    curves = [{"step": s, "split": "val", "loss": sum(r) / len(r), "row_losses": r} for s, r in val]
    curves += [{"step": s, "split": "train", "loss": 1 / s} for s in (5, 10, 15, 20, 25, 30)]
    v = overfit.gate(curves, kept_step=20)
    assert v.outcome == "PASS" and "up to the kept step 20 (1 later evaluation(s) not read" in v.message
    assert "above no earlier evaluation's beyond noise (closest: mean row val loss 1.0100 at the kept step 20 vs " \
           "1.0000 at step 10: +0.0100 per row" in v.message
    assert v.details["evaluations_after_kept"] == 1 and v.details["bonferroni_k"] == 2
    # the same curve read to its end: step 30 is 1 nat above everything before it
    assert overfit.gate(curves).outcome == "FAIL"


def test_earlier_evaluations_without_row_losses_are_left_out_of_the_comparisons():
    """A run resumed from a checkpoint written before row losses were kept: only evaluations with
    them (over the same rows) are compared, and K counts only those."""
    rows = [1.0, 1.4, 0.6, 1.2, 0.8] * 20
    curves = [{"step": 0, "split": "val", "loss": 3.0},
              {"step": 10, "split": "val", "loss": 1.0, "row_losses": rows},
              {"step": 20, "split": "val", "loss": 1.0, "row_losses": rows[:50]},  # other rows: not paired
              {"step": 30, "split": "val", "loss": 1.0, "row_losses": rows}]
    v = overfit.gate(curves)
    assert v.outcome == "PASS" and v.details["bonferroni_k"] == 1
    assert [c["step"] for c in v.details["comparisons"]] == [10]


@pytest.mark.parametrize("train_loss, val_loss, train_rows, val_rows, low, high", [
    (1.0, 1.1, 480, 120, 0.0, 0.025),   # val 10% above train, half the bar: 0.05% measured (4000 draws)
    (1.0, 1.2, 480, 120, 0.0, 0.05),    # at the bar: 1.5% measured, under the nominal 2.5% (Gamma-skewed rows)
    (1.0, 1.2, 200, 50, 0.0, 0.05),     # at the bar with fewer rows (the HaluEval split): 1.7%
    (1.0, 1.5, 480, 120, 0.75, 0.92),   # 50% above: 84% measured
    (0.2, 0.4, 200, 50, 0.95, 1.0),     # train rows nearly memorised: 99% measured
])
def test_the_gap_warning_rate(train_loss, val_loss, train_rows, val_rows, low, high):
    """Per-row losses, Gamma-distributed around the true means, 1000 draws: the warning holds its
    size at the bar (val loss 1.2 x train loss) and fires when the gap is well beyond it."""
    rate = overfit.simulate_gap(train_loss, val_loss, draws=1000, train_rows=train_rows, val_rows=val_rows, seed=8)
    assert low <= rate <= high, rate


def test_the_gap_is_only_ever_a_warning():
    val = [{"step": 0, "split": "val", "loss": 3.0, "row_losses": [3.0, 3.1] * 50},
           {"step": 10, "split": "val", "loss": 2.0, "row_losses": [1.9, 2.1] * 50}]
    wide = overfit.gate(val + [{"step": 10, "split": "train", "loss": 0.5}], train_row_losses=[0.4, 0.6] * 100)
    assert wide.outcome == "PASS" and wide.details["gap"]["beyond_bar"]
    assert "; warning: val loss 2.0000 at the kept step vs train loss 0.5000 as trained on (100 and 200 rows)" \
        in wide.message
    too_few = overfit.gate(val, train_row_losses=[0.5])
    assert too_few.outcome == "PASS" and too_few.details["gap"] is None
    assert overfit.gate([], train_row_losses=[0.4, 0.6] * 100).outcome == "SKIP"
