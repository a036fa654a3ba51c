"""exact_match: normalised string equality, as a local `evaluate` module.

Both sides are normalised before comparing: lowercased, stripped, runs of whitespace
collapsed to one space, then surrounding quotes, markdown emphasis and sentence
punctuation peeled off the ends (repeatedly, with whitespace in between), so
'"Paris."', '**Paris**' and ' paris ' all equal 'Paris'. Punctuation inside an
answer is kept ('u.s.a', 'c++', '3.5'), and a leading '.', '+', '-', '$' or '#' is
kept because it changes a number's or a symbol's meaning ('-5' != '5').

compute(predictions, references, normalize=True) ->
    {"exact_match": mean, "per_example": [0.0 | 1.0, ...]}
normalize=False compares the strings exactly as given.
"""
import re

import datasets
import evaluate

_QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb\u201e\u201a"
_BOTH_ENDS = _QUOTES + "*_,;:!?\u00bf\u00a1"
_TRAILING = _BOTH_ENDS + "."
_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    text = _WS.sub(" ", str(text).lower()).strip()
    while True:
        peeled = text.lstrip(_BOTH_ENDS).rstrip(_TRAILING).strip()
        if peeled == text:
            return text
        text = peeled


_DESCRIPTION = "Exact match after normalisation (case, whitespace, surrounding quotes/punctuation)."
_KWARGS = """
Args:
    predictions: list of predicted strings.
    references: list of reference strings.
    normalize: normalise both sides before comparing (default True).
Returns:
    exact_match: fraction of predictions equal to their reference.
    per_example: 1.0 or 0.0 per example.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, normalize=True):
        norm = globals()["normalize"] if normalize else (lambda s: s)
        per_example = [float(norm(p) == norm(r)) for p, r in zip(predictions, references)]
        value = sum(per_example) / len(per_example) if per_example else float("nan")
        return {"exact_match": value, "per_example": per_example}
