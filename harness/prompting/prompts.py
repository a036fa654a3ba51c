"""Turning samples into chat messages: for a prompt baseline, and for the candidate."""
from __future__ import annotations

from harness.data import Sample


def _as_dicts(pairs) -> list[dict]:
    return [{"role": role, "content": content} for role, content in pairs]


def baseline_messages(sample: Sample, system: str, shots: list[Sample]) -> list[dict]:
    """The baseline's system prompt replaces the data's; shots come as earlier turns."""
    messages = [{"role": "system", "content": system}]
    for shot in shots:
        messages += _as_dicts(shot.turns) + [{"role": "assistant", "content": shot.answer}]
    return messages + _as_dicts(sample.turns)


def retrieval_messages(sample: Sample, system: str, passages, shots: list[Sample] = ()) -> list[dict]:
    """A retrieval baseline's prompt: the system prompt, any examples as earlier turns, then the
    input with the retrieved passages (harness/prompting/retrieval.py) in a <context> block above it,
    in the same user message."""
    messages = baseline_messages(sample, system, list(shots))
    if not passages:
        return messages
    lines = [f"[{i}] {p.title}: {p.text}" if p.title else f"[{i}] {p.text}" for i, p in enumerate(passages, 1)]
    context = "<context>\n" + "\n".join(lines) + "\n</context>"
    messages[-1] = {**messages[-1], "content": f"{context}\n\n{messages[-1]['content']}"}
    return messages


def candidate_messages(sample: Sample, system: str | None = None) -> list[dict]:
    """What the fine-tuned model sees: the data's own conversation (system optionally replaced)."""
    if system is None:
        return _as_dicts(sample.messages)
    return [{"role": "system", "content": system}] + _as_dicts(sample.turns)
