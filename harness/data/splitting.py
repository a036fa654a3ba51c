"""From samples to train, val and test: the task the answers imply (`infer_task`), the seeded split
(`split`), the test split's content hash (`content_hash`) and the label set (`labels`).
"""
from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict

from harness.data.samples import Sample, Splits
from harness.errors import DataError

MAX_CLASSIFICATION_LABELS = 20  # more distinct answers than this is free text, not a label set


def infer_task(samples: list[Sample]) -> str:
    """How the answers are scored, "classification" or "generation" (what `Experiment.task` says when
    given). Classification when the answers are a small set of short labels, each seen more than once.

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


def split(samples: list[Sample], fractions: tuple, *, seed: int, stratify: bool,
          judged: frozenset[str] | set[str] = frozenset(), source: str = "the data") -> Splits:
    """Deduplicate, then split seeded (stratified by answer for classification).

    Exact duplicates are dropped first (the first copy stays); rows that share an input after
    normalising (same text, different label or punctuation) move as one unit, so no input sits
    on both sides. Sizes count units; a unit of several rows lands whole in one split.

    judged: row keys already judged on test (the store's ledger of looks, for `fresh_test`): a
    unit holding one never goes to test, only to train or val, so the test split is disjoint from
    every earlier look. Too few units never judged is a DataError naming `source`. With no unit
    judged the split is the one drawn without `judged`.
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
    if judged and any(s.key in judged for unit in units.values() for s in unit):
        return _fresh_split(groups, n_train, n_val, n_test, rng, judged, source)
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


def _fresh_split(groups: dict[str, list[list[Sample]]], n_train: int, n_val: int, n_test: int, rng: random.Random,
                 judged: frozenset[str] | set[str], source: str) -> Splits:
    """`split` with test drawn only from units no row of which was judged on test before."""
    fresh = {k: [u for u in g if not any(s.key in judged for s in u)] for k, g in sorted(groups.items())}
    available = sum(map(len, fresh.values()))
    if available < n_test:
        total = sum(map(len, groups.values()))
        raise DataError(f"fresh_test: {source} has {available} unique rows never judged on test (of {total}), "
                        f"too few for a test split of {n_test}; add at least {n_test - available} new rows to "
                        f"{source}, or give split= a smaller test size")
    test_n = _allocate(n_test, {k: len(v) for k, v in fresh.items() if v})
    val_n = _allocate(n_val, {k: len(v) for k, v in sorted(groups.items())})
    train, val, test = [], [], []
    for label, group in sorted(groups.items()):
        candidates = list(fresh[label])
        rng.shuffle(candidates)
        t = test_n.get(label, 0)
        chosen = {id(u) for u in candidates[:t]}
        rest = [u for u in group if id(u) not in chosen]
        rng.shuffle(rest)
        test += candidates[:t]
        val += rest[:val_n[label]]
        train += rest[val_n[label]:]
    for part in (train, val, test):
        rng.shuffle(part)
    flat = lambda part: [s for unit in part for s in unit]
    train, val, test = flat(train[:n_train]), flat(val), flat(test)
    return Splits(train, val, test, content_hash(test))


def content_hash(samples: list[Sample]) -> str:
    """The hash of the rows' keys in order: the same hash means the same rows, in the same order."""
    h = hashlib.sha256()
    for s in samples:
        h.update(s.key.encode())
    return h.hexdigest()


def labels(samples: list[Sample]) -> list[str]:
    """The distinct answers, stripped and sorted: a classification split's label set."""
    return sorted({s.answer.strip() for s in samples})
