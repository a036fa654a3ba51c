"""What scoring a list of prompts gives back: plain data, so the output cache and the engine
can hold it without importing torch."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Scored:
    predictions: list[str]
    latencies_ms: list[float]  # per example: its batch's wall time shared across the batch
    prompt_tokens: list[int]
    label_logprobs: list[dict[str, float]] = field(default_factory=list)
    generated_tokens: list[int] = field(default_factory=list)
    # the reference answers' log-likelihoods and token counts, when a perplexity is asked for
    reference_loglik: list[float] = field(default_factory=list)
    reference_tokens: list[int] = field(default_factory=list)
