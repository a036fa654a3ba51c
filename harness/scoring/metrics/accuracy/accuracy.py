"""accuracy: the fraction of predicted labels equal to the reference label, as a local `evaluate` module.

Labels are compared as strings after stripping surrounding whitespace only (no case
folding: classification labels are compared exactly; use exact_match for lenient
comparison of free text).

compute(predictions, references) -> {"accuracy": mean, "per_example": [0.0 | 1.0, ...]}
"""
import datasets
import evaluate

_DESCRIPTION = "Accuracy: fraction of predictions equal (after stripping whitespace) to their reference."
_KWARGS = """
Args:
    predictions: list of predicted labels (strings).
    references: list of reference labels (strings).
Returns:
    accuracy: fraction correct.
    per_example: 1.0 or 0.0 per example.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        per_example = [float(str(p).strip() == str(r).strip()) for p, r in zip(predictions, references)]
        value = sum(per_example) / len(per_example) if per_example else float("nan")
        return {"accuracy": value, "per_example": per_example}
