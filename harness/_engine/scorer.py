"""How prompts are scored in a run: `Scorer`, a facade over the output cache, and `Models`,
the lazily loaded copies of the base model that it scores with."""
from __future__ import annotations

import gc
from typing import Callable

from harness import models
from harness._engine import events as kinds
from harness._engine.events import Events
from harness.scoring import batched, cache
from harness.scoring.scored import Scored
from harness.store import Store


class Scorer:
    """Scores prompts with one model, through the output cache: label likelihoods for
    classification, generation otherwise. The model is loaded only if something is missing."""

    def __init__(self, store: Store, tokenizer, task: str, labels: list[str], max_new_tokens: int,
                 batch_size: int, events: Events):
        self.store, self.tokenizer, self.task, self.labels = store, tokenizer, task, labels
        self.max_new_tokens, self.batch_size, self.events = max_new_tokens, batch_size, events

    def __call__(self, model_id: str, get_model: Callable[[], object], message_lists: list[list[dict]],
                 what: str) -> Scored:
        """The task's own scoring: label likelihoods for classification, generation otherwise."""
        if self.task == "classification":
            return self.score_labels(model_id, get_model, self._render(message_lists), self.labels, what)
        return self.generate(model_id, get_model, message_lists, self.max_new_tokens, what)

    def score_labels(self, model_id: str, get_model: Callable[[], object], texts: list[str], labels: list[str],
                     what: str) -> Scored:
        """Label scoring of chat-rendered prompts."""
        def score(model, prompts):
            self.tokenizer.padding_side = "left"
            return batched.score_labels(model, self.tokenizer, prompts, labels, batch_size=self.batch_size,
                                        progress=self._progress(what, len(prompts)))

        return self._cached(model_id, get_model, score, texts, {"labels": labels}, what)

    def generate(self, model_id: str, get_model: Callable[[], object], message_lists: list[list[dict]],
                 max_new_tokens: int, what: str) -> Scored:
        """Greedy generation, batched; also what label scoring's agreement check compares with."""
        def score(model, prompts):
            self.tokenizer.padding_side = "left"
            return batched.generate(model, self.tokenizer, prompts, max_new_tokens=max_new_tokens,
                                    batch_size=self.batch_size, progress=self._progress(what, len(prompts)))

        return self._cached(model_id, get_model, score, self._render(message_lists),
                            {"greedy": True, "max_new_tokens": max_new_tokens}, what)

    def references(self, model_id: str, get_model: Callable[[], object], message_lists: list[list[dict]],
                   references: list[str], what: str) -> tuple[list[float], list[int]]:
        """Each reference answer's log-likelihood after its chat-rendered prompt and its token count, cached."""
        return self._continuations(model_id, get_model, self._render(message_lists), references,
                                   {"reference_loglik": True}, what)

    def continuations(self, model_id: str, get_model: Callable[[], object], prompts: list[str],
                      continuations: list[str], what: str) -> tuple[list[float], list[int]]:
        """Each continuation's log-likelihood after its plain-text prompt (no chat template) and its
        token count, cached: the regression gate's option and document likelihoods."""
        return self._continuations(model_id, get_model, prompts, continuations,
                                   {"continuation_loglik": True, "template": "none"}, what)

    def _continuations(self, model_id: str, get_model: Callable[[], object], prompts: list[str],
                       continuations: list[str], decoding: dict, what: str) -> tuple[list[float], list[int]]:
        # the cache row keeps the log-likelihood among its label scores and the count as tokens
        pairs = list(zip(prompts, continuations))
        cache_keys = [f"{prompt}\x1f{ref}" for prompt, ref in pairs]
        by_cache_key = dict(zip(cache_keys, pairs))

        def score(model, wanted):
            self.tokenizer.padding_side = "left"
            todo = [by_cache_key[k] for k in wanted]
            loglik, counts = batched.score_continuations(model, self.tokenizer, [a for a, _ in todo],
                                                         [b for _, b in todo], batch_size=self.batch_size,
                                                         progress=self._progress(what, len(todo)))
            return Scored([""] * len(todo), [0.0] * len(todo), counts,
                          label_logprobs=[{"reference": ll} for ll in loglik], generated_tokens=counts)

        scored = self._cached(model_id, get_model, score, cache_keys, decoding, what)
        return [lp["reference"] for lp in scored.label_logprobs], scored.generated_tokens

    def _render(self, message_lists: list[list[dict]]) -> list[str]:
        return [batched.render(self.tokenizer, m) for m in message_lists]

    def _cached(self, model_id: str, get_model: Callable[[], object], score: Callable, prompts: list[str],
                decoding: dict, what: str) -> Scored:
        """Outputs from the cache where there, the model (loaded only then) for the rest."""
        scored, computed = cache.cached_score(self.store, model_id, get_model, score, prompts, decoding)
        if computed < len(prompts):
            self.events.emit(kinds.SCORING_CACHED, f"{what}: {len(prompts) - computed} of {len(prompts)} outputs "
                             f"from the cache", what=what, cached=len(prompts) - computed, total=len(prompts))
        return scored

    def _progress(self, what: str, total: int):
        step = max(1, total // 4)

        def progress(done, total):
            if done == total or done % step < self.batch_size:
                self.events.emit(kinds.SCORING_PROGRESS, f"{what}: {done}/{total}", what=what, done=done,
                                 total=total)

        return progress


def merges_for_scoring(base) -> bool:
    """Whether the candidate scores with its adapter merged into an fp32 copy of its base
    (models.with_adapter): on CPU, for a 4-bit base whose fp32 copy takes at most a quarter of
    the free memory."""
    from harness.candidate.estimate import available_memory

    if models.device() != "cpu" or not getattr(base, "is_loaded_in_4bit", False):
        return False
    fp32_bytes = 4 * sum(p.numel() for p in base.parameters()) * 2  # 4-bit weights are packed two a byte
    return fp32_bytes < available_memory("cpu") / 4


class Models:
    """The base model (its resolved file and tokenizer) and its copies, loaded lazily: the
    pristine base and the candidate.

    peft attaches adapters in place, to the very model it is given, so training and
    adapter loading each get their own fresh copy: the base that scores the prompt
    baselines never carries an adapter.
    """

    def __init__(self, resolved, tokenizer, trust_remote_code: bool, allow_pickle: bool = False):
        self.resolved, self.tokenizer = resolved, tokenizer
        self.trust_remote_code, self.allow_pickle = trust_remote_code, allow_pickle
        self._base = None
        self.candidate = None

    @property
    def base_id(self) -> str:
        """The base model's name in the output cache: its weights' hash, quantized to NF4."""
        return f"{self.resolved.sha256}:nf4"

    def adapter_id(self, adapter_sha256: str) -> str:
        """A candidate's name in the output cache: the base plus its adapter's hash."""
        return f"{self.base_id}+{adapter_sha256}"

    def _load(self):
        return models.load_model(self.resolved, quantize=True, trust_remote_code=self.trust_remote_code,
                                 allow_pickle=self.allow_pickle)

    def base(self):
        if self._base is None:
            self._base = self._load()
        return self._base

    def for_training(self):
        """A copy to attach the adapter to; the scoring copy is released first to bound memory."""
        self._release_base()
        return self._load()

    def load_adapter(self, adapter_path: str):
        if self.candidate is None:
            self._release_base()
            base = self._load()
            self.candidate = models.with_adapter(base, adapter_path, merge=merges_for_scoring(base))
        return self.candidate

    def release(self) -> None:
        """Drop every loaded copy (between sweep trials, so the next one has the memory)."""
        self.candidate = None
        self._release_base()

    def _release_base(self) -> None:
        import torch

        self._base = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
