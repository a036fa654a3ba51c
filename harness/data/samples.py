"""The data model: a `Sample` (one example), a `Check` (one finding), a `Dataset` (one file read),
`Splits` (train, val and test); and the text normalisation that decides when two rows are the same.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property

_SPACES = re.compile(r"\s+")
_NON_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """Lower-cased, spacing collapsed: what exact duplicates and leakage compare."""
    return _SPACES.sub(" ", text.strip().lower())


def simplify(text: str) -> str:
    """Case-folded with punctuation dropped too: what near-duplicate detection compares."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


@dataclass(frozen=True)
class Sample:
    """One example: the conversation up to the answer, and the reference answer."""

    messages: tuple[tuple[str, str], ...]  # (role, content), system first if present, ends with user
    answer: str
    line: int = 0
    source: str = ""

    @property
    def system(self) -> str | None:
        return self.messages[0][1] if self.messages and self.messages[0][0] == "system" else None

    @property
    def turns(self) -> tuple[tuple[str, str], ...]:
        """The conversation without its system message."""
        return self.messages[1:] if self.system is not None else self.messages

    @property
    def input_text(self) -> str:
        """The last user message: what a person would call the input."""
        return self.messages[-1][1]

    @cached_property
    def key(self) -> str:
        """Content hash of the normalised turns and answer: equal rows have equal keys."""
        text = "\x1f".join(f"{r}:{normalise(c)}" for r, c in self.turns) + "\x1e" + normalise(self.answer)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @cached_property
    def norm_input(self) -> str:
        """The turns (no system message), lower-cased with spacing collapsed: rows with equal
        `norm_input` have the same input (leakage compares it; `split` keeps them on one side)."""
        return normalise("\n".join(c for _, c in self.turns))

    @cached_property
    def simplified_input(self) -> str:
        """`norm_input` with punctuation dropped too: what near-duplicate detection compares."""
        return simplify(self.norm_input)


@dataclass
class Check:
    """One finding. `lines` are the file lines it concerns (ascending); `twins` maps a line to the
    earlier (or train) line it repeats; `examples` are the worst lines first, with what is wrong there."""

    name: str
    level: str  # "error" stops the experiment, "warning" is reported, "info" is a fact
    message: str
    lines: list[int] = field(default_factory=list)
    twins: dict[int, int] = field(default_factory=dict)
    examples: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0


_LINE = re.compile(r"\bline\b")


def in_units(check: Check, unit: str) -> Check:
    """The check worded in the data's unit: the checks count file lines, a table's numbers are rows."""
    if unit != "line":
        check.message = _LINE.sub(unit, check.message)
        check.examples = [(n, _LINE.sub(unit, note)) for n, note in check.examples]
    return check


@dataclass
class Dataset:
    path: str
    format: str
    samples: list[Sample]
    sha256: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0  # time load() took
    unit: str = "line"  # what a Check's numbers count: file lines, or rows of a table (Parquet, datasets)

    @property
    def errors(self) -> list[Check]:
        return [c for c in self.checks if c.level == "error"]


@dataclass
class Splits:
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    test_sha256: str  # sealed: the content hash of the test split, recorded with every run

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}
