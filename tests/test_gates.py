import pytest

from harness.data import Check
from harness.judge import decision, gates, overfit


def test_five_percent_rule_passes_a_clear_win_and_says_why():
    cand = [1] * 300 + [0] * 100          # 0.75
    base = [1] * 160 + [0] * 240          # 0.40, paired on the same rows
    v = gates.five_percent_rule("accuracy", cand, "few_shot_k8", base)
    assert v.outcome == "PASS"
    assert v.message.startswith("accuracy 0.750 vs few_shot_k8 0.400, uplift +87.5% (95% CI ")
    assert ">= 5%" in v.message and "140 fixed, 0 broken" in v.message
    assert "the lower end clears the bar (a one-sided test at 2.5%)" in v.message
    assert "McNemar p=" in v.message and "for any difference" in v.message


def test_five_percent_rule_fails_when_the_prompt_is_as_good():
    same = [1, 0, 1, 1, 0] * 80
    v = gates.five_percent_rule("accuracy", same, "zero_shot", same)
    assert v.outcome == "FAIL" and "uplift +0.0%" in v.message


def test_five_percent_rule_is_inconclusive_on_a_small_noisy_win():
    base = [1, 0] * 30
    cand = base[:]
    for i in range(1, 9, 2):
        cand[i] = 1   # 4 more right of 60: +13% relative, but on 60 rows
    v = gates.five_percent_rule("accuracy", cand, "zero_shot", base)
    assert v.outcome == "INCONCLUSIVE" and "test rows (50%-80% power)" in v.message
    assert "60 test rows have 80% power only for a true uplift of" in v.message
    assert not decision.gate_passes(v)
    allowed = gates.five_percent_rule("accuracy", cand, "zero_shot", base, allow_inconclusive=True)
    assert allowed.details["allow_inconclusive"] and "allowed by the spec" in allowed.message


def test_absolute_threshold_in_points():
    cand = [1] * 90 + [0] * 10
    base = [1] * 50 + [0] * 50
    v = gates.five_percent_rule("accuracy", cand, "zero_shot", base, relative=False, threshold=0.2)
    assert v.outcome == "PASS" and "+40.0 pts" in v.message and "20 pts" in v.message


def test_a_baseline_near_zero_on_validation_is_judged_in_points_with_the_floor_bar():
    # 1 right answer in 100 for the baseline on test, 0 on validation: the mode was fixed on
    # validation (points), with the bar the relative rule has at the 10% floor: 0.5 points.
    base = [1.0] + [0.0] * 99
    cand = [1.0] * 7 + [0.0] * 93
    v = gates.five_percent_rule("exact_match", cand, "retrieval_k3", base, baseline_pick_score=0.0, picked_on="val")
    assert "inf" not in v.message and "uplift +6.0 pts" in v.message and ">= 0.5 pts" in v.message
    assert "retrieval_k3 scored 0.000 on val, below the 10% where a relative uplift is measurable" in v.message
    assert v.details["relative"] is False and v.details["declared_relative"] is True
    assert v.outcome == gates.PASS  # +6 points (CI about +2..+11) over a bar of 0.5 points
    # without the validation score the declared relative rule stands; an unbounded ratio proves nothing
    unknown = gates.five_percent_rule("exact_match", cand, "retrieval_k3", base)
    assert unknown.outcome == gates.INCONCLUSIVE and unknown.details["relative_unbounded"] is True
    assert "set relative=False to judge in points" in unknown.message
    # a healthy baseline keeps the relative reading
    healthy = gates.five_percent_rule("accuracy", [1.0] * 80 + [0.0] * 20, "zero_shot", [1.0] * 50 + [0.0] * 50,
                                      baseline_pick_score=0.5)
    assert healthy.details["relative"] is True and not healthy.details["relative_unbounded"]


def test_data_quality_fails_only_on_errors():
    ok = gates.data_quality([Check("duplicates", "warning", "3 duplicates", [4])])
    assert ok.outcome == "PASS" and "1 warning(s)" in ok.message
    bad = gates.data_quality([Check("invalid_json", "error", "2 row(s) unusable; first at line 7", [7, 9])])
    assert bad.outcome == "FAIL" and "first at line 7" in bad.message


def _curve(split, points):
    return [{"step": s, "split": split, "loss": loss} for s, loss in points]


def test_overfit_without_row_losses_only_warns_of_val_loss_rising_while_train_falls():
    """A curve with no per-row val losses (an adapter cached before they were kept) cannot be
    judged with noise: the old three-rises heuristic is a warning on a PASS, never a FAIL."""
    curves = (_curve("val", [(0, 2.0), (10, 1.0), (20, 1.1), (30, 1.3)]) +
              _curve("train", [(5, 1.5), (10, 0.9), (20, 0.5), (30, 0.2)]))
    v = overfit.gate(curves)
    assert v.outcome == "PASS" and "; warning: val loss rose 2 evaluations in a row" in v.message
    assert "step 10: 1.0000, step 20: 1.1000, step 30: 1.3000" in v.message
    assert "no noise model" in v.message and v.details["warnings"] and v.details["noise_model"].startswith("none")


def test_overfit_gap_is_a_warning_judged_with_an_interval_and_a_bar_scaled_to_the_train_loss():
    def curves(val_rows):
        return [{"step": 0, "split": "val", "loss": 3.0, "row_losses": [3.0] * len(val_rows)},
                {"step": 10, "split": "val", "loss": sum(val_rows) / len(val_rows), "row_losses": val_rows},
                {"step": 10, "split": "train", "loss": 1.0}]

    wide = overfit.gate(curves([1.2, 1.6] * 100), train_row_losses=[0.8, 1.2] * 100)  # 1.4 vs 1.0: 40% above
    assert wide.outcome == "PASS" and "warning: val loss 1.4000 at the kept step vs train loss 1.0000 as trained on " \
        "(200 and 200 rows): gap +0.4000" in wide.message
    assert "more than 20% above the train loss beyond noise" in wide.message
    assert "not to be tuned on the test score" in wide.message
    gap = wide.details["gap"]
    assert gap["beyond_bar"] and gap["excess_low"] > 0 and gap["gap_low"] < 0.4 < gap["gap_high"]
    # the same 0.1-nat gap is beyond the bar on rows fit to 0.3 nats, within it on rows at 1 nat
    low = overfit.gate(curves([0.35, 0.45] * 100), train_row_losses=[0.28, 0.32] * 100)
    assert low.details["gap"]["beyond_bar"] and "warning" in low.message
    high = overfit.gate(curves([1.05, 1.15] * 100), train_row_losses=[0.9, 1.1] * 100)
    assert not high.details["gap"]["beyond_bar"] and "warning" not in high.message
    assert "val loss 1.1000 at the kept step vs train loss 1.0000" in high.message


def test_overfit_passes_a_healthy_run():
    curves = _curve("val", [(0, 2.0), (10, 1.0), (20, 0.9)]) + _curve("train", [(10, 1.0), (20, 0.8)])
    v = overfit.gate(curves, train_row_losses=[0.8, 0.9, 1.0])
    assert v.outcome == "PASS" and "val loss 2.0000 -> 0.9000 over 3 evaluations" in v.message
    assert "warning" not in v.message
    assert overfit.gate([]).outcome == "SKIP"


def test_a_pass_on_few_discordant_rows_needs_the_exact_test_to_confirm_a_gain():
    """7 rows fixed and 1 broken of 100: the percentile interval's lower end (+1 point) clears a
    0.5-point bar, but the exact one-sided test of "no gain" has p = 9/256 = 0.035 > 0.025, so
    the rule does not PASS; 6 fixed and none broken (p = 1/64) does."""
    base = [1.0] + [0.0] * 99
    seven_one = gates.five_percent_rule("exact_match", [0.0] + [1.0] * 7 + [0.0] * 92, "r", base,
                                        baseline_pick_score=0.0, picked_on="val")
    assert seven_one.details["low"] >= seven_one.details["threshold"]  # the interval alone would pass
    assert seven_one.outcome == gates.INCONCLUSIVE
    assert seven_one.details["exact_gain_p"] == pytest.approx(9 / 256)
    assert "on 8 discordant rows the exact test does not confirm any gain (one-sided p=0.0352 > 0.025)" \
        in seven_one.message
    six_none = gates.five_percent_rule("exact_match", [1.0] * 7 + [0.0] * 93, "r", [0.0] * 6 + [1.0] + [0.0] * 93,
                                       baseline_pick_score=0.0, picked_on="val")
    assert six_none.outcome == gates.PASS and six_none.details["exact_gain_p"] == pytest.approx(1 / 64)
