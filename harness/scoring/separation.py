"""How well an approach's label scores tell the classes apart, whatever the decision rule.

Accuracy mixes two things: whether the scores rank the right label higher (signal) and where
the decision falls (calibration). Calibration only moves the decision, so when a prompt is
stuck near the class prior these numbers say whether anything but a different model could help:

    label_auc                 ROC AUC of the label scores against the answers (one-vs-rest,
                              macro-averaged, for more than two labels); 0.5 is no signal
    best_threshold_accuracy   two labels only: the accuracy of the best cut on the score
                              margin, chosen with this split's answers in hand. No calibration
                              of these scores can beat it, so it is a ceiling, not a result.
    majority_class_rate       the accuracy of answering this split's most common label every time
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from harness.prompting.calibration import normalised

METRICS = ("label_auc", "best_threshold_accuracy", "majority_class_rate")  # what separation() may return


def separation(logprobs: list[dict[str, float]], references: list[str]) -> dict[str, float]:
    """The three numbers above for one approach on one split (label_auc NaN when undefined)."""
    labels = list(logprobs[0])
    majority = Counter(references).most_common(1)[0][1] / len(references)
    out = {"majority_class_rate": majority, "label_auc": label_auc(logprobs, references, labels)}
    if len(labels) == 2:
        out["best_threshold_accuracy"] = best_threshold_accuracy(logprobs, references, labels)
    return out


def label_auc(logprobs: list[dict[str, float]], references: list[str], labels: list[str]) -> float:
    from sklearn.metrics import roc_auc_score

    present = set(references)
    if len(present) < 2 or not present <= set(labels):
        return math.nan  # one class only (or answers outside the label set): no ranking to judge
    if len(labels) == 2:
        return float(roc_auc_score([r == labels[1] for r in references], _margins(logprobs, labels)))
    probs = np.array([[normalised(lp)[label] for label in labels] for lp in logprobs])
    aucs = [roc_auc_score([r == label for r in references], probs[:, j])
            for j, label in enumerate(labels) if label in present]
    return float(np.mean(aucs))


def best_threshold_accuracy(logprobs: list[dict[str, float]], references: list[str], labels: list[str]) -> float:
    """Predict labels[1] where the margin exceeds a cut; the best cut's accuracy. Rows with equal
    margins fall on the same side of any cut, so cuts sit only between distinct margins."""
    margins = np.asarray(_margins(logprobs, labels))
    positive = np.array([r == labels[1] for r in references])
    order = np.argsort(-margins, kind="stable")
    margins, positive = margins[order], positive[order]
    n, negatives = len(margins), int((~positive).sum())
    # cutting after the first j rows (all predicted labels[1]): right = positives among them + negatives after
    right = np.concatenate([[negatives], negatives + np.cumsum(np.where(positive, 1, -1))])
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(margins) != 0) + 1, [n]])
    return float(right[cuts].max() / n)


def _margins(logprobs: list[dict[str, float]], labels: list[str]) -> list[float]:
    return [lp[labels[1]] - lp[labels[0]] for lp in logprobs]
