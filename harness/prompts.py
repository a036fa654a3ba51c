"""Turning samples into chat messages: for a prompt baseline, and for the candidate."""
from __future__ import annotations

import random

from harness.data import Sample


def _as_dicts(pairs) -> list[dict]:
    return [{"role": role, "content": content} for role, content in pairs]


def choose_shots(train: list[Sample], k: int, seed: int) -> list[Sample]:
    """k solved examples, seeded, from the train split only."""
    pool = list(train)
    return random.Random(seed).sample(pool, min(k, len(pool)))


def baseline_messages(sample: Sample, system: str, shots: list[Sample]) -> list[dict]:
    """The baseline's system prompt replaces the data's; shots come as earlier turns."""
    messages = [{"role": "system", "content": system}]
    for shot in shots:
        messages += _as_dicts(shot.turns) + [{"role": "assistant", "content": shot.answer}]
    return messages + _as_dicts(sample.turns)


def candidate_messages(sample: Sample, system: str | None = None) -> list[dict]:
    """What the fine-tuned model sees: the data's own conversation (system optionally replaced)."""
    if system is None:
        return _as_dicts(sample.messages)
    return [{"role": "system", "content": system}] + _as_dicts(sample.turns)
