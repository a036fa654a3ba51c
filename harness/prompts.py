"""Turning samples into chat messages: for a prompt baseline, and for the candidate."""
from __future__ import annotations

from harness.data import Sample
from harness.shots import random_shots

choose_shots = random_shots  # its old name and home: bench/bench_eval.py and tests call it here


def _as_dicts(pairs) -> list[dict]:
    return [{"role": role, "content": content} for role, content in pairs]


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
