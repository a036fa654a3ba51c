"""Personal data: finding it in text (`find_pii`) and writing a copy of a data file without it
(`redact_file`). E-mail addresses, phone numbers, Luhn-valid card numbers, national IDs, IP addresses.
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from harness.data.read import read_bytes
from harness.errors import DataError

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
    if not _PII_HINT.search(text):  # most texts hold none: one cheap search rules them out
        return []
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



def redact_file(path: str | Path, out: str | Path) -> int:
    """Write a copy of a JSONL/CSV/TSV file with personal data replaced in every string; returns the count."""
    path, out = Path(path), Path(out)
    if out.resolve() == path.resolve():
        raise DataError(f"--redact {out} would overwrite the file being checked; write the copy elsewhere")
    raw = read_bytes(path).decode("utf-8", errors="replace")
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
