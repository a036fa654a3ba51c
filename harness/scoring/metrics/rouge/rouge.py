"""rouge: ROUGE-1/2/L F-measure via Google's rouge-score library, as a local `evaluate` module.

Each prediction is scored against its reference with
rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True); the
aggregates are plain means of the per-example F-measures (no bootstrap), so the
headline rougeL equals the mean of "per_example".

compute(predictions, references, use_stemmer=True) ->
    {"rougeL": mean, "rouge1": mean, "rouge2": mean, "per_example": [rougeL F1, ...]}
The headline value comes first.
"""
import datasets
import evaluate
from rouge_score import rouge_scorer

_TYPES = ("rougeL", "rouge1", "rouge2")
_SCORERS = {}

_DESCRIPTION = "ROUGE-1/2/L F-measure (rouge-score, Porter stemming); per_example is ROUGE-L F1."
_KWARGS = """
Args:
    predictions: list of generated strings.
    references: list of reference strings.
    use_stemmer: Porter-stem tokens before matching (default True).
Returns:
    rougeL, rouge1, rouge2: mean F-measure over examples.
    per_example: ROUGE-L F-measure per example.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(self, predictions, references, use_stemmer=True):
        scorer = _SCORERS.get(bool(use_stemmer))
        if scorer is None:
            scorer = _SCORERS[bool(use_stemmer)] = rouge_scorer.RougeScorer(list(_TYPES), use_stemmer=use_stemmer)
        scores = [scorer.score(r, p) for p, r in zip(predictions, references)]  # score(target, prediction)
        n = len(scores)
        out = {t: (sum(s[t].fmeasure for s in scores) / n if n else float("nan")) for t in _TYPES}
        out["per_example"] = [s["rougeL"].fmeasure for s in scores]
        return out
