"""Data: read a dataset file in any supported format into `Sample`s, check it, split it.

Formats (detected per row; one format per file):
  OpenAI chat     {"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}
  Anthropic       {"system": "...", "messages": [{"role": "user"|"assistant", "content": str | [blocks]}]}
  Alpaca          {"instruction": ..., "input": ..., "output": ...}
  classification  {"text": ..., "label": ...}
  OpenAI evals    {"input": [messages] | str, "ideal": str | [str, ...]}
  columns         any JSONL, CSV or TSV rows, read through a mapping: {"input": "question", "output": "answer"}

Every sample becomes prompt messages (optional system, then turns ending with the user)
plus the reference answer. Checks come in three groups, each a `Check` with a level (error
stops the experiment, warning is reported, info is a fact) and the file lines it concerns:

  load(path)               the file: encoding, JSON, schema, header rows (only what is wrong);
  quality_checks(data, t)  the samples: duplicates, near duplicates, labels, balance, size, PII;
  leakage_checks(splits)   val/test rows that repeat a train row, exactly or nearly.

`CHECKS` names every check; docs/data-checks.md says what each does. `split` drops exact
duplicates and keeps rows with the same input together, so no row sits on both sides.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import random
import re
import time
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from harness.errors import DataError

FORMATS = ("openai_chat", "anthropic", "alpaca", "classification", "openai_evals", "columns")
REQUIRED_KEYS = {"openai_chat": ("messages",), "anthropic": ("messages",), "alpaca": ("instruction", "output"),
                 "classification": ("text", "label"), "openai_evals": ("input", "ideal")}
MAX_CLASSIFICATION_LABELS = 20
MAX_LINE_BYTES = 1 << 16  # 64 KiB ~ 16k tokens at ~4 bytes a token: past the context of the models tuned here
CONFLICT_SIMILARITY = 0.9  # "nearly the same input" for label conflicts: stricter than a near duplicate
NEAR_THRESHOLD = 0.7  # Jaccard of 5-byte shingles; adding one word to a 60-character headline scores ~0.72

# Recommended rows (minimum, good) per task type, from common fine-tuning guides.
SIZE_GUIDE = {"classification": (50, 500), "extraction": (100, 1_000), "style": (200, 1_000),
              "domain": (500, 5_000), "code": (1_000, 10_000), "generation": (200, 1_000)}
TASKS = tuple(SIZE_GUIDE)

# Every check: name -> (level(s), what it finds). docs/data-checks.md documents each one.
CHECKS = {
    # load(): the file itself; reported only when something is wrong
    "bom": ("warning", "the file starts with a UTF-8 byte order mark (it is skipped)"),
    "invalid_utf8": ("error", "a line is not valid UTF-8, or escapes a lone surrogate"),
    "invalid_json": ("error", "a line is not one JSON value"),
    "nan_infinity": ("error", "a line uses NaN, Infinity or a number too large for a float"),
    "truncated_last_line": ("error", "the last line has no newline and does not parse: the file was cut off"),
    "long_line": ("warning", "a line is longer than MAX_LINE_BYTES"),
    "invalid_csv": ("error", "a CSV/TSV record has the wrong number of fields or broken quoting"),
    "missing_keys": ("error", "a row lacks a key its format (or the column mapping) requires"),
    "wrong_type": ("error", "a value has the wrong type (a label that is a list, content that is a number)"),
    "bad_role": ("error", "a message role is not allowed, or roles are in an impossible order"),
    "last_message": ("error", "a chat does not end with an assistant message"),
    "empty_content": ("error", "a message, an input or the answer is empty"),
    "mixed_formats": ("error", "rows of the file are in different formats"),
    "header_row": ("error", "a row repeats the column names (a CSV header, or files concatenated)"),
    # quality_checks(): the samples; every check reports, at level info when nothing is wrong
    "duplicates": ("warning", "rows equal to an earlier row after normalising case and spacing"),
    "near_duplicates": ("warning", "rows whose input nearly repeats an earlier row's (MinHash/LSH, verified)"),
    "label_conflicts": ("warning", "classification rows with the same or nearly the same input but different labels"),
    "unknown_label": ("error|warning", "labels outside the label set (error when the set is given, "
                                       "warning when inferred: labels seen fewer than 3 times)"),
    "class_balance": ("warning", "count per class; warns when largest/smallest > 3"),
    "size": ("warning", "unique rows against the recommended minimum for the task type"),
    "short_answers": ("warning", "answers too short to be real: no letters or digits, placeholders, "
                                 "or under a tenth of a long-form median"),
    "junk_rows": ("warning", "inputs that are not text: no letters or digits, placeholders, mojibake, "
                             "control characters"),
    "pii": ("warning", "e-mail addresses, phone numbers, Luhn-valid card numbers, national IDs, IP addresses"),
    # leakage_checks(): after splitting
    "leakage": ("error", "a val/test row's input equals a train row's input (after normalising)"),
    "near_leakage": ("warning", "a val/test row's input nearly equals a train row's input"),
}


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
        text = "\x1f".join(f"{r}:{_normalise(c)}" for r, c in self.turns) + "\x1e" + _normalise(self.answer)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @cached_property
    def norm_input(self) -> str:
        """The turns (no system message), lower-cased with spacing collapsed: rows with equal
        `norm_input` have the same input (leakage compares it; `split` keeps them on one side)."""
        return _normalise("\n".join(c for _, c in self.turns))

    @cached_property
    def _shingled(self) -> str:
        """`norm_input` with punctuation dropped too: what near-duplicate detection compares."""
        return _simplify(self.norm_input)


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


@dataclass
class Dataset:
    path: str
    format: str
    samples: list[Sample]
    sha256: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0  # time load() took

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


# ---------------------------------------------------------------------------------------------
# Text normalisation

_SPACES = re.compile(r"\s+")
_NON_WORD = re.compile(r"[\W_]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _normalise(text: str) -> str:
    return _SPACES.sub(" ", text.strip().lower())


def _simplify(text: str) -> str:
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


# ---------------------------------------------------------------------------------------------
# One row -> one Sample


class RowError(ValueError):
    """A row that cannot become a sample; `check` names the check it fails."""

    def __init__(self, check: str, message: str):
        super().__init__(message)
        self.check = check


def _text(content, where: str) -> str:
    """Message content as text: a string, or Anthropic/OpenAI content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content and all(isinstance(b, dict) for b in content):
        parts = [b.get("text") for b in content if b.get("type", "text") == "text"]
        if parts and all(isinstance(p, str) for p in parts):
            return "".join(parts)
    raise RowError("wrong_type", f"{where}: content must be a string or a list of text blocks "
                                 f"(got {type(content).__name__})")


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
    if not isinstance(raw, list):
        raise RowError("wrong_type", f"'{where}' must be a list of messages (got {type(raw).__name__})")
    if not raw:
        raise RowError("empty_content", f"'{where}' is an empty list")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RowError("missing_keys", f"{where}[{i}] needs 'role' and 'content'")
        if m["role"] not in allowed:
            raise RowError("bad_role", f"{where}[{i}] has role {m['role']!r}; expected one of {', '.join(allowed)}")
        out.append((m["role"], _text(m["content"], f"{where}[{i}]")))
    return out


def _string(row: dict, key: str, what: str | None = None) -> str:
    value = row[key]
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise RowError("wrong_type", f"'{key}'{what or ''} must be a string (got {type(value).__name__})")


def _from_columns(row: dict, columns: dict) -> tuple[list[tuple[str, str]], str]:
    for role, names in columns.items():
        for name in names:
            if name not in row:
                raise RowError("missing_keys", f"missing key {name!r} (column mapping {role}={'+'.join(names)})")
    values = {role: [_string(row, n, f" ({role}=)") for n in names] for role, names in columns.items()}
    prompt = [("user", "\n".join(values["input"]))]
    if "system" in values and "\n".join(values["system"]).strip():
        prompt.insert(0, ("system", "\n".join(values["system"])))
    return prompt, "\n".join(values["output"])


def to_sample(row: dict, fmt: str, line: int = 0, source: str = "", columns: dict | None = None) -> Sample:
    """Normalise one parsed row of a known format; `RowError` (a ValueError) says what is wrong."""
    if fmt in ("openai_chat", "anthropic"):
        allowed = ("user", "assistant") if fmt == "anthropic" else ("system", "user", "assistant")
        msgs = _messages(row["messages"], "messages", allowed)
        if fmt == "anthropic" and row.get("system"):
            msgs.insert(0, ("system", _text(row["system"], "system")))
        if msgs[-1][0] != "assistant":
            raise RowError("last_message", f"last message must be from the assistant (got {msgs[-1][0]!r})")
        prompt, answer = msgs[:-1], msgs[-1][1]
    elif fmt == "alpaca":
        instruction, answer = _string(row, "instruction"), _string(row, "output")
        extra = _string(row, "input") if row.get("input") is not None else ""
        prompt = [("user", instruction + (f"\n\n{extra}" if extra.strip() else ""))]
    elif fmt == "classification":
        if not isinstance(row["label"], (str, int, bool)):
            raise RowError("wrong_type", f"'label' must be a string or an integer (got {type(row['label']).__name__})")
        prompt, answer = [("user", _string(row, "text"))], str(row["label"])
    elif fmt == "openai_evals":
        raw = row["input"]
        prompt = [("user", raw)] if isinstance(raw, str) else _messages(raw, "input")
        ideal = row["ideal"]
        if isinstance(ideal, list):
            ideal = ideal[0] if ideal else None
        if not isinstance(ideal, str):
            raise RowError("wrong_type", "'ideal' must be a string or a non-empty list of strings")
        answer = ideal
    elif fmt == "columns":
        prompt, answer = _from_columns(row, columns or {})
    else:
        raise ValueError(f"unknown format {fmt!r}")
    if not prompt or prompt[-1][0] != "user":
        raise RowError("bad_role", "the prompt must end with a user message")
    if any(r == "system" for r, _ in prompt[1:]):
        raise RowError("bad_role", "a system message may only come first")
    if any(not c.strip() for _, c in prompt):
        raise RowError("empty_content", "a message has empty content")
    if not answer.strip():
        raise RowError("empty_content", "the answer is empty")
    for _, c in prompt + [("", answer)]:
        if bad := _SURROGATE.search(c):
            raise RowError("invalid_utf8", f"escaped lone surrogate \\u{ord(bad.group()):04x}: UTF-8 cannot encode it")
    return Sample(messages=tuple(prompt), answer=answer, line=line, source=source)


# ---------------------------------------------------------------------------------------------
# Column mappings

COLUMN_ROLES = ("input", "output", "system")


def parse_columns(text: str) -> dict[str, list[str]]:
    """'input=question+answer_a,output=correct_answer' -> {"input": [...], "output": [...]}."""
    mapping = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        role, sep, names = part.partition("=")
        if not sep:
            raise DataError(f"column mapping {part!r} needs role=column, e.g. input=question,output=right_answer")
        mapping[role.strip()] = names
    return column_mapping(mapping)


def column_mapping(columns: dict) -> dict[str, list[str]]:
    """Validate a mapping {role: column | [columns] | "a+b"}; several input columns are joined by newlines."""
    unknown = sorted(set(columns) - set(COLUMN_ROLES))
    if unknown or "input" not in columns or "output" not in columns:
        raise DataError(f"column mapping needs input= and output= (and optionally system=), got "
                        f"{', '.join(map(str, columns)) or 'nothing'}; e.g. input=question,output=right_answer")
    out = {}
    for role in COLUMN_ROLES:
        if role in columns:
            names = columns[role].split("+") if isinstance(columns[role], str) else list(columns[role])
            names = [n.strip() for n in names if isinstance(n, str) and n.strip()]
            if not names:
                raise DataError(f"column mapping {role}= names no column")
            out[role] = names
    return out


# ---------------------------------------------------------------------------------------------
# Reading files


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str):
    raise _NonFinite(f"{name} is not valid JSON; write null or a string")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NonFinite(f"{text} overflows a float; write it as a string")
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


class _Findings:
    """Lines per load-time check, with a note on what is wrong at each."""

    def __init__(self):
        self.lines: dict[str, list[int]] = defaultdict(list)
        self.notes: dict[str, dict[int, str]] = defaultdict(dict)

    def add(self, check: str, line: int, note: str) -> None:
        self.lines[check].append(line)
        if len(self.notes[check]) < 1000:
            self.notes[check][line] = note


def _jsonl_rows(raw: bytes, found: _Findings, max_line_bytes: int):
    """(line number, parsed value) for each non-blank line that parses; problems go to `found`."""
    lines = raw.split(b"\n")
    unterminated = len(lines) if lines[-1].strip() else None  # no newline after the last line
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if len(line) > max_line_bytes:
            found.add("long_line", number, f"{len(line):,} bytes")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            found.add("invalid_utf8", number, f"invalid UTF-8 byte 0x{line[e.start]:02x} at column {e.start + 1}")
            continue
        try:
            yield number, _DECODER.decode(text)
        except _NonFinite as e:
            found.add("nan_infinity", number, str(e))
        except (ValueError, RecursionError) as e:
            if number == unterminated:
                found.add("truncated_last_line", number, _truncated(f"{len(line):,} bytes, no newline"))
            else:
                found.add("invalid_json", number, f"{getattr(e, 'msg', e)} (column {getattr(e, 'colno', '?')})")


def _truncated(detail: str) -> str:
    return f"the file ends mid-row ({detail}); copy it again or delete the partial row"


def _csv_rows(raw: bytes, found: _Findings, max_line_bytes: int, delimiter: str, path: Path):
    """(first line number, {column: value}) per CSV/TSV record; line 1 is the header."""
    bad_lines = set()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        for number, line in enumerate(raw.split(b"\n"), start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                bad_lines.add(number)
                found.add("invalid_utf8", number, f"invalid UTF-8 byte 0x{line[e.start]:02x} at column {e.start + 1}")
        text = raw.decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except (StopIteration, csv.Error):
        return
    repeated = sorted(h for h, n in Counter(header).items() if n > 1)
    if repeated or not all(header):
        problem = f"repeated columns {', '.join(repeated)}" if repeated else "an empty column name"
        raise DataError(f"data file {path}: the header (line 1) has {problem}; give every column a unique name")
    ends_with_newline = text.endswith(("\n", "\r"))
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            if not ends_with_newline and reader.line_num >= text.count("\n"):
                found.add("truncated_last_line", start, _truncated(str(e)))
            else:
                found.add("invalid_csv", start, str(e))
            continue
        if not any(cell.strip() for cell in record):
            continue
        end = reader.line_num
        if bad_lines.intersection(range(start, end + 1)):
            continue
        if len(record) != len(header):
            problem = f"{len(record)} field(s) where the header has {len(header)}"
            if end >= text.count("\n") + 1 and not ends_with_newline and len(record) < len(header):
                found.add("truncated_last_line", start, _truncated(problem))
            else:
                found.add("invalid_csv", start, problem)
            continue
        if sum(map(len, record)) > max_line_bytes:
            found.add("long_line", start, f"{sum(map(len, record)):,} characters")
        yield start, dict(zip(header, record))


def _is_header(row: dict) -> bool:
    """A row whose values repeat its own column names: a CSV header, or two files concatenated."""
    names = {str(k).strip().casefold() for k in row}
    values = [v for v in row.values() if isinstance(v, str)]
    hits = sum(v.strip().casefold() in names for v in values)
    return hits >= 2 and hits * 2 >= len(values)


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"data file {path} not found; check the path in the spec (relative to the project root)")
    if not path.is_file():
        raise DataError(f"data file {path} is not a file; point to a .jsonl, .csv or .tsv file")
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"data file {path} cannot be read ({e.strerror or e}); check its permissions") from None


def load(path: str | Path, *, max_rows: int | None = None, columns: dict | None = None,
         max_line_bytes: int = MAX_LINE_BYTES) -> Dataset:
    """Read a JSONL, CSV or TSV file into a Dataset; rows that cannot be used become error-level checks.

    columns: a mapping {"input": column(s), "output": column, "system": column} for rows in no
    chat format (e.g. {"input": "question", "output": "right_answer"}); see `parse_columns`.
    """
    started = time.perf_counter()
    path = Path(path)
    raw = _read_bytes(path)
    sha = hashlib.sha256(raw).hexdigest()
    mapping = column_mapping(columns) if columns else None
    found = _Findings()
    if raw.startswith(b"\xef\xbb\xbf"):
        found.add("bom", 1, "UTF-8 byte order mark")
        raw = raw[3:]
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        rows = _csv_rows(raw, found, max_line_bytes, "\t" if suffix == ".tsv" else ",", path)
    else:
        if raw.lstrip()[:1] == b"[" and raw.lstrip().split(b"\n", 1)[0].strip() == b"[":
            raise DataError(f"data file {path} is one JSON array, not JSON Lines; write one object per line, "
                            f"e.g. jq -c '.[]' {path} > {path.stem}.jsonl")
        rows = _jsonl_rows(raw, found, max_line_bytes)

    kept: list[tuple[str, Sample]] = []
    unmatched: list[tuple[int, dict]] = []
    formats: Counter = Counter()
    seen_keys: Counter = Counter()
    for number, row in rows:
        if max_rows is not None and len(kept) >= max_rows:
            break
        if not isinstance(row, dict):
            found.add("wrong_type", number, f"a row must be a JSON object (got {type(row).__name__})")
            continue
        if _is_header(row):
            found.add("header_row", number, "its values repeat the column names")
            continue
        fmt = "columns" if mapping else detect_format(row)
        if fmt is None:
            unmatched.append((number, row))
            seen_keys.update(map(str, row))
            continue
        try:
            sample = to_sample(row, fmt, number, path.name, mapping)
        except RowError as e:
            found.add(e.check, number, str(e))
            continue
        formats[fmt] += 1
        kept.append((fmt, sample))

    if formats["anthropic"] and formats["openai_chat"]:
        # a chat without any system message is valid in both formats: it follows the file's rows that have one
        kept = [("anthropic" if f == "openai_chat" and s.system is None else f, s) for f, s in kept]
        formats = Counter(f for f, _ in kept)
    fmt = formats.most_common(1)[0][0] if formats else "unknown"
    if unmatched and not formats:
        keys = ", ".join(k for k, _ in seen_keys.most_common(8))
        raise DataError(f"data file {path}: no row is in a known format (keys seen: {keys}); map the columns, e.g. "
                        f"--columns input=question,output=answer (CLI) or load(path, columns={{...}})")
    for number, row in unmatched:
        missing = [k for k in REQUIRED_KEYS[fmt] if k not in row]
        found.add("missing_keys", number, f"missing key(s) {', '.join(map(repr, missing or REQUIRED_KEYS[fmt]))} "
                                          f"(the file is {fmt})")
    others = sorted(s.line for f, s in kept if f != fmt)
    checks = _load_checks(found, max_line_bytes)
    if others:
        checks.append(Check("mixed_formats", "error", f"rows in several formats {dict(formats)}; use one format per "
                                                      f"file (first other at line {others[0]})", others,
                            examples=[(n, "not " + fmt) for n in others[:50]]))
    samples = [s for f, s in kept if f == fmt]
    if not samples and not checks:
        raise DataError(f"data file {path} has no rows; add JSONL rows in one of the supported formats")
    return Dataset(str(path), fmt, samples, sha, checks, seconds=time.perf_counter() - started)


def _load_checks(found: _Findings, max_line_bytes: int) -> list[Check]:
    checks = []
    for name, lines in found.lines.items():
        lines = sorted(lines)
        notes = found.notes[name]
        first = min(notes)
        examples = sorted(notes.items())
        if name == "bom":
            message = "the file starts with a UTF-8 byte order mark; it is skipped (save as UTF-8 without BOM)"
        elif name == "long_line":
            examples.sort(key=lambda e: -int(re.sub(r"\D", "", e[1])))
            message = (f"{len(lines)} line(s) longer than {max_line_bytes:,} bytes (longest at line {examples[0][0]}, "
                       f"{examples[0][1]}); look for rows glued together or whole documents in one field")
        elif name == "header_row":
            message = (f"{len(lines)} header row(s) inside the data (first at line {first}: its values repeat the "
                       f"column names); delete them")
        else:
            message = f"{len(lines)} row(s) unusable; first at line {first}: {notes[first]}"
        checks.append(Check(name, CHECKS[name][0], message, lines, examples=examples))
    order = list(CHECKS)
    return sorted(checks, key=lambda c: order.index(c.name))


# ---------------------------------------------------------------------------------------------
# Near duplicates: MinHash over 5-byte shingles, LSH banding, exact verification

SHINGLE = 5          # bytes per shingle: short enough for headlines, long enough to be selective
BANDS, ROWS = 16, 4  # 64 MinHash values; a pair of similarity s becomes a candidate with probability
                     # 1-(1-s^4)^16: 0.9998 at s=0.8, 0.987 at 0.7, 0.64 at 0.5 (then verified exactly)
MAX_BUCKET = 64      # a band bucket bigger than this pairs each member with its next 64 only (sub-quadratic)
TEXT_BYTES = 1 << 22  # text shingled at a time: 4 MiB -> 32 MiB of 64-bit shingles
HASH_BLOCK = 1 << 15  # shingles hashed at a time: 32k x 64 hashes x 8 bytes = 16 MiB of scratch
_RNG = np.random.default_rng(0x5EED)
_MUL = _RNG.integers(1, 2**63, BANDS * ROWS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd multipliers
_ADD = _RNG.integers(0, 2**63, BANDS * ROWS, dtype=np.uint64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads 40-bit shingles over 64 bits (uint64 arithmetic wraps)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _signatures(encoded: list[bytes]) -> np.ndarray:
    """MinHash signature (uint32 x 64) of each text's set of 5-byte shingles."""
    sig = np.empty((len(encoded), BANDS * ROWS), np.uint32)
    i = 0
    while i < len(encoded):  # texts in slices of about TEXT_BYTES, to bound memory on big files
        j, size = i, 0
        while j < len(encoded) and (j == i or size + len(encoded[j]) <= TEXT_BYTES):
            size += len(encoded[j])
            j += 1
        _slice_signatures(encoded[i:j], sig[i:j])
        i = j
    return sig


def _slice_signatures(texts: list[bytes], out: np.ndarray) -> None:
    pad = bytes(SHINGLE - 1)  # zeros between texts: a shingle never spans two texts, a short text is zero-padded
    lens = np.fromiter(map(len, texts), np.int64, len(texts))
    buf = np.frombuffer(pad.join(texts) + bytes(2 * SHINGLE), np.uint8).astype(np.uint64)
    starts = np.cumsum(lens + SHINGLE - 1) - (lens + SHINGLE - 1)
    counts = np.maximum(lens - SHINGLE + 1, 1)  # a text shorter than a shingle is one (zero-padded) shingle
    offsets = np.cumsum(counts) - counts
    owner = np.repeat(np.arange(len(texts)), counts)
    pos = np.arange(counts.sum()) - offsets[owner] + starts[owner]
    window = buf[:len(buf) - SHINGLE].copy()
    for k in range(1, SHINGLE):  # the 5 bytes from each position, as one 40-bit integer
        window <<= np.uint64(8)
        window |= buf[k:len(buf) - SHINGLE + k]
    mixed = _mix(window[pos])
    total = len(mixed)
    # hash in blocks of whole texts, about HASH_BLOCK shingles each
    firsts = np.unique(np.searchsorted(offsets, np.arange(0, total, HASH_BLOCK), side="right") - 1)
    bounds = list(firsts) + [len(texts)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        lo, hi = offsets[a], offsets[b] if b < len(texts) else total
        hashed = np.multiply.outer(_MUL, mixed[lo:hi])  # (64, shingles): hash-major keeps reduceat fast
        hashed += _ADD[:, None]
        hashed >>= np.uint64(32)  # multiply-add-shift: the top 32 bits are the well-mixed ones
        out[a:b] = np.minimum.reduceat(hashed, offsets[a:b] - lo, axis=1).T


def _shingle_set(text: bytes) -> set[bytes]:
    return {text[i:i + SHINGLE] for i in range(max(1, len(text) - SHINGLE + 1))}


def _candidates(sig: np.ndarray) -> np.ndarray:
    """Pairs (i < j) that share at least one LSH band, as an (n, 2) array."""
    n = len(sig)
    wide = sig.astype(np.uint64)
    found = []
    for band in range(BANDS):
        c = wide[:, band * ROWS:(band + 1) * ROWS]
        high, low = (c[:, 0] << np.uint64(32)) | c[:, 1], (c[:, 2] << np.uint64(32)) | c[:, 3]
        key = high * np.uint64(0x9E3779B97F4A7C15) ^ low  # equal bands, equal keys; collisions are verified away
        order = np.argsort(key, kind="stable")
        sk = key[order]
        bounds = np.concatenate(([0], np.flatnonzero(sk[1:] != sk[:-1]) + 1, [n]))
        sizes = np.diff(bounds)
        pairs2 = bounds[:-1][sizes == 2]
        found.append(np.stack([order[pairs2], order[pairs2 + 1]], axis=1))
        for start, size in zip(bounds[:-1][sizes > 2], sizes[sizes > 2]):
            members = np.sort(order[start:start + size])
            if size <= MAX_BUCKET:
                a, b = np.triu_indices(size, 1)
            else:
                a = np.repeat(np.arange(size), MAX_BUCKET)
                b = a + np.tile(np.arange(1, MAX_BUCKET + 1), size)
                a, b = a[b < size], b[b < size]
            found.append(np.stack([members[a], members[b]], axis=1))
    pairs = np.concatenate(found) if found else np.empty((0, 2), np.int64)
    pairs = np.sort(pairs, axis=1)
    return np.unique(pairs[:, 0].astype(np.int64) * n + pairs[:, 1], return_inverse=False)


def near_pairs(texts: list[str], threshold: float = NEAR_THRESHOLD, side: list[int] | None = None
               ) -> list[tuple[int, int, float]]:
    """(i, j, similarity) with i < j for texts whose 5-byte-shingle Jaccard similarity >= threshold.

    MinHash signatures and LSH banding find candidate pairs in about linear time; each candidate is
    then verified with the exact Jaccard similarity. With `side`, only pairs across sides are kept.
    """
    if len(texts) < 2:
        return []
    encoded = [t.encode() for t in texts]
    sig = _signatures(encoded)
    codes = _candidates(sig)
    n = len(texts)
    a, b = codes // n, codes % n
    if side is not None:
        side_arr = np.asarray(side)
        keep = side_arr[a] != side_arr[b]
        a, b = a[keep], b[keep]
    # The signature estimate has a standard deviation of sqrt(s(1-s)/64) <= 0.0625; 0.15 below the
    # threshold keeps the true matches and drops the bulk of chance collisions before the exact check.
    keep = np.zeros(len(a), bool)
    for lo in range(0, len(a), 1 << 18):
        est = (sig[a[lo:lo + (1 << 18)]] == sig[b[lo:lo + (1 << 18)]]).mean(axis=1)
        keep[lo:lo + (1 << 18)] = est >= threshold - 0.15
    sets: dict[int, set[bytes]] = {}
    out = []
    for i, j in zip(a[keep].tolist(), b[keep].tolist()):
        si = sets.get(i) or sets.setdefault(i, _shingle_set(encoded[i]))
        sj = sets.get(j) or sets.setdefault(j, _shingle_set(encoded[j]))
        inter = len(si & sj)
        similarity = inter / (len(si) + len(sj) - inter)
        if similarity >= threshold:
            out.append((i, j, similarity))
    return out


# ---------------------------------------------------------------------------------------------
# Quality checks on samples


class _Rows:
    """What several checks share: exact-duplicate removal, inputs grouped by norm_input, near pairs."""

    def __init__(self, samples: list[Sample], threshold: float):
        self.samples, self.threshold = samples, threshold
        first: dict[str, Sample] = {}
        self.duplicates: list[tuple[Sample, Sample]] = []  # (row, the earlier row it copies)
        for s in samples:
            if s.key in first:
                self.duplicates.append((s, first[s.key]))
            else:
                first[s.key] = s
        self.unique = list(first.values())
        self.groups: dict[str, list[Sample]] = defaultdict(list)  # norm_input -> unique rows, in file order
        for s in self.unique:
            if s._shingled:
                self.groups[s.norm_input].append(s)

    @cached_property
    def near(self) -> dict[int, tuple[Sample, float]]:
        """line -> (the earlier row it most resembles, similarity) for rows that are not exact duplicates."""
        best: dict[int, tuple[Sample, float]] = {}

        def offer(row: Sample, twin: Sample, similarity: float):
            if row.line not in best or similarity > best[row.line][1]:
                best[row.line] = (twin, similarity)

        groups = list(self.groups.values())
        for group in groups:
            for row in group[1:]:
                offer(row, group[0], 1.0)
        for i, j, similarity in near_pairs([g[0]._shingled for g in groups], self.threshold):
            early, late = (groups[i], groups[j]) if groups[i][0].line < groups[j][0].line else (groups[j], groups[i])
            for row in late:
                offer(row, early[0], similarity)
        return best


def _examples(pairs, note) -> list[tuple[int, str]]:
    return [(row.line, note(row, twin, *rest)) for row, twin, *rest in pairs[:50]]


def _duplicates(rows: _Rows, task: str, labels) -> Check:
    dupes = rows.duplicates
    if not dupes:
        return Check("duplicates", "info", "no exact duplicates")
    first, twin = dupes[0]
    return Check("duplicates", "warning", f"{len(dupes)} exact duplicate row(s) (first at line {first.line}, a copy "
                                          f"of line {twin.line}); removed before splitting",
                 sorted(s.line for s, _ in dupes), {s.line: t.line for s, t in dupes},
                 _examples(dupes, lambda s, t: f"= line {t.line}"))


def _near_duplicates(rows: _Rows, task: str, labels) -> Check:
    near = rows.near
    if not near:
        return Check("near_duplicates", "info", f"no two inputs alike at similarity >= {rows.threshold:g}")
    worst = sorted(near.items(), key=lambda kv: (-kv[1][1], kv[0]))
    lines = sorted(near)
    by_line = {s.line: s for s in rows.unique}
    same = sum(1 for line, (twin, _) in near.items() if by_line[line].norm_input == twin.norm_input)
    first = lines[0]
    return Check("near_duplicates", "warning",
                 f"{len(near)} row(s) nearly repeat an earlier row's input (similarity >= {rows.threshold:g}; {same} "
                 f"with the very same input but another answer); first at line {first}, like line "
                 f"{near[first][0].line}; review them: they can leak across splits", lines,
                 {line: twin.line for line, (twin, _) in near.items()},
                 [(line, _likeness(by_line[line], twin, s)) for line, (twin, s) in worst[:50]])


def _likeness(row: Sample, twin: Sample, similarity: float) -> str:
    if row.norm_input == twin.norm_input:
        return f"same input as line {twin.line}, another answer"
    if similarity == 1.0:
        return f"~ line {twin.line} (differs only in punctuation)"
    return f"~ line {twin.line} (similarity {similarity:.2f})"


def _label_conflicts(rows: _Rows, task: str, labels) -> Check | None:
    if task != "classification":
        return None
    by_line = {s.line: s for s in rows.unique}
    conflicts = sorted((line, twin) for line, (twin, similarity) in rows.near.items()
                       if similarity >= CONFLICT_SIMILARITY and by_line[line].answer.strip() != twin.answer.strip())
    if not conflicts:
        return Check("label_conflicts", "info", f"no two inputs alike at similarity >= {CONFLICT_SIMILARITY:g} "
                                                f"carry different labels")
    line, twin = conflicts[0]
    return Check("label_conflicts", "warning",
                 f"{len(conflicts)} row(s) have the same or nearly the same input as an earlier row (similarity >= "
                 f"{CONFLICT_SIMILARITY:g}) but a different label: label noise, unless the inputs differ where it "
                 f"matters; first at line {line} ({by_line[line].answer.strip()!r}) vs line {twin.line} "
                 f"({twin.answer.strip()!r}); fix or drop one of each pair",
                 [line for line, _ in conflicts], {line: t.line for line, t in conflicts},
                 [(line, f"{by_line[line].answer.strip()!r} vs {t.answer.strip()!r} at line {t.line}")
                  for line, t in conflicts[:50]])


def _label_set(samples: list[Sample], labels) -> tuple[set[str], str]:
    """The allowed labels, and how they were chosen."""
    if labels is not None:
        allowed = {str(x).strip() for x in labels}
        return allowed, f"the label set {sorted(allowed)}"
    counts = Counter(s.answer.strip() for s in samples)
    # A label seen fewer than 3 times (or under 1% of an average class) is more likely a typo or a
    # stray row than a class: nothing can be learned or measured from one or two examples.
    floor = max(3, 0.01 * len(samples) / max(1, len(counts)))
    allowed = {label for label, n in counts.items() if n >= floor}
    return allowed, f"the labels seen at least {math.ceil(floor)} times {sorted(allowed)}"


def _unknown_label(rows: _Rows, task: str, labels) -> Check | None:
    if task != "classification" or not rows.samples:
        return None
    allowed, how = _label_set(rows.samples, labels)
    level = "error" if labels is not None else "warning"
    outside = [s for s in rows.samples if s.answer.strip() not in allowed]
    if not outside:
        return Check("unknown_label", "info", f"every label is in {how}")
    folded = {a.casefold(): a for a in allowed}

    def note(label: str) -> str:
        return f"{label!r}" + (f" (did you mean {folded[label.casefold()]!r}?)" if label.casefold() in folded else "")

    stray = Counter(s.answer.strip() for s in outside)
    listed = ", ".join(f"{note(label)} x{n}" for label, n in stray.most_common(5))
    fix = "fix those rows or the label set" if labels is not None else \
        "fix those rows, or pass labels=[...] if they are real"
    return Check("unknown_label", level, f"{len(outside)} row(s) have a label outside {how}: {listed} "
                                         f"(first at line {outside[0].line}); {fix}",
                 [s.line for s in outside], examples=[(s.line, note(s.answer.strip())) for s in outside[:50]])


def _class_balance(rows: _Rows, task: str, labels) -> Check | None:
    if task != "classification" or not rows.samples:
        return None
    allowed, _ = _label_set(rows.samples, labels)
    counts = Counter(s.answer.strip() for s in rows.samples if s.answer.strip() in allowed)
    if not counts:
        return None
    ratio = max(counts.values()) / min(counts.values())
    level = "warning" if ratio > 3 else "info"
    stray = sum(1 for s in rows.samples if s.answer.strip() not in allowed)
    aside = f" ({stray} row(s) outside the label set not counted)" if stray else ""
    return Check("class_balance", level, f"classes {dict(sorted(counts.items()))}; largest/smallest = "
                                         f"{ratio:.2f}{aside}")


def _size(rows: _Rows, task: str, labels) -> Check:
    n = len(rows.unique)
    minimum, good = SIZE_GUIDE[task]
    if n < minimum:
        return Check("size", "warning", f"{n:,} unique rows: below the {minimum:,} recommended as a minimum "
                                        f"for {task} ({good:,} is good)")
    verdict = "good" if n >= good else f"above the minimum, below the {good:,} that is good"
    return Check("size", "info", f"{n:,} unique rows ({task}: minimum {minimum:,}, good {good:,}): {verdict}")


PLACEHOLDERS = {"n a", "na", "null", "nan", "none", "undefined", "tbd", "todo", "xxx", "lorem ipsum", "placeholder",
                "test", "asdf", "answer", "output", "response", "text", "input", "label"}
# UTF-8 read as Latin-1/cp1252 ("Ã©" for "é", "â€™" for "’"), stray C1 controls, replacement characters
_MOJIBAKE = re.compile("Ã[\u0080-\u00bf]|â€|Â[\u00a0-\u00bf]|[\u0080-\u009f]|\ufffd")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ALNUM = re.compile(r"[^\W_]")


def _mojibake(found: str) -> str:
    if len(found) == 1 and 0x80 <= ord(found) <= 0x9f:
        try:
            meant = bytes([ord(found)]).decode("cp1252")
        except UnicodeDecodeError:
            return f"control character U+{ord(found):04X}: text decoded with the wrong encoding"
        return f"control character U+{ord(found):04X}: a cp1252 {meant!r} decoded as Latin-1"
    return f"mojibake {found!r}: UTF-8 decoded with the wrong encoding"


def _short_answers(rows: _Rows, task: str, labels) -> Check | None:
    if task == "classification" or not rows.samples:
        return None
    words = sorted(len(s.answer.split()) for s in rows.samples)
    median = words[len(words) // 2]
    # Long-form tasks (median >= 20 words): an answer under a tenth of the median is a stub, not an answer.
    floor = median / 10 if median >= 20 else 0
    found = []
    for s in rows.samples:
        answer = s.answer.strip()
        if not _ALNUM.search(answer):
            found.append((s, "no letters or digits"))
        elif _simplify(answer) in PLACEHOLDERS:
            found.append((s, "a placeholder"))
        elif len(answer.split()) < floor:
            found.append((s, f"{len(answer.split())} word(s); the median answer has {median}"))
    if not found:
        return Check("short_answers", "info", f"no answer too short to be real (median {median} words)")
    return Check("short_answers", "warning", f"{len(found)} answer(s) too short to be real answers (first at line "
                                             f"{found[0][0].line}: {found[0][0].answer.strip()!r}, {found[0][1]})",
                 [s.line for s, _ in found], examples=[(s.line, f"{s.answer.strip()[:40]!r}: {why}")
                                                       for s, why in found[:50]])


def _junk_rows(rows: _Rows, task: str, labels) -> Check:
    found = []
    for s in rows.samples:
        text = "\n".join(c for _, c in s.turns)
        if not _ALNUM.search(text):
            found.append((s, "no letters or digits"))
        elif s.norm_input in PLACEHOLDERS:
            found.append((s, "a placeholder"))
        elif m := _MOJIBAKE.search(text):
            found.append((s, _mojibake(m.group())))
        elif m := _CONTROL.search(text):
            found.append((s, f"control character U+{ord(m.group()):04X}"))
    if not found:
        return Check("junk_rows", "info", "every input looks like text")
    return Check("junk_rows", "warning", f"{len(found)} input(s) are not real text (first at line {found[0][0].line}: "
                                         f"{found[0][1]}); fix or drop them",
                 [s.line for s, _ in found], examples=[(s.line, why) for s, why in found[:50]])


# ---------------------------------------------------------------------------------------------
# Personal data

_PII = re.compile(r"""
    (?P<email>\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b)
  | (?P<credit_card>(?<![\d.,-])\d(?:[ -]?\d){12,18}(?![\d.,]?\d))
  | (?P<national_id>(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])                            # US SSN
                   | \b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\ ?\d{2}\ ?\d{2}\ ?\d{2}\ ?[A-D]\b)  # UK NI number
  | (?P<ip>(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.]))
  | (?P<phone>(?<![\w+])\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}(?!\d)        # international, with +
             | (?<![\w(])(?:\(\d{3}\)\ ?|\d{3}[.-])\d{3}[ .-]\d{4}(?!\d))              # North American
""", re.X)
PII_KINDS = ("email", "phone", "credit_card", "national_id", "ip")
_PII_HINT = re.compile(r"@|\d\D?\d")  # every kind above has an @ or two digits at most one character apart


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _valid(kind: str, value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    if kind == "credit_card":  # issuer prefixes (Visa, Mastercard, Amex, Discover, ...) and the Luhn checksum
        return 13 <= len(digits) <= 19 and re.match(r"4|5[1-5]|2[2-7]|3[47]|6(?:011|5)", digits) is not None \
            and _luhn(digits)
    if kind == "national_id" and value[0].isdigit():  # SSNs never start 000, 666 or 9xx, nor have 00 or 0000 parts
        return not (digits[:3] in ("000", "666") or digits[0] == "9" or digits[3:5] == "00" or digits[5:] == "0000")
    if kind == "phone":
        if value.startswith("+"):
            return 8 <= len(digits) <= 15
        return digits[0] in "23456789" and digits[3] in "23456789"  # NANP area code and exchange start 2-9
    return True


def find_pii(text: str) -> list[tuple[str, str]]:
    """(kind, value) for each e-mail, phone, card (Luhn-checked), national ID and IP address in `text`."""
    return [(m.lastgroup, m.group()) for m in _PII.finditer(text) if _valid(m.lastgroup, m.group())]


def redact(text: str) -> str:
    """`text` with each piece of personal data replaced by its kind, e.g. [EMAIL]."""
    return _redact(text)[0]


def _redact(text: str) -> tuple[str, int]:
    count = 0

    def replace(m: re.Match) -> str:
        nonlocal count
        if not _valid(m.lastgroup, m.group()):
            return m.group()
        count += 1
        return f"[{m.lastgroup.upper()}]"

    return _PII.sub(replace, text), count


def _pii(rows: _Rows, task: str, labels) -> Check:
    kinds: Counter = Counter()
    found = []
    cache: dict[str, list[str]] = {}  # a system prompt repeated on every row is scanned once

    def scan(text: str) -> list[str]:
        if text not in cache:
            cache[text] = [kind for kind, _ in find_pii(text)] if _PII_HINT.search(text) else []
        return cache[text]

    for s in rows.samples:
        hits = [kind for _, c in s.messages + (("", s.answer),) for kind in scan(c)]
        if hits:
            kinds.update(hits)
            found.append((s, Counter(hits)))
    if not found:
        return Check("pii", "info", "no e-mail, phone, card, national ID or IP address found")
    counts = ", ".join(f"{k} {kinds[k]}" for k in PII_KINDS if kinds[k])
    return Check("pii", "warning", f"{len(found)} row(s) hold personal data: {counts} (first at line "
                                   f"{found[0][0].line}); redact with `harness data check FILE --redact OUT`",
                 [s.line for s, _ in found], examples=[(s.line, ", ".join(f"{k} x{n}" for k, n in c.items()))
                                                       for s, c in found[:50]])


def redact_file(path: str | Path, out: str | Path) -> int:
    """Write a copy of a JSONL/CSV/TSV file with personal data replaced in every string; returns the count."""
    path, out = Path(path), Path(out)
    if out.resolve() == path.resolve():
        raise DataError(f"--redact {out} would overwrite the file being checked; write the copy elsewhere")
    raw = _read_bytes(path).decode("utf-8", errors="replace")
    count = 0

    def clean(value):
        nonlocal count
        if isinstance(value, str):
            new, n = _redact(value)
            count += n
            return new
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    if path.suffix.lower() in (".csv", ".tsv"):
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
        for i, record in enumerate(csv.reader(io.StringIO(raw, newline=""), delimiter=delimiter)):
            writer.writerow(record if i == 0 else [clean(c) for c in record])
        text = buffer.getvalue()
    else:
        lines = []
        for line in raw.split("\n"):
            before = count
            try:
                cleaned = clean(json.loads(line)) if line.strip() else None
            except ValueError:
                cleaned = None  # unusable rows are copied as they are; the checks report them
            # only rows that held personal data are rewritten; every other line stays byte for byte
            lines.append(json.dumps(cleaned, ensure_ascii=False) if count > before else line)
        text = "\n".join(lines)
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot write the redacted copy to {out} ({e.strerror or e})") from None
    return count


QUALITY_CHECKS = (_duplicates, _near_duplicates, _label_conflicts, _unknown_label, _class_balance, _size,
                  _short_answers, _junk_rows, _pii)


def quality_checks(dataset: Dataset, task: str, *, labels: list[str] | None = None,
                   near_threshold: float = NEAR_THRESHOLD) -> list[Check]:
    """Checks on the parsed samples; each applicable check reports once, at level info when clean.

    labels: the allowed label set for classification; rows outside it are errors. Without it the
    set is inferred and stray labels are warnings.
    """
    if task not in SIZE_GUIDE:
        raise DataError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    rows = _Rows(dataset.samples, near_threshold)
    checks = []
    for check in QUALITY_CHECKS:
        started = time.perf_counter()
        result = check(rows, task, labels)
        if result is not None:
            result.seconds = time.perf_counter() - started
            checks.append(result)
    return checks


def leakage_checks(splits: Splits, *, near_threshold: float = NEAR_THRESHOLD) -> list[Check]:
    """Val/test rows whose input repeats a train row's: exactly (error) or nearly (warning).

    `lines` are the offending val/test rows; `twins` maps each to its train twin's line.
    """
    started = time.perf_counter()
    train: dict[str, Sample] = {}
    for s in splits.train:
        if s._shingled:
            train.setdefault(s.norm_input, s)
    held = [(part, s) for part in ("val", "test") for s in getattr(splits, part) if s._shingled]
    exact = [(part, s, train[s.norm_input]) for part, s in held if s.norm_input in train]
    where = lambda part, s, t: f"{part} line {s.line} ({s.source})" if s.source != t.source else f"{part} line {s.line}"
    checks = []
    if exact:
        part, s, t = exact[0]
        checks.append(Check("leakage", "error", f"{len(exact)} val/test row(s) repeat a train row's input (first: "
                                                f"{where(part, s, t)} = train line {t.line}); the score would "
                                                f"measure memory; drop them from val/test",
                            sorted(s.line for _, s, _ in exact), {s.line: t.line for _, s, t in exact},
                            [(s.line, f"{part}, = train line {t.line}") for part, s, t in exact[:50]]))
    else:
        checks.append(Check("leakage", "info", f"no val/test row repeats a train input ({len(held):,} checked)"))
    checks[-1].seconds = time.perf_counter() - started
    started = time.perf_counter()
    rest = [(part, s) for part, s in held if s.norm_input not in train]
    train_rows = list(train.values())
    texts = [s._shingled for s in train_rows] + [s._shingled for _, s in rest]
    side = [0] * len(train_rows) + [1] * len(rest)
    best: dict[tuple[str, int], tuple[str, Sample, Sample, float]] = {}  # (split, line): val and test may be files
    for i, j, similarity in near_pairs(texts, near_threshold, side):
        part, s = rest[j - len(train_rows)]
        t = train_rows[i]
        if (part, s.line) not in best or similarity > best[part, s.line][3]:
            best[part, s.line] = (part, s, t, similarity)
    if best:
        worst = sorted(best.values(), key=lambda x: -x[3])
        part, s, t, _ = min(best.values(), key=lambda x: x[1].line)
        checks.append(Check("near_leakage", "warning",
                            f"{len(best)} val/test row(s) nearly repeat a train row's input (similarity >= "
                            f"{near_threshold:g}; first: {where(part, s, t)} ~ train line {t.line})",
                            sorted({line for _, line in best}), {s.line: t.line for _, s, t, _ in best.values()},
                            [(s.line, f"{part}, ~ train line {t.line} (similarity {sim:.2f})")
                             for part, s, t, sim in worst[:50]]))
    else:
        checks.append(Check("near_leakage", "info", f"no val/test input alike a train input at similarity >= "
                                                    f"{near_threshold:g}"))
    checks[-1].seconds = time.perf_counter() - started
    return checks


# ---------------------------------------------------------------------------------------------
# Task, split, hashes


def infer_task(samples: list[Sample]) -> str:
    """Classification when the answers are a small set of short labels, each seen more than once.

    Labels seen only once may make up 1% of the rows (a typo must not turn a classification file
    into a generation task; the unknown_label check reports those rows).
    """
    counts = Counter(s.answer.strip() for s in samples)
    common = {a: n for a, n in counts.items() if n >= 2}
    strays = len(samples) - sum(common.values())
    if 1 < len(common) <= MAX_CLASSIFICATION_LABELS and strays <= 0.01 * len(samples) \
            and all(len(a.split()) <= 3 for a in common):
        return "classification"
    return "generation"


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
    """Deduplicate, then split seeded (stratified by answer for classification).

    Exact duplicates are dropped first (the first copy stays); rows that share an input after
    normalising (same text, different label or punctuation) move as one unit, so no input sits
    on both sides. Sizes count units; a unit of several rows lands whole in one split.
    """
    unique = list({s.key: s for s in reversed(samples)}.values())[::-1]  # keep the first of each duplicate
    units: dict[str, list[Sample]] = {}
    for s in unique:
        units.setdefault(s.norm_input, []).append(s)
    n_train, n_val, n_test = _counts(len(units), fractions)
    if n_train < 1 or n_test < 1:
        raise DataError(f"{len(units)} unique rows are too few to split into train/val/test {fractions}")
    rng = random.Random(seed)
    groups: dict[str, list[list[Sample]]] = defaultdict(list)
    for unit in units.values():
        groups[unit[0].answer.strip() if stratify else ""].append(unit)
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
    flat = lambda part: [s for unit in part for s in unit]
    train, val, test = flat(train[:n_train]), flat(val), flat(test)
    return Splits(train, val, test, content_hash(test))


def content_hash(samples: list[Sample]) -> str:
    h = hashlib.sha256()
    for s in samples:
        h.update(s.key.encode())
    return h.hexdigest()


def labels(samples: list[Sample]) -> list[str]:
    return sorted({s.answer.strip() for s in samples})
