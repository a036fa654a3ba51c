"""The prompt baselines of a run: each declared baseline as a contender on the base model, its
calibrated twins, and the rule that picks the best of them on the selection split."""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness._engine import evaluate
from harness._engine import events as kinds
from harness._engine.evaluate import PICK_ROWS_WITHOUT_VAL, Approach, Contender, Scoring
from harness._engine.events import Events
from harness._engine.prepare import Prepared
from harness.data import Sample
from harness.models import cache_dir
from harness.prompting import calibration, prompts, retrieval, shots
from harness.prompting.embed import Embedder
from harness.scoring.scored import Scored
from harness.spec.baselines import Baseline
from harness.spec.baselines import expand as expand_baselines
from harness.spec.experiment import Experiment


@dataclass
class Baselines:
    """The declared prompt baselines, each a contender with its twins, and the embedder that
    nearest-neighbour examples and retrieval share (None when neither is declared)."""

    contenders: list[Contender]
    embedder: Embedder | None

    def approaches(self) -> list[Approach]:
        return [a for contender in self.contenders for a in contender.approaches()]

    def embed_ahead(self, rows: list) -> None:
        """Embed the rows' inputs in batches, before prompts ask for them one at a time."""
        if self.embedder is not None:
            self.embedder([s.input_text for s in rows])


def declare(experiment: Experiment, p: Prepared, root: Path, events: Events) -> Baselines:
    """Every declared baseline (prompt folders expanded) with its calibrated twins."""
    declared = expand_baselines(experiment.baselines, root, task=p.task, max_baselines=experiment.max_baselines,
                                where=experiment.name)
    embedder, nearest = None, None
    if any((b.strategy == "nearest" and b.k) or b.knowledge for b in declared):
        embedder = Embedder()  # one model, and one memory of embedded texts, for both
        if any(b.strategy == "nearest" and b.k for b in declared):
            nearest = shots.NearestShots(p.splits.train, embedder)

    @functools.cache
    def retriever_for(knowledge: str) -> retrieval.Retriever:  # each index built (or read) once per run
        said = events.text(kinds.RETRIEVAL_INDEX, knowledge=knowledge)
        index = retrieval.build_index(retrieval.load_knowledge(knowledge, root), embedder, embedder.model_id,
                                      cache_dir() / "retrieval", log=lambda m: said(f"{experiment.name}: {m}"))
        return retrieval.Retriever(index, embedder)

    return Baselines([_contender(b, p, root, nearest, retriever_for) for b in declared], embedder)


def _contender(baseline: Baseline, p: Prepared, root: Path, nearest: shots.NearestShots | None,
               retriever_for: Callable[[str], retrieval.Retriever]) -> Contender:
    """A baseline on the base model: its prompt built from its system prompt and its context (few-shot
    examples, or retrieved passages), and its config as stored."""
    system = baseline.system_prompt(root)
    config = {**baseline.config(), "system_prompt": system, "calibrated": None}
    train = p.splits.train
    if baseline.knowledge:
        retriever = retriever_for(baseline.knowledge)
        # Every row's passage ids would outgrow the config; its prompts are stored with its predictions.
        config |= {"knowledge_sha256": retriever.index.knowledge.sha256, "retrieval": retriever.summary(baseline.top_k)}
        context_for = lambda s: retriever(s, baseline.top_k)
        _, fixed = shots.chooser(baseline.strategy, train, baseline.k, baseline.seed)
        config["shots"] = [[s.input_text, s.answer] for s in fixed]
        build = lambda s, context: prompts.retrieval_messages(s, system, context, fixed)
        per_input = True
    else:
        context_for, fixed = shots.chooser(baseline.strategy, train, baseline.k, baseline.seed, nearest)
        config["shots"] = [[s.input_text, s.answer] for s in fixed] if fixed is not None else "per input"
        build = lambda s, context: prompts.baseline_messages(s, system, context)
        per_input = fixed is None
    twins = []
    for method, twin_name in zip(baseline.calibrate, baseline.scored_as[1:]):
        twin = Approach(twin_name, "baseline", {**config, "calibrated": method})
        twins.append(_ContextualTwin(twin, build, context_for, per_input) if method == "contextual"
                     else _BatchTwin(twin))
    return Contender(Approach(baseline.name, "baseline", config), p.models.base_id, p.models.base,
                     lambda s: build(s, context_for(s)), twins)


def pick_best(baselines: Baselines, scoring: Scoring, splits, events: Events) -> tuple[Approach, str]:
    """(the best baseline or twin, the split it was picked on): validation, or the first train
    rows when there is none; never test, so the pick carries no winner's curse."""
    picked_on = "val" if splits.val else "train"
    rows = splits.val or splits.train[:PICK_ROWS_WITHOUT_VAL]
    baselines.embed_ahead(rows)
    for contender in baselines.contenders:
        evaluate.score_split(scoring, contender, picked_on, rows)
    key = scoring.key_metric.name
    others = [m.name for m in scoring.other_metrics]
    best = max(baselines.approaches(), key=lambda a: selection_key(a, picked_on, key, others))
    value = best.metrics[picked_on][key]
    events.emit(kinds.BASELINE_PICKED, f"{scoring.experiment_name}: best baseline on {picked_on}: {best.name} "
                f"({key} {value:.3f})", name=best.name, split=picked_on, metric=key, value=value)
    return best, picked_on


def selection_key(approach: Approach, split: str, metric: str, others: list[str] = ("macro_f1",)) -> tuple:
    """Best key metric on the selection split. Ties are common (prompts that answer one class
    for every row all score its share; exact match is 0 for every prompt a small model cannot
    follow), so they go to the experiment's next metric there (macro-F1 by default for
    classification, which rewards telling the classes apart; e.g. ROUGE for generation), then to
    the shorter prompt, then to the first declared."""
    values = approach.metrics[split]
    second = next((values[m] for m in others if m != metric and m in values), 0.0)
    tokens = approach.prompt_token_counts.get(split) or [0]
    return values[metric], second if second == second else 0.0, -sum(tokens) / len(tokens)


def _record_calibrated(scoring: Scoring, approach: Approach, split: str, rows: list, scored: Scored,
                       priors: list[dict], paid: list[tuple[float, int]]) -> None:
    """A twin's outputs: its baseline's label scores re-ranked against a prior per row, with
    what measuring the prior cost that row (latency ms, prompt tokens) added to its own."""
    logprobs = [calibration.adjusted(lp, prior) for lp, prior in zip(scored.label_logprobs, priors)]
    evaluate.record_split(scoring, approach, split, rows, dataclasses.replace(
        scored, predictions=[max(lp, key=lp.get) for lp in logprobs], label_logprobs=logprobs,
        latencies_ms=[ms + extra_ms for ms, (extra_ms, _) in zip(scored.latencies_ms, paid)],
        prompt_tokens=[t + extra_t for t, (_, extra_t) in zip(scored.prompt_tokens, paid)]))


class _BatchTwin:
    """A baseline's batch-calibrated copy (harness/prompting/calibration.py): the prior is the mean label
    probability over the first split it sees, the selection split (answers unused), and is
    then frozen, so test is corrected by what validation measured. No extra prompt."""

    def __init__(self, approach: Approach):
        self.approach, self.prior = approach, None

    def score(self, scoring: Scoring, baseline: Contender, split: str, rows: list, scored: Scored) -> None:
        if self.prior is None:
            self.prior = calibration.mean_probs(scored.label_logprobs)
            self.approach.calibration = {"batch_prior": self.prior, "prior_from": f"{len(rows)} {split} inputs"}
        _record_calibrated(scoring, self.approach, split, rows, scored, [self.prior] * len(rows),
                           [(0.0, 0)] * len(rows))


class _ContextualTwin:
    """A baseline's contextually calibrated copy (harness/prompting/calibration.py): the baseline's own
    label scores, re-ranked against p_cf, the label probabilities of content-free inputs under
    the same system prompt and context (few-shot examples or retrieved passages). Measured once
    per distinct context: once in all for fixed examples, once per input for nearest-neighbour
    examples and retrieved passages.

    build(sample, context) -> messages; context_for(sample) -> its examples or passages (each with a `key`)."""

    def __init__(self, approach: Approach, build: Callable, context_for: Callable, per_input: bool):
        self.approach, self.build, self.context_for, self.per_input = approach, build, context_for, per_input
        self.measured: dict[tuple, tuple[dict, float, int]] = {}  # context keys -> (p_cf, latency ms, tokens)

    def score(self, scoring: Scoring, baseline: Contender, split: str, rows: list, scored: Scored) -> None:
        examples = [self.context_for(s) for s in rows]
        sets = [tuple(e.key for e in shots) for shots in examples]
        todo = {k: shots for k, shots in zip(sets, examples) if k not in self.measured}
        if todo:
            inputs = [Sample((("user", text),), "") for text in calibration.CONTENT_FREE]
            n = len(inputs)
            cf = scoring.scorer(baseline.model_id, baseline.load_model,
                                [self.build(x, context) for context in todo.values() for x in inputs],
                                f"{scoring.experiment_name}: {self.approach.name} content-free inputs ({split})")
            for j, k in enumerate(todo):
                part = slice(j * n, (j + 1) * n)
                self.measured[k] = (calibration.mean_probs(cf.label_logprobs[part]),
                                    sum(cf.latencies_ms[part]), sum(cf.prompt_tokens[part]))
        # Fixed examples: p_cf is measured once and reused by every call. Per-input examples:
        # each call pays for its own content-free prompts, so they count in its latency and tokens.
        paid = [self.measured[k][1:] if self.per_input else (0.0, 0) for k in sets]
        _record_calibrated(scoring, self.approach, split, rows, scored, [self.measured[k][0] for k in sets], paid)
        probs = [p for p, *_ in self.measured.values()]
        self.approach.calibration = {
            "content_free_probs": {label: sum(p[label] for p in probs) / len(probs)
                                   for label in probs[0]},  # the mean, for per-input examples
            "content_free_prompts": len(calibration.CONTENT_FREE) * len(self.measured),
            "content_free_inputs": list(calibration.CONTENT_FREE)}
