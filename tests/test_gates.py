from harness.data import Check
from harness.judge import decision, gates


def test_five_percent_rule_passes_a_clear_win_and_says_why():
    cand = [1] * 300 + [0] * 100          # 0.75
    base = [1] * 160 + [0] * 240          # 0.40, paired on the same rows
    v = gates.five_percent_rule("accuracy", cand, "few_shot_k8", base)
    assert v.outcome == "PASS"
    assert v.message.startswith("accuracy 0.750 vs few_shot_k8 0.400, uplift +87.5% (95% CI ")
    assert ">= 5%" in v.message and "McNemar p=" in v.message and "140 fixed, 0 broken" in v.message


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
    assert v.outcome == "INCONCLUSIVE" and "test rows would settle it" in v.message
    assert not decision.gate_passes(v)
    allowed = gates.five_percent_rule("accuracy", cand, "zero_shot", base, allow_inconclusive=True)
    assert allowed.details["allow_inconclusive"] and "allowed by the spec" in allowed.message


def test_absolute_threshold_in_points():
    cand = [1] * 90 + [0] * 10
    base = [1] * 50 + [0] * 50
    v = gates.five_percent_rule("accuracy", cand, "zero_shot", base, relative=False, threshold=0.2)
    assert v.outcome == "PASS" and "+40.0 pts" in v.message and "20 pts" in v.message


def test_a_baseline_at_or_near_zero_is_judged_in_points_not_an_unbounded_percentage():
    # 1 right answer in 100 for the baseline: some resamples hold none, so a relative interval
    # would reach +inf and any win at all would pass. In points, +6 on 100 rows is not settled.
    base = [1.0] + [0.0] * 99
    cand = [1.0] * 7 + [0.0] * 93
    v = gates.five_percent_rule("exact_match", cand, "retrieval_k3", base)
    assert v.outcome == gates.INCONCLUSIVE and "inf" not in v.message
    assert "uplift +6.0 pts" in v.message and "vs 5 pts" in v.message
    assert "judged in absolute points, as a relative uplift over a baseline this close to 0 is unbounded" in v.message
    assert v.details["relative"] is False and v.details["relative_unbounded"] is True
    # a baseline that never reaches 0 in any resample keeps the relative reading
    healthy = gates.five_percent_rule("accuracy", [1.0] * 80 + [0.0] * 20, "zero_shot", [1.0] * 50 + [0.0] * 50)
    assert healthy.details["relative"] is True and not healthy.details["relative_unbounded"]
    # and a clear win over a zero baseline still passes, in points
    clear = gates.five_percent_rule("exact_match", [1.0] * 40 + [0.0] * 60, "zero_shot", [0.0] * 100)
    assert clear.outcome == gates.PASS and "+40.0 pts" in clear.message


def test_data_quality_fails_only_on_errors():
    ok = gates.data_quality([Check("duplicates", "warning", "3 duplicates", [4])])
    assert ok.outcome == "PASS" and "1 warning(s)" in ok.message
    bad = gates.data_quality([Check("invalid_json", "error", "2 row(s) unusable; first at line 7", [7, 9])])
    assert bad.outcome == "FAIL" and "first at line 7" in bad.message


def _curve(split, points):
    return [{"step": s, "split": split, "loss": loss} for s, loss in points]


def test_overfit_flags_val_loss_rising_while_train_falls():
    curves = (_curve("val", [(0, 2.0), (10, 1.0), (20, 1.1), (30, 1.3)]) +
              _curve("train", [(5, 1.5), (10, 0.9), (20, 0.5), (30, 0.2)]))
    v = gates.overfit(curves, train_score=0.9, test_score=0.85, metric="accuracy")
    assert v.outcome == "FAIL"
    assert "step 10: 1.0000, step 20: 1.1000, step 30: 1.3000" in v.message


def test_overfit_flags_a_wide_train_test_gap_and_perfect_train():
    flat = _curve("val", [(0, 2.0), (10, 1.0)]) + _curve("train", [(10, 1.0)])
    assert "gap 0.300 > 0.15" in gates.overfit(flat, train_score=0.9, test_score=0.6, metric="accuracy").message
    perfect = gates.overfit(flat, train_score=1.0, test_score=0.7, metric="accuracy")
    assert perfect.outcome == "FAIL" and "perfect train accuracy" in perfect.message


def test_overfit_passes_a_healthy_run():
    curves = _curve("val", [(0, 2.0), (10, 1.0), (20, 0.9)]) + _curve("train", [(10, 1.0), (20, 0.8)])
    v = gates.overfit(curves, train_score=0.8, test_score=0.75, metric="accuracy")
    assert v.outcome == "PASS" and "val loss 2.0000 -> 0.9000 over 3 evaluations" in v.message
