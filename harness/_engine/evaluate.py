"""Scoring an approach on a split: its predictions, its per-example key metric, every metric;
then, on test, its latency and (classification) whether label scoring agrees with generation."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from harness._engine import events as kinds
from harness._engine.events import Events
from harness._engine.scorer import Scorer
from harness.data import Sample
from harness.judge import stats
from harness.scoring import batched
from harness.scoring.metrics import Metric
from harness.scoring.scored import Scored
from harness.scoring.separation import separation

PICK_ROWS_WITHOUT_VAL = 200  # first train rows the best baseline is picked on when there is no val split
AGREEMENT_ROWS = 64  # test rows each approach also answers by greedy generation (classification)


@dataclass
class Approach:
    """One way of solving the task (a prompt baseline or the fine-tuned candidate) and how it did."""

    name: str
    kind: str  # baseline | candidate
    config: dict
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> metric -> value
    predictions: dict[str, list[str]] = field(default_factory=dict)     # split -> outputs
    scores: dict[str, list[float]] = field(default_factory=dict)        # split -> per-example key metric
    prompt_tokens: float = 0.0
    generated_tokens: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    train_seconds: float | None = None
    # what calibrating measured while scoring (a twin's prior, its content-free prompts): facts
    # beside the declared config, stored with it
    calibration: dict = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict, repr=False)
    prompt_token_counts: dict[str, list[int]] = field(default_factory=dict, repr=False)
    generated_token_counts: dict[str, list[int]] = field(default_factory=dict, repr=False)
    # split -> the last user message as sent, where the prompt added to the row's input (retrieved passages)
    inputs: dict[str, list[str]] = field(default_factory=dict, repr=False)


@dataclass
class Contender:
    """An approach as it is scored: the model it runs on (its id in the output cache and how to
    load it), the messages it sends for a sample, and its calibrated twins, which are not scored
    themselves but re-rank its label scores (harness/_engine/baselines.py)."""

    approach: Approach
    model_id: str
    load_model: Callable[[], object]
    messages: Callable[[Sample], list[dict]]
    twins: list = field(default_factory=list)

    def approaches(self) -> list[Approach]:
        """Every approach to report from this one: itself, then its twins."""
        return [self.approach] + [twin.approach for twin in self.twins]


@dataclass(frozen=True)
class Scoring:
    """How every approach of one experiment is scored and named in the log."""

    scorer: Scorer
    key_metric: Metric
    other_metrics: list[Metric]
    experiment_name: str


def score_split(scoring: Scoring, contender: Contender, split: str, rows: list, what: str | None = None) -> Scored:
    """Score a contender on one split (predictions, per-example key metric, every metric), then
    its calibrated twins from the same label scores."""
    approach, scorer = contender.approach, scoring.scorer
    what = f"{scoring.experiment_name}: {approach.name} {what or split}"
    message_lists = [contender.messages(s) for s in rows]
    scored = scorer(contender.model_id, contender.load_model, message_lists, what)
    if any(m.name == "perplexity" for m in scoring.other_metrics):
        scored.reference_loglik, scored.reference_tokens = scorer.references(
            contender.model_id, contender.load_model, message_lists, [s.answer.strip() for s in rows],
            f"{what} reference perplexity")
    record_split(scoring, approach, split, rows, scored)
    sent = [m[-1]["content"] for m in message_lists]
    if sent != [s.input_text for s in rows]:  # e.g. retrieved passages above the input: store what was sent
        approach.inputs[split] = sent
    for twin in contender.twins:
        twin.score(scoring, contender, split, rows, scored)
        if split in approach.inputs:
            twin.approach.inputs[split] = approach.inputs[split]
    return scored


def record_split(scoring: Scoring, approach: Approach, split: str, rows: list, scored: Scored) -> None:
    """An approach's outputs on a split, with its per-example key metric and every metric."""
    key_metric = scoring.key_metric
    refs = [s.answer.strip() for s in rows]
    preds = [p.strip() for p in scored.predictions]
    result = key_metric.score(preds, refs)
    approach.metrics[split] = {key_metric.name: result.value, **_prefixed(key_metric.name, result.extra)}
    if scored.label_logprobs:  # label scoring: how well the scores separate the classes at all
        approach.metrics[split] |= separation(scored.label_logprobs, refs)
    for m in scoring.other_metrics:
        inputs = {"log_likelihoods": scored.reference_loglik, "token_counts": scored.reference_tokens} \
            if m.name == "perplexity" else {}
        r = m.score(preds, refs, **inputs)
        approach.metrics[split].update({m.name: r.value, **_prefixed(m.name, r.extra)})
    approach.predictions[split] = scored.predictions
    approach.scores[split] = list(result.per_example)
    approach.latencies[split] = scored.latencies_ms
    approach.prompt_token_counts[split] = scored.prompt_tokens
    approach.generated_token_counts[split] = scored.generated_tokens or [0] * len(rows)


def _prefixed(metric: str, aggregates: dict) -> dict:
    """A metric's side aggregates keyed so they cannot clash: rouge1 stays, bertscore's precision
    is bertscore_precision."""
    return {k if k.lower().startswith(metric[:5]) else f"{metric}_{k}": v for k, v in aggregates.items()}


def score_on_test(scoring: Scoring, contenders: list[Contender], test_rows: list, events: Events) -> None:
    """The final scoring, of what was already chosen: every contender and its twins on test, with
    latency; for classification, the agreement of label scoring with generation."""
    key = scoring.key_metric.name
    for contender in contenders:
        score_split(scoring, contender, "test", test_rows)
        for approach in contender.approaches():
            latency(approach)
            scores = {s: v[key] for s, v in approach.metrics.items()}
            events.emit(kinds.APPROACH_SCORED, f"{scoring.experiment_name}: {approach.name} {key} " + ", ".join(
                f"{s} {v:.3f}" for s, v in scores.items()), approach=approach.name, metric=key, scores=scores)
    if scoring.scorer.task == "classification":
        for contender in contenders:
            agreement(scoring, contender, test_rows[:AGREEMENT_ROWS], events)


def agreement(scoring: Scoring, contender: Contender, rows: list, events: Events) -> None:
    """How often label scoring picks what greedy generation says, on the rows where generation
    gives a valid label at all: a check that scoring labels measures the model's own answer."""
    if not rows:
        return
    scorer, approach, name = scoring.scorer, contender.approach, scoring.experiment_name
    labels = scorer.labels
    longest = max(len(scorer.tokenizer(label, add_special_tokens=False)["input_ids"]) for label in labels)
    generated = scorer.generate(contender.model_id, contender.load_model, [contender.messages(s) for s in rows],
                                longest + 3, f"{name}: {approach.name} greedy generation (agreement check)")
    said = [batched.generated_label(text, labels) for text in generated.predictions]
    valid = [(label, scored.strip()) for label, scored in zip(said, approach.predictions["test"]) if label is not None]
    metrics = approach.metrics["test"]
    metrics["generation_valid_rate"] = len(valid) / len(rows)
    metrics["label_generation_agreement"] = (sum(a == b for a, b in valid) / len(valid)) if valid else math.nan
    metrics["agreement_rows"] = float(len(rows))
    events.emit(kinds.AGREEMENT_CHECKED, f"{name}: {approach.name}: greedy generation gives a valid label on "
                f"{len(valid)}/{len(rows)} test rows; label scoring agrees on "
                + (f"{metrics['label_generation_agreement']:.0%}" if valid else "-") + " of them",
                approach=approach.name, valid=len(valid), rows=len(rows),
                agreement=metrics["label_generation_agreement"])


def latency(approach: Approach) -> None:
    """Latency and prompt size per call, measured on the test split."""
    latencies, tokens = approach.latencies.get("test") or [], approach.prompt_token_counts.get("test") or []
    if latencies:
        approach.latency_p50_ms = stats.percentile(latencies, 50)
        approach.latency_p95_ms = stats.percentile(latencies, 95)
        approach.prompt_tokens = sum(tokens) / len(tokens)
        generated = approach.generated_token_counts.get("test") or [0]
        approach.generated_tokens = sum(generated) / len(generated)
