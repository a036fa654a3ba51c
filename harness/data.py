"""Data: read a JSONL file in any supported format into `Sample`s, check it, split it.

Formats (detected per row; one format per file):
  OpenAI chat     {"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}
  Anthropic       {"system": "...", "messages": [{"role": "user"|"assistant", "content": str | [blocks]}]}
  Alpaca          {"instruction": ..., "input": ..., "output": ...}
  classification  {"text": ..., "label": ...}
  OpenAI evals    {"input": [messages] | str, "ideal": str | [str, ...]}

Every sample becomes prompt messages (optional system, then turns ending with the user)
plus the reference answer. Exact duplicates are dropped before splitting, so no row can
sit on both sides of a split; the test split's content hash is recorded ("sealed").
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import DataError

FORMATS = ("openai_chat", "anthropic", "alpaca", "classification", "openai_evals")
MAX_CLASSIFICATION_LABELS = 20


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

    @property
    def key(self) -> str:
        """Content hash of the normalised turns and answer: equal rows have equal keys."""
        text = "\x1f".join(f"{r}:{_normalise(c)}" for r, c in self.turns) + "\x1e" + _normalise(self.answer)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Check:
    name: str
    level: str  # "error" stops the experiment, "warning" is reported, "info" is a fact
    message: str
    lines: list[int] = field(default_factory=list)


@dataclass
class Dataset:
    path: str
    format: str
    samples: list[Sample]
    sha256: str
    checks: list[Check] = field(default_factory=list)

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


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def _text(content, where: str) -> str:
    """Message content as text: a string, or Anthropic/OpenAI content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        parts = [b.get("text") for b in content if b.get("type", "text") == "text"]
        if all(isinstance(p, str) for p in parts) and parts:
            return "".join(parts)
    raise ValueError(f"{where}: content must be a string or a list of text blocks")


def detect_format(row: dict) -> str | None:
    if "messages" in row:
        return "anthropic" if "system" in row else "openai_chat"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "text" in row and "label" in row:
        return "classification"
    if "input" in row and "ideal" in row:
        return "openai_evals"
    return None


def _messages(raw, where: str, allowed=("system", "user", "assistant")) -> list[tuple[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{where} must be a non-empty list of messages")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"{where}[{i}] needs 'role' and 'content'")
        if m["role"] not in allowed:
            raise ValueError(f"{where}[{i}] has role {m['role']!r}; expected one of {', '.join(allowed)}")
        out.append((m["role"], _text(m["content"], f"{where}[{i}]")))
    return out


def to_sample(row: dict, fmt: str, line: int = 0, source: str = "") -> Sample:
    """Normalise one parsed row of a known format; ValueError says which field is wrong."""
    if fmt in ("openai_chat", "anthropic"):
        allowed = ("user", "assistant") if fmt == "anthropic" else ("system", "user", "assistant")
        msgs = _messages(row["messages"], "messages", allowed)
        if fmt == "anthropic" and row.get("system"):
            msgs.insert(0, ("system", _text(row["system"], "system")))
        if msgs[-1][0] != "assistant":
            raise ValueError(f"last message must be from the assistant (got {msgs[-1][0]!r})")
        prompt, answer = msgs[:-1], msgs[-1][1]
    elif fmt == "alpaca":
        for key in ("instruction", "output"):
            if not isinstance(row[key], str):
                raise ValueError(f"'{key}' must be a string")
        extra = row.get("input") or ""
        if not isinstance(extra, str):
            raise ValueError("'input' must be a string")
        prompt = [("user", row["instruction"] + (f"\n\n{extra}" if extra.strip() else ""))]
        answer = row["output"]
    elif fmt == "classification":
        if not isinstance(row["text"], str):
            raise ValueError("'text' must be a string")
        if not isinstance(row["label"], (str, int, bool)):
            raise ValueError("'label' must be a string or an integer")
        prompt, answer = [("user", row["text"])], str(row["label"])
    elif fmt == "openai_evals":
        raw = row["input"]
        prompt = [("user", raw)] if isinstance(raw, str) else _messages(raw, "input")
        ideal = row["ideal"]
        if isinstance(ideal, list):
            ideal = ideal[0] if ideal else None
        if not isinstance(ideal, str):
            raise ValueError("'ideal' must be a string or a non-empty list of strings")
        answer = ideal
    else:
        raise ValueError(f"unknown format {fmt!r}")
    if not prompt or prompt[-1][0] != "user":
        raise ValueError("the prompt must end with a user message")
    if any(r == "system" for r, _ in prompt[1:]):
        raise ValueError("a system message may only come first")
    if any(not c.strip() for _, c in prompt):
        raise ValueError("a message has empty content")
    if not answer.strip():
        raise ValueError("the answer is empty")
    return Sample(messages=tuple(prompt), answer=answer, line=line, source=source)


def load(path: str | Path, *, max_rows: int | None = None) -> Dataset:
    """Read a JSONL file into a Dataset; rows that cannot be used become error-level checks."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} not found; check the path in the spec (relative to the project root)")
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    checks: list[Check] = []
    if raw.startswith(b"\xef\xbb\xbf"):
        checks.append(Check("bom", "warning", "file starts with a UTF-8 byte order mark; it is ignored", [1]))
        raw = raw[3:]
    samples: list[Sample] = []
    bad: dict[str, list[int]] = defaultdict(list)
    first_problem: dict[str, str] = {}
    formats: Counter = Counter()
    format_lines: dict[str, list[int]] = defaultdict(list)
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if max_rows is not None and len(samples) >= max_rows:
            break
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            bad["invalid_utf8"].append(number)
            first_problem.setdefault("invalid_utf8", f"invalid UTF-8 at byte {e.start}")
            continue
        try:
            row = json.loads(text, parse_constant=_refuse_constant)
        except (json.JSONDecodeError, ValueError) as e:
            bad["invalid_json"].append(number)
            first_problem.setdefault("invalid_json", str(e).split(":")[0] if "NaN" not in str(e) else str(e))
            continue
        fmt = detect_format(row) if isinstance(row, dict) else None
        if fmt is None:
            bad["schema"].append(number)
            first_problem.setdefault("schema", "row matches no known format (needs messages, instruction/output, "
                                               "text/label or input/ideal)")
            continue
        try:
            sample = to_sample(row, fmt, number, path.name)
        except (ValueError, KeyError) as e:
            bad["schema"].append(number)
            first_problem.setdefault("schema", str(e))
            continue
        formats[fmt] += 1
        format_lines[fmt].append(number)
        samples.append(sample)
    for name, lines in bad.items():
        checks.append(Check(name, "error", f"{len(lines)} row(s) unusable; first at line {lines[0]}: "
                                           f"{first_problem[name]}", lines))
    fmt = formats.most_common(1)[0][0] if formats else "unknown"
    if len(formats) > 1:
        others = sorted(line for f, ls in format_lines.items() if f != fmt for line in ls)
        checks.append(Check("mixed_formats", "error", f"rows in several formats {dict(formats)}; use one format "
                                                      f"per file (first other at line {others[0]})", others))
    if not samples and not bad:
        raise DataError(f"data file {path} has no rows; add JSONL rows in one of the supported formats")
    return Dataset(str(path), fmt, samples, sha, checks)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def infer_task(samples: list[Sample]) -> str:
    """Classification when the answers are a small set of short labels, each seen more than once."""
    counts = Counter(s.answer.strip() for s in samples)
    if 1 < len(counts) <= MAX_CLASSIFICATION_LABELS and min(counts.values()) >= 2 \
            and all(len(a.split()) <= 3 for a in counts):
        return "classification"
    return "generation"


# Recommended sizes (minimum, good) per task type, from common fine-tuning guides.
SIZE_GUIDE = {"classification": (50, 500), "generation": (200, 1000)}


def quality_checks(data: Dataset, task: str) -> list[Check]:
    """Checks on the parsed samples: duplicates, class balance, size."""
    checks = []
    seen: dict[str, int] = {}
    dupes = []
    for s in data.samples:
        if s.key in seen:
            dupes.append(s.line)
        else:
            seen[s.key] = s.line
    if dupes:
        checks.append(Check("duplicates", "warning", f"{len(dupes)} exact duplicate row(s) (first at line "
                                                     f"{dupes[0]}); removed before splitting", dupes))
    n = len(seen)
    minimum, good = SIZE_GUIDE[task]
    if n < minimum:
        checks.append(Check("size", "warning", f"{n} unique rows: below the {minimum} recommended as a minimum "
                                               f"for {task} ({good} is good)"))
    else:
        checks.append(Check("size", "info", f"{n} unique rows ({task}: minimum {minimum}, good {good})"))
    if task == "classification":
        counts = Counter(s.answer.strip() for s in data.samples)
        ratio = max(counts.values()) / min(counts.values())
        level = "warning" if ratio > 3 else "info"
        checks.append(Check("class_balance", level, f"classes {dict(sorted(counts.items()))}; "
                                                    f"largest/smallest = {ratio:.2f}"))
    return checks


def _counts(n: int, split: tuple) -> tuple[int, int, int]:
    if all(isinstance(x, int) for x in split):
        train, val, test = split
        if train + val + test > n:
            raise DataError(f"split asks for {train}+{val}+{test} rows but the data has {n} unique rows")
        return train, val, test
    test = max(1, round(n * split[2]))
    val = round(n * split[1])
    return n - val - test, val, test


def _allocate(total: int, sizes: dict[str, int]) -> dict[str, int]:
    """Share `total` across groups in proportion to their sizes (largest remainder)."""
    n = sum(sizes.values())
    exact = {k: total * v / n for k, v in sizes.items()}
    out = {k: int(x) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - out[k], reverse=True)[:total - sum(out.values())]:
        out[k] += 1
    return out


def split(samples: list[Sample], fractions: tuple, *, seed: int, stratify: bool) -> Splits:
    """Deduplicate, then split seeded (stratified by answer for classification)."""
    unique = list({s.key: s for s in reversed(samples)}.values())[::-1]  # keep the first of each duplicate
    n_train, n_val, n_test = _counts(len(unique), fractions)
    if n_train < 1 or n_test < 1:
        raise DataError(f"{len(unique)} unique rows are too few to split into train/val/test {fractions}")
    rng = random.Random(seed)
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in unique:
        groups[s.answer.strip() if stratify else ""].append(s)
    sizes = {k: len(v) for k, v in sorted(groups.items())}
    test_n, val_n = _allocate(n_test, sizes), _allocate(n_val, sizes)
    train, val, test = [], [], []
    for label, group in sorted(groups.items()):
        rng.shuffle(group)
        t, v = test_n[label], val_n[label]
        test += group[:t]
        val += group[t:t + v]
        train += group[t + v:]
    for part in (train, val, test):
        rng.shuffle(part)
    return Splits(train[:n_train], val, test, content_hash(test))


def content_hash(samples: list[Sample]) -> str:
    h = hashlib.sha256()
    for s in samples:
        h.update(s.key.encode())
    return h.hexdigest()


def labels(samples: list[Sample]) -> list[str]:
    return sorted({s.answer.strip() for s in samples})
