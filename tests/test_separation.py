"""Separation of label scores: AUC, the best cut (a ceiling for any calibration), the class prior."""
import math
import random

import pytest

from harness.scoring.separation import METRICS, best_threshold_accuracy, label_auc, separation


def _lp(margin: float) -> dict[str, float]:
    """Label scores whose margin log p("1") - log p("0") is `margin`."""
    return {"0": -1.0, "1": -1.0 + margin}


def _brute_force_best_cut(margins, refs):
    cuts = [-math.inf] + sorted(set(margins))
    return max(sum((m > c) == (r == "1") for m, r in zip(margins, refs)) / len(refs) for c in cuts)


def test_scores_that_say_nothing_have_auc_one_half_and_a_ceiling_at_the_prior():
    refs = ["1"] * 6 + ["0"] * 4
    collapsed = [_lp(2.0)] * 10  # "1" for every row, by the same margin: no ranking at all
    out = separation(collapsed, refs)
    assert out == {"majority_class_rate": 0.6, "label_auc": 0.5, "best_threshold_accuracy": 0.6}
    assert set(out) == set(METRICS)  # the report keeps exactly these out of its main table


def test_perfect_and_inverted_rankings():
    refs = ["0", "0", "1", "1"]
    assert label_auc([_lp(m) for m in (-3, -1, 1, 3)], refs, ["0", "1"]) == 1.0
    assert label_auc([_lp(m) for m in (3, 1, -1, -3)], refs, ["0", "1"]) == 0.0
    # a perfect ranking is perfectly separable even when every margin favours "1"
    assert best_threshold_accuracy([_lp(m) for m in (5, 6, 7, 8)], refs, ["0", "1"]) == 1.0


def test_the_best_cut_matches_a_brute_force_search_with_ties():
    rng = random.Random(7)
    for _ in range(50):
        n = rng.randint(2, 30)
        margins = [rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0]) for _ in range(n)]  # many ties
        refs = [rng.choice("01") for _ in range(n)]
        got = best_threshold_accuracy([_lp(m) for m in margins], refs, ["0", "1"])
        assert got == pytest.approx(_brute_force_best_cut(margins, refs))


def test_auc_agrees_with_the_pairwise_definition():
    rng = random.Random(3)
    margins = [rng.gauss(0, 1) for _ in range(40)]
    refs = ["1" if m + rng.gauss(0, 1) > 0 else "0" for m in margins]
    pos = [m for m, r in zip(margins, refs) if r == "1"]
    neg = [m for m, r in zip(margins, refs) if r == "0"]
    pairwise = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))
    assert label_auc([_lp(m) for m in margins], refs, ["0", "1"]) == pytest.approx(pairwise)


def test_more_than_two_labels_macro_auc_and_no_cut():
    labels = ["a", "b", "c"]
    right = [{"a": 0.0, "b": -5.0, "c": -5.0}, {"a": -5.0, "b": 0.0, "c": -5.0}, {"a": -5.0, "b": -5.0, "c": 0.0}]
    out = separation(right * 2, labels * 2)
    assert out["label_auc"] == 1.0 and "best_threshold_accuracy" not in out
    assert out["majority_class_rate"] == pytest.approx(1 / 3)


def test_one_class_only_has_no_auc():
    assert math.isnan(label_auc([_lp(1.0), _lp(-1.0)], ["1", "1"], ["0", "1"]))
