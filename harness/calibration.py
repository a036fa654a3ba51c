"""Contextual calibration of label scores (Zhao et al. 2021, "Calibrate Before Use").

A prompt's wording and examples push a small model towards some labels whatever the input
(SmolLM2-135M answers "1" to every sarcasm headline). The push is measured with content-free
inputs, "N/A", "" and "[MASK]", scored with the same system prompt and examples: their label
probabilities, normalised over the label set and averaged, are p_cf. A calibrated prediction is

    argmax over labels of  log p(label | x) - log p_cf(label)

the paper's W = diag(p_cf)^-1, b = 0. It re-ranks label scores already computed, so the only
extra cost is the three content-free prompts per distinct prompt.
"""
from __future__ import annotations

import math

CONTENT_FREE = ("N/A", "", "[MASK]")


def normalised(logprobs: dict[str, float]) -> dict[str, float]:
    """Label log-likelihoods -> probabilities over the label set (a softmax over the labels)."""
    top = max(logprobs.values())
    weights = {label: math.exp(lp - top) for label, lp in logprobs.items()}
    total = sum(weights.values())
    return {label: w / total for label, w in weights.items()}


def content_free_probs(logprobs_per_input: list[dict[str, float]]) -> dict[str, float]:
    """p_cf: the mean over content-free inputs of their label probabilities."""
    probs = [normalised(lp) for lp in logprobs_per_input]
    return {label: sum(p[label] for p in probs) / len(probs) for label in probs[0]}


def predict(logprobs: dict[str, float], p_cf: dict[str, float]) -> str:
    """The calibrated label; ties go to the first label in the label set's order."""
    return max(logprobs, key=lambda label: logprobs[label] - math.log(max(p_cf[label], 1e-300)))
