"""Calibration of label scores: correcting a prompt's prior over the labels.

A prompt's wording and examples push a small model towards some labels whatever the input
(SmolLM2-135M answers "1" to every sarcasm headline). Both methods here estimate that push as
a prior p over the labels and re-rank the label scores already computed:

    argmax over labels of  log p(label | x) - log p(label)

the diagonal correction W = diag(p)^-1, b = 0. They differ in where p comes from:

- "contextual" (Zhao et al. 2021, "Calibrate Before Use"): the content-free inputs "N/A", ""
  and "[MASK]", scored with the same system prompt and examples; three extra prompts per
  distinct context (once in all for fixed examples, once per input for per-input ones).
- "batch" (Zhou et al. 2024, "Batch Calibration"): the mean label probabilities over real
  inputs, here the selection split's, with their answers unused, then frozen for test. It
  costs no prompt at all, so it also suits per-input prompts (nearest examples, retrieval),
  where contextual calibration would triple the cost of every row.
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


def mean_probs(logprobs_per_input: list[dict[str, float]]) -> dict[str, float]:
    """The prior: the mean over inputs (content-free ones, or a batch of real ones) of their
    label probabilities."""
    probs = [normalised(lp) for lp in logprobs_per_input]
    return {label: sum(p[label] for p in probs) / len(probs) for label in probs[0]}


def adjusted(logprobs: dict[str, float], prior: dict[str, float]) -> dict[str, float]:
    """The calibrated label scores: log p(label | x) - log prior(label)."""
    return {label: lp - math.log(max(prior[label], 1e-300)) for label, lp in logprobs.items()}


def predict(logprobs: dict[str, float], prior: dict[str, float]) -> str:
    """The calibrated label; ties go to the first label in the label set's order."""
    scores = adjusted(logprobs, prior)
    return max(scores, key=scores.get)
