"""macro_f1: unweighted mean of per-label F1, as a local `evaluate` module.

F1 of a label is 2TP / (2TP + FP + FN); a label with no support and no predictions
scores 0 (sklearn's f1_score(average="macro", zero_division=0)). The label set is the
union of the labels seen in references and predictions, or `labels=[...]` if given.
Labels are compared as strings after stripping whitespace.

Macro F1 is NOT decomposable into per-example scores, so it cannot be a key metric.
Its "per_example" is per-example correctness (1.0 if the prediction equals the
reference, else 0.0): useful to inspect errors, but its mean is accuracy, not macro F1.

compute(predictions, references, labels=None) ->
    {"macro_f1": value, "per_example": [0.0 | 1.0, ...]}
"""
import datasets
import evaluate

_DESCRIPTION = "Macro-averaged F1 over labels (per_example is per-example correctness, not F1)."
_KWARGS = """
Args:
    predictions: list of predicted labels (strings).
    references: list of reference labels (strings).
    labels: optional list of labels to average over (default: all labels seen).
Returns:
    macro_f1: mean over labels of the per-label F1.
    per_example: 1.0 or 0.0 per example (correctness; macro F1 is not decomposable).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class MacroF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, labels=None):
        preds = [str(p).strip() for p in predictions]
        refs = [str(r).strip() for r in references]
        per_example = [float(p == r) for p, r in zip(preds, refs)]
        if labels is None:
            labels = sorted(set(refs) | set(preds))
        else:
            labels = [str(label).strip() for label in labels]
        if not labels:
            return {"macro_f1": float("nan"), "per_example": per_example}
        f1s = []
        for label in labels:
            tp = sum(p == label and r == label for p, r in zip(preds, refs))
            fp = sum(p == label and r != label for p, r in zip(preds, refs))
            fn = sum(p != label and r == label for p, r in zip(preds, refs))
            f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        return {"macro_f1": sum(f1s) / len(f1s), "per_example": per_example}
