"""Reading data into a `Dataset`: `load` takes a JSONL, CSV or TSV file, or a table (a Parquet
file, a `save_to_disk` folder or a `datasets.Dataset`: harness/data/tables.py).

Text files are parsed line by line, so every problem is reported with its line: a byte order mark,
invalid UTF-8 or an escaped lone surrogate, NaN and Infinity, a file cut off mid-row, lines too
long, broken CSV quoting, rows in no format or in several, header rows inside the data. Rows
that cannot be used become error-level checks (`FILE_CHECKS`) instead of stopping the read.
A table's rows go through the same checks, numbered by row.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

from harness.data import tables
from harness.data.formats import REQUIRED_KEYS, RowError, column_mapping, detect_format, to_sample
from harness.data.samples import Check, Dataset, Sample, in_units
from harness.errors import DataError

MAX_LINE_BYTES = 1 << 16  # 64 KiB ~ 16k tokens at ~4 bytes a token: past the context of the models tuned here

# The checks load() runs on the file itself, reported only when something is wrong:
# name -> (level, what it finds). docs/data-checks.md documents each one.
FILE_CHECKS = {
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
}


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


def is_header_row(row: dict) -> bool:
    """A row whose values repeat its own column names: a CSV header, or two files concatenated."""
    names = {str(k).strip().casefold() for k in row}
    values = [v for v in row.values() if isinstance(v, str)]
    hits = sum(v.strip().casefold() in names for v in values)
    return hits >= 2 and hits * 2 >= len(values)


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or a DataError that says why it cannot be read."""
    if not path.exists():
        raise DataError(f"data file {path} not found; check the path in the spec (relative to the project root)")
    if not path.is_file():
        raise DataError(f"data file {path} is not a file; point to a .jsonl, .csv, .tsv or .parquet file, or a "
                        f"folder written by Dataset.save_to_disk")
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"data file {path} cannot be read ({e.strerror or e}); check its permissions") from None


def load(source, *, max_rows: int | None = None, columns: dict | None = None,
         max_line_bytes: int = MAX_LINE_BYTES) -> Dataset:
    """Read a JSONL, CSV, TSV or Parquet file, a `save_to_disk` folder or a `datasets.Dataset` into a
    Dataset; rows that cannot be used become error-level checks.

    columns: a mapping {"input": column(s), "output": column, "system": column} for rows in no
    chat format (e.g. {"input": "question", "output": "right_answer"}); see `parse_columns`.
    """
    started = time.perf_counter()
    mapping = column_mapping(columns) if columns else None
    found = _Findings()
    tables.refuse_unsupported(source, "data")
    if tables.is_table(source):
        name, sha, numbered = tables.read(source, "data")
        rows, unit = _table_rows(numbered, found, max_line_bytes), "row"
        label = Path(name).name if isinstance(source, (str, Path)) else name
    else:
        path = Path(source)
        raw = read_bytes(path)
        name, sha, rows, unit, label = str(path), hashlib.sha256(raw).hexdigest(), \
            _rows(path, raw, found, max_line_bytes), "line", path.name
    what = tables.named(source)
    kept, unmatched = _samples(rows, found, mapping, label, max_rows)
    formats = Counter(f for f, _ in kept)
    if formats["anthropic"] and formats["openai_chat"]:
        # a chat without any system message is valid in both formats: it follows the file's rows that have one
        kept = [("anthropic" if f == "openai_chat" and s.system is None else f, s) for f, s in kept]
        formats = Counter(f for f, _ in kept)
    fmt = formats.most_common(1)[0][0] if formats else "unknown"
    if unmatched and not formats:
        keys = ", ".join(k for k, _ in Counter(k for _, row in unmatched for k in map(str, row)).most_common(8))
        raise DataError(f"{what}: no row is in a known format (keys seen: {keys}); map the columns, e.g. "
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
    checks = [in_units(c, unit) for c in checks]
    samples = [s for f, s in kept if f == fmt]
    if not samples and not checks:
        raise DataError(f"{what} has no rows; add rows in one of the supported formats (docs/data-checks.md)")
    return Dataset(name, fmt, samples, sha, checks, seconds=time.perf_counter() - started, unit=unit)


def _table_rows(numbered, found: _Findings, max_line_bytes: int):
    """A table's rows as a JSONL line would parse: nulls dropped, NaN and overlong rows found."""
    for number, row in numbered:
        row = tables.present(row)
        if (chars := tables.size(row)) > max_line_bytes:
            found.add("long_line", number, f"{chars:,} characters")
        if bad := tables.non_finite(row):
            found.add("nan_infinity", number, f"{bad}; JSON has no NaN: write null or a string")
            continue
        yield number, row


def _rows(path: Path, raw: bytes, found: _Findings, max_line_bytes: int):
    """(line number, parsed row) for each record of the file, CSV/TSV by suffix, else JSON Lines."""
    if raw.startswith(b"\xef\xbb\xbf"):
        found.add("bom", 1, "UTF-8 byte order mark")
        raw = raw[3:]
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _csv_rows(raw, found, max_line_bytes, "\t" if suffix == ".tsv" else ",", path)
    if raw.lstrip()[:1] == b"[" and raw.lstrip().split(b"\n", 1)[0].strip() == b"[":
        raise DataError(f"data file {path} is one JSON array, not JSON Lines; write one object per line, "
                        f"e.g. jq -c '.[]' {path} > {path.stem}.jsonl")
    return _jsonl_rows(raw, found, max_line_bytes)


def _samples(rows, found: _Findings, mapping: dict | None, source: str, max_rows: int | None
             ) -> tuple[list[tuple[str, Sample]], list[tuple[int, dict]]]:
    """(format, Sample) for each row that is one, and (line number, row) for rows in no known format;
    rows that cannot be used go to `found`."""
    kept: list[tuple[str, Sample]] = []
    unmatched: list[tuple[int, dict]] = []
    for number, row in rows:
        if max_rows is not None and len(kept) >= max_rows:
            break
        if not isinstance(row, dict):
            found.add("wrong_type", number, f"a row must be a JSON object (got {type(row).__name__})")
            continue
        if is_header_row(row):
            found.add("header_row", number, "its values repeat the column names")
            continue
        fmt = "columns" if mapping else detect_format(row)
        if fmt is None:
            unmatched.append((number, row))
            continue
        try:
            kept.append((fmt, to_sample(row, fmt, number, source, mapping)))
        except RowError as e:
            found.add(e.check, number, str(e))
    return kept, unmatched


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
        checks.append(Check(name, FILE_CHECKS[name][0], message, lines, examples=examples))
    order = list(FILE_CHECKS)
    return sorted(checks, key=lambda c: order.index(c.name))
