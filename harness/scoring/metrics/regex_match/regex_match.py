"""regex_match: format compliance, does the whole prediction match a regex? As a local `evaluate` module.

A prediction scores 1.0 when re.fullmatch(pattern, prediction, flags) succeeds (the
prediction is used as given: the harness strips whitespace before scoring).
References are ignored (format compliance only) but must be given, one per prediction.

compute(predictions, references, pattern=..., flags=0) ->
    {"regex_match": mean, "per_example": [0.0 | 1.0, ...]}
"""
import re

import datasets
import evaluate

_DESCRIPTION = "Format compliance: 1 if the whole prediction matches the regex `pattern`."
_KWARGS = """
Args:
    predictions: list of generated strings.
    references: list of strings (ignored).
    pattern: the regular expression (required), matched with re.fullmatch.
    flags: re flags, e.g. re.IGNORECASE (default 0).
Returns:
    regex_match: fraction of matching predictions.
    per_example: 1.0 or 0.0 per example.
"""


def _compile(pattern, flags):
    if pattern is None:
        raise ValueError("regex_match needs pattern=<regular expression>")
    try:
        return re.compile(pattern, flags)
    except re.error as e:
        raise ValueError(f"regex_match: invalid pattern {pattern!r}: {e}") from None


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class RegexMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def check_config(self, pattern=None, flags=0, **_):
        """Called by harness.scoring.metrics.load: catch a wrong configuration before any scoring."""
        _compile(pattern, flags)

    def _compute(self, predictions, references, pattern=None, flags=0):
        regex = _compile(pattern, flags)
        per_example = [float(regex.fullmatch(p or "") is not None) for p in predictions]
        value = sum(per_example) / len(per_example) if per_example else float("nan")
        return {"regex_match": value, "per_example": per_example}
