"""Choosing the solved examples a few-shot prompt shows, from the train split only.

    random    k rows, seeded: the same examples for every input
    balanced  k / (number of labels) rows of each label, seeded and shuffled together
    nearest   the k train rows whose inputs are most similar to this input (MiniLM sentence
              embeddings, harness/prompting/embed.py); the examples, so the prompt, differ per input

Whatever the strategy, every example is checked to be a train row: validation picks the
best baseline and test is sealed, so neither may leak into a prompt.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Callable

from harness.data import Sample
from harness.errors import HarnessError, SpecError

if TYPE_CHECKING:
    import torch



def random_shots(train: list[Sample], k: int, seed: int) -> list[Sample]:
    """k solved examples, seeded, from the train split only."""
    pool = list(train)
    return random.Random(seed).sample(pool, min(k, len(pool)))


def balanced_shots(train: list[Sample], k: int, seed: int) -> list[Sample]:
    """An equal number of examples per label, seeded, in a shuffled order (not grouped by label)."""
    by_label: dict[str, list[Sample]] = {}
    for s in train:
        by_label.setdefault(s.answer.strip(), []).append(s)
    labels = sorted(by_label)
    if k % len(labels):
        raise SpecError(f"few-shot strategy 'balanced': k={k} does not split evenly over the {len(labels)} labels "
                        f"{labels}; use a multiple of {len(labels)}")
    per = k // len(labels)
    short = [label for label in labels if len(by_label[label]) < per]
    if short:
        raise SpecError(f"few-shot strategy 'balanced': labels {short} have fewer than {per} train rows; "
                        f"use a smaller k")
    rng = random.Random(seed)
    shots = [s for label in labels for s in rng.sample(by_label[label], per)]
    rng.shuffle(shots)
    return shots


class NearestShots:
    """The train rows most similar to an input, by cosine similarity of normalised embeddings.

    `embed` maps texts to an (n, d) tensor of L2-normalised rows (harness.prompting.embed.Embedder, or a
    fake in tests). The train split is embedded once, on first use, and shared by every
    nearest-neighbour baseline of the run.
    """

    def __init__(self, train: list[Sample], embed: Callable[[list[str]], torch.Tensor]):
        self.train, self.embed = list(train), embed
        self._train_vectors = None

    def __call__(self, sample: Sample, k: int) -> list[Sample]:
        """The k most similar train rows, most similar last (next to the input); never the input itself."""
        import torch

        if self._train_vectors is None:
            self._train_vectors = self.embed([s.input_text for s in self.train])
        similarity = self._train_vectors @ self.embed([sample.input_text])[0]
        order = torch.argsort(similarity, descending=True, stable=True).tolist()  # ties: earlier train row first
        # A row scored on train (no val split) must not be its own example.
        nearest = [self.train[i] for i in order if self.train[i].key != sample.key][:k]
        return nearest[::-1]


def chooser(strategy: str, train: list[Sample], k: int, seed: int,
            nearest: NearestShots | None = None) -> tuple[Callable[[Sample], list[Sample]], list[Sample] | None]:
    """(examples for an input, the fixed examples or None when they differ per input)."""
    ids = {id(s) for s in train}

    def from_train(shots: list[Sample]) -> list[Sample]:
        if not all(id(s) in ids for s in shots):
            raise HarnessError(f"few-shot strategy {strategy!r} chose an example that is not a train row; "
                               f"examples may come from the train split only")
        return shots

    if k == 0:
        return (lambda sample: []), []
    if strategy == "nearest":
        if nearest is None:
            raise ValueError("strategy 'nearest' needs a NearestShots index of the train split")
        return (lambda sample: from_train(nearest(sample, k))), None
    fixed = from_train(balanced_shots(train, k, seed) if strategy == "balanced" else random_shots(train, k, seed))
    return (lambda sample: fixed), fixed
