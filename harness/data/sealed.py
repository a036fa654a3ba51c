"""The sealed test split: unreadable until final scoring.

Everything that selects (few-shot examples, the best baseline, early stopping, sweep
trials) runs on train and validation first; only then does the pipeline open the test
split, once, to score what was already chosen. Reading it any earlier raises, so a
selection step that reaches for test rows fails loudly instead of leaking.
"""
from __future__ import annotations

from harness.errors import HarnessError


class SealedError(HarnessError):
    """Something tried to read the test split before selection was finished."""


class SealedSplit:
    def __init__(self, rows: list, sha256: str):
        self._rows = list(rows)
        self.sha256 = sha256  # recorded with every run: the same hash means the same test rows
        self.opened_for: str | None = None

    def __len__(self) -> int:
        return len(self._rows)  # its size is no secret

    def open(self, purpose: str) -> list:
        """The rows, for final scoring only; records why it was opened."""
        self.opened_for = purpose
        return list(self._rows)

    def _refuse(self, *_):
        raise SealedError("the test split is sealed until final scoring: few-shot examples, picking the best "
                          "baseline, early stopping and sweeps may read only train and val")

    __iter__ = __getitem__ = __contains__ = _refuse

    def __add__(self, other):
        self._refuse()

    __radd__ = __add__
