"""Checks on the samples of a loaded file (`quality_checks`) and on its splits (`leakage_checks`).

Every check reports once, at level info when nothing is wrong. `CHECKS` names every check of the
data stage, the file checks of `load` included; docs/data-checks.md says what each does.
"""
from __future__ import annotations

import math
import re
import time
from collections import Counter, defaultdict
from functools import cached_property

from harness.data.pii import PII_KINDS, find_pii
from harness.data.read import FILE_CHECKS
from harness.data.samples import Check, Dataset, Sample, Splits, in_units, simplify
from harness.errors import DataError

NEAR_THRESHOLD = 0.7  # Jaccard of 5-byte shingles; adding one word to a 60-character headline scores ~0.72
CONFLICT_SIMILARITY = 0.9  # "nearly the same input" for label conflicts: stricter than a near duplicate

# Recommended rows (minimum, good) per kind of dataset, from common fine-tuning guides.
SIZE_GUIDE = {"classification": (50, 500), "extraction": (100, 1_000), "style": (200, 1_000),
              "domain": (500, 5_000), "code": (1_000, 10_000), "generation": (200, 1_000)}
DATASET_KINDS = tuple(SIZE_GUIDE)

# Every check: name -> (level(s), what it finds). docs/data-checks.md documents each one.
CHECKS = {
    **FILE_CHECKS,
    # quality_checks(): the samples; every check reports, at level info when nothing is wrong
    "duplicates": ("warning", "rows equal to an earlier row after normalising case and spacing"),
    "near_duplicates": ("warning", "rows whose input nearly repeats an earlier row's (MinHash/LSH, verified)"),
    "label_conflicts": ("warning", "classification rows with the same or nearly the same input but different labels"),
    "unknown_label": ("error|warning", "labels outside the label set (error when the set is given, "
                                       "warning when inferred: labels seen fewer than 3 times)"),
    "class_balance": ("warning", "count per class; warns when largest/smallest > 3"),
    "size": ("warning", "unique rows against the recommended minimum for the kind of dataset"),
    "short_answers": ("warning", "answers too short to be real: no letters or digits, placeholders, "
                                 "or under a tenth of a long-form median"),
    "junk_rows": ("warning", "inputs that are not text: no letters or digits, placeholders, mojibake, "
                             "control characters"),
    "pii": ("warning", "e-mail addresses, phone numbers, Luhn-valid card numbers, national IDs, IP addresses"),
    # leakage_checks(): after splitting
    "leakage": ("error", "a val/test row's input equals a train row's input (after normalising)"),
    "near_leakage": ("warning", "a val/test row's input nearly equals a train row's input"),
}


class _SampleIndex:
    """An index over the samples that several checks share: exact duplicates removed, inputs grouped
    by norm_input, near pairs."""

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
            if s.simplified_input:
                self.groups[s.norm_input].append(s)

    @cached_property
    def near(self) -> dict[int, tuple[Sample, float]]:
        """line -> (the earlier row it most resembles, similarity) for rows that are not exact duplicates."""
        from harness.data.near import near_pairs  # numpy: loaded when a check first runs, not on import

        best: dict[int, tuple[Sample, float]] = {}

        def offer(row: Sample, twin: Sample, similarity: float):
            if row.line not in best or similarity > best[row.line][1]:
                best[row.line] = (twin, similarity)

        groups = list(self.groups.values())
        for group in groups:
            for row in group[1:]:
                offer(row, group[0], 1.0)
        for i, j, similarity in near_pairs([g[0].simplified_input for g in groups], self.threshold):
            early, late = (groups[i], groups[j]) if groups[i][0].line < groups[j][0].line else (groups[j], groups[i])
            for row in late:
                offer(row, early[0], similarity)
        return best


def _examples(pairs, note) -> list[tuple[int, str]]:
    return [(row.line, note(row, twin, *rest)) for row, twin, *rest in pairs[:50]]


def _duplicates(rows: _SampleIndex, kind: str, labels) -> Check:
    dupes = rows.duplicates
    if not dupes:
        return Check("duplicates", "info", "no exact duplicates")
    first, twin = dupes[0]
    return Check("duplicates", "warning", f"{len(dupes)} exact duplicate row(s) (first at line {first.line}, a copy "
                                          f"of line {twin.line}); removed before splitting",
                 sorted(s.line for s, _ in dupes), {s.line: t.line for s, t in dupes},
                 _examples(dupes, lambda s, t: f"= line {t.line}"))


def _near_duplicates(rows: _SampleIndex, kind: str, labels) -> Check:
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


def _label_conflicts(rows: _SampleIndex, kind: str, labels) -> Check | None:
    if kind != "classification":
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


def _unknown_label(rows: _SampleIndex, kind: str, labels) -> Check | None:
    if kind != "classification" or not rows.samples:
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


def _class_balance(rows: _SampleIndex, kind: str, labels) -> Check | None:
    if kind != "classification" or not rows.samples:
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


def _size(rows: _SampleIndex, kind: str, labels) -> Check:
    n = len(rows.unique)
    minimum, good = SIZE_GUIDE[kind]
    if n < minimum:
        return Check("size", "warning", f"{n:,} unique rows: below the {minimum:,} recommended as a minimum "
                                        f"for {kind} ({good:,} is good)")
    verdict = "good" if n >= good else f"above the minimum, below the {good:,} that is good"
    return Check("size", "info", f"{n:,} unique rows ({kind}: minimum {minimum:,}, good {good:,}): {verdict}")


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


def _short_answers(rows: _SampleIndex, kind: str, labels) -> Check | None:
    if kind == "classification" or not rows.samples:
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
        elif simplify(answer) in PLACEHOLDERS:
            found.append((s, "a placeholder"))
        elif len(answer.split()) < floor:
            found.append((s, f"{len(answer.split())} word(s); the median answer has {median}"))
    if not found:
        return Check("short_answers", "info", f"no answer too short to be real (median {median} words)")
    return Check("short_answers", "warning", f"{len(found)} answer(s) too short to be real answers (first at line "
                                             f"{found[0][0].line}: {found[0][0].answer.strip()!r}, {found[0][1]})",
                 [s.line for s, _ in found], examples=[(s.line, f"{s.answer.strip()[:40]!r}: {why}")
                                                       for s, why in found[:50]])


def _junk_rows(rows: _SampleIndex, kind: str, labels) -> Check:
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


def _pii(rows: _SampleIndex, kind: str, labels) -> Check:
    kinds: Counter = Counter()
    found = []
    cache: dict[str, list[str]] = {}  # a system prompt repeated on every row is scanned once

    def scan(text: str) -> list[str]:
        if text not in cache:
            cache[text] = [found_kind for found_kind, _ in find_pii(text)]
        return cache[text]

    for s in rows.samples:
        hits = [found_kind for _, c in s.messages + (("", s.answer),) for found_kind in scan(c)]
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


QUALITY_CHECKS = (_duplicates, _near_duplicates, _label_conflicts, _unknown_label, _class_balance, _size,
                  _short_answers, _junk_rows, _pii)


def quality_checks(dataset: Dataset, kind: str, *, labels: list[str] | None = None,
                   near_threshold: float = NEAR_THRESHOLD) -> list[Check]:
    """Checks on the parsed samples; each applicable check reports once, at level info when clean.

    labels: the allowed label set for classification; rows outside it are errors. Without it the
    set is inferred and stray labels are warnings.
    """
    if kind not in SIZE_GUIDE:
        raise DataError(f"unknown task {kind!r}; use one of {', '.join(DATASET_KINDS)}")
    rows = _SampleIndex(dataset.samples, near_threshold)
    checks = []
    for check in QUALITY_CHECKS:
        started = time.perf_counter()
        result = check(rows, kind, labels)
        if result is not None:
            result.seconds = time.perf_counter() - started
            checks.append(result)
    return [in_units(c, dataset.unit) for c in checks]


def leakage_checks(splits: Splits, *, near_threshold: float = NEAR_THRESHOLD, unit: str = "line") -> list[Check]:
    """Val/test rows whose input repeats a train row's: exactly (error) or nearly (warning).

    `lines` are the offending val/test rows; `twins` maps each to its train twin's line (or row:
    `unit`, for tables).
    """
    started = time.perf_counter()
    train: dict[str, Sample] = {}
    for s in splits.train:
        if s.simplified_input:
            train.setdefault(s.norm_input, s)
    held = [(part, s) for part in ("val", "test") for s in getattr(splits, part) if s.simplified_input]
    exact = _leakage(train, held)
    exact.seconds = time.perf_counter() - started
    started = time.perf_counter()
    near = _near_leakage(train, [(part, s) for part, s in held if s.norm_input not in train], near_threshold)
    near.seconds = time.perf_counter() - started
    return [in_units(exact, unit), in_units(near, unit)]


def _where(part: str, s: Sample, t: Sample) -> str:
    return f"{part} line {s.line} ({s.source})" if s.source != t.source else f"{part} line {s.line}"


def _leakage(train: dict[str, Sample], held: list[tuple[str, Sample]]) -> Check:
    exact = [(part, s, train[s.norm_input]) for part, s in held if s.norm_input in train]
    if not exact:
        return Check("leakage", "info", f"no val/test row repeats a train input ({len(held):,} checked)")
    part, s, t = exact[0]
    return Check("leakage", "error", f"{len(exact)} val/test row(s) repeat a train row's input (first: "
                                     f"{_where(part, s, t)} = train line {t.line}); the score would "
                                     f"measure memory; drop them from val/test",
                 sorted(s.line for _, s, _ in exact), {s.line: t.line for _, s, t in exact},
                 [(s.line, f"{part}, = train line {t.line}") for part, s, t in exact[:50]])


def _near_leakage(train: dict[str, Sample], rest: list[tuple[str, Sample]], threshold: float) -> Check:
    from harness.data.near import near_pairs  # numpy: loaded when a check first runs, not on import

    train_rows = list(train.values())
    texts = [s.simplified_input for s in train_rows] + [s.simplified_input for _, s in rest]
    side = [0] * len(train_rows) + [1] * len(rest)
    best: dict[tuple[str, int], tuple[str, Sample, Sample, float]] = {}  # (split, line): val and test may be files
    for i, j, similarity in near_pairs(texts, threshold, side):
        part, s = rest[j - len(train_rows)]
        t = train_rows[i]
        if (part, s.line) not in best or similarity > best[part, s.line][3]:
            best[part, s.line] = (part, s, t, similarity)
    if not best:
        return Check("near_leakage", "info", f"no val/test input alike a train input at similarity >= {threshold:g}")
    worst = sorted(best.values(), key=lambda x: -x[3])
    part, s, t, _ = min(best.values(), key=lambda x: x[1].line)
    return Check("near_leakage", "warning",
                 f"{len(best)} val/test row(s) nearly repeat a train row's input (similarity >= {threshold:g}; "
                 f"first: {_where(part, s, t)} ~ train line {t.line})",
                 sorted({line for _, line in best}), {s.line: t.line for _, s, t, _ in best.values()},
                 [(s.line, f"{part}, ~ train line {t.line} (similarity {sim:.2f})") for part, s, t, sim in worst[:50]])
