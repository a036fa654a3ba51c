"""perplexity: how surprised a model is by the reference answers, as a local `evaluate` module.

The log-likelihoods come from the model that answers (harness.scoring.batched.score_continuations,
the reference scored as the assistant's answer after the prompt); this module only turns
them into perplexities, so it needs no model and no network.

compute(predictions, references, log_likelihoods, token_counts) ->
    {"perplexity": exp(-sum(log_likelihoods) / sum(token_counts)),   # per token, over the set
     "mean_log_likelihood": sum(log_likelihoods) / sum(token_counts),
     "per_example": [exp(-ll_i / n_i), ...]}
Lower is better, so it is never a key metric (the gates assume higher is better).
predictions are ignored (the references are what is scored); examples with no tokens
count as perplexity 1 and add nothing to the aggregate.
"""
import math

import datasets
import evaluate

_DESCRIPTION = "Perplexity of the references under the answering model, from precomputed log-likelihoods."
_KWARGS = """
Args:
    predictions: ignored (kept for the common interface).
    references: the reference answers that were scored.
    log_likelihoods: per example, the summed natural-log likelihood of the reference's tokens.
    token_counts: per example, how many tokens the reference has.
Returns:
    perplexity: exp of the negative mean log-likelihood per token over all examples.
    mean_log_likelihood: the mean log-likelihood per token.
    per_example: each example's own perplexity.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Perplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, log_likelihoods=None, token_counts=None):
        if log_likelihoods is None or token_counts is None:
            raise ValueError("perplexity needs log_likelihoods and token_counts from the answering model "
                             "(the harness computes them; see harness.scoring.batched.score_continuations)")
        if not len(log_likelihoods) == len(token_counts) == len(references):
            raise ValueError(f"perplexity: {len(log_likelihoods)} log-likelihoods and {len(token_counts)} token "
                             f"counts for {len(references)} references")
        total_tokens = sum(token_counts)
        if total_tokens == 0:
            return {"perplexity": float("nan"), "mean_log_likelihood": float("nan"),
                    "per_example": [1.0] * len(references)}
        mean = sum(log_likelihoods) / total_tokens
        per_example = [math.exp(-ll / n) if n else 1.0 for ll, n in zip(log_likelihoods, token_counts)]
        return {"perplexity": math.exp(-mean), "mean_log_likelihood": mean, "per_example": per_example}
