"""The data stage in one call: `prepare` reads an experiment's data, checks it and splits it.

`harness data check` runs it with the spec's default split, so the command reports what a run
would see: the same checks in the same order, and the same splits for the same seed.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from harness.data import splitting, tables
from harness.data.checks import NEAR_THRESHOLD, leakage_checks, quality_checks
from harness.data.read import load, read_bytes
from harness.data.samples import Check, Dataset, Sample, Splits
from harness.errors import DataError
from harness.spec.sources import split_name


@dataclass
class DataStage:
    """An experiment's data, read, checked and split: what `prepare` returns."""

    name: str | None  # the experiment's, for error messages
    path: str  # the data as given: one file or folder, the dict of split files, or what a datasets object was
    sha256: str  # the file's SHA-256; for split files, the SHA-256 of theirs joined in order
    datasets: dict[str, Dataset]  # {"data": the file}, or {"train": ..., "val": ..., "test": ...}
    samples: list[Sample]  # every row read, file after file
    task: str  # "classification" or "generation": how answers are scored
    kind: str  # the kind of dataset the quality checks judged (a SIZE_GUIDE key)
    quality: list[Check]  # quality_checks of the one file; none for split files
    leakage: list[Check]  # leakage_checks of the splits; none without splits
    splits: Splits | None  # None when an error-level check, or split_error, stopped the split
    split_error: str | None  # why the split failed, e.g. too few unique rows
    labels: list[str]  # the train split's labels for classification, else []
    unseen_labels: list[str]  # labels that val/test rows have and no train row has

    @property
    def checks(self) -> list[Check]:
        """Every check, in the order they ran (each file's, quality, leakage): what the data_quality gate judges."""
        return [c for d in self.datasets.values() for c in d.checks] + self.quality + self.leakage

    @property
    def refusal(self) -> str | None:
        """Why an experiment stops on this data although no check is an error: the split's own
        error, or labels only val/test rows have. None when it can run."""
        if self.split_error:
            return self.split_error
        if self.unseen_labels:
            where = f"{self.name}: " if self.name else ""
            return f"{where}labels {self.unseen_labels} appear in val/test but never in train; add train rows for them"
        return None


def prepare(source, *, root: str | Path = ".", split: tuple, seed: int, task: str | None = None,
            kind: str | None = None, allowed_labels: list[str] | None = None, max_rows: int | None = None,
            columns: dict | None = None, near_threshold: float = NEAR_THRESHOLD, name: str | None = None,
            judged: frozenset[str] | set[str] = frozenset()) -> DataStage:
    """Read `source` (one file, or {"train": ..., "val": ..., "test": ...}, relative to `root`; a
    `datasets` object or folder, see `given_splits`), then,
    in this order: infer the task, run the quality checks, split, run the leakage checks, and find the
    val/test labels train lacks. Nothing past reading raises: see `DataStage.refusal`.

    As the engine does: one file is quality-checked, and split only when no check so far is an
    error; split files are the splits, with no quality checks.

    name: the experiment's; then every file is looked for before any is read, and a missing one is
        reported against the spec. Without it `load` reports a missing file.
    task: "classification" or "generation"; default: classification when `kind` is or when
        `allowed_labels` are given, else inferred from all the samples.
    kind: the size guide's kind of dataset (DATASET_KINDS); default: the task.
    allowed_labels: the label set; classification rows outside it are errors (inferred sets only warn).
    judged: row keys the store's ledger of looks has already judged on test for this experiment
        (`Experiment.fresh_test`): they may go to train or val, never to test. Empty: the usual split.
    """
    root = Path(root)
    source = given_splits(source, name or "data", root)
    if name is not None:
        for path in source.values() if isinstance(source, dict) else [source]:
            if isinstance(path, (str, Path)) and not (root / path).is_file() and not tables.is_table(root / path):
                raise DataError(f"{name}: data file {path} not found; check the path in the spec "
                                f"(paths are relative to the project root, {root})")
    splits = None
    if isinstance(source, dict):
        datasets = {part: load(_at(root, path), max_rows=max_rows, columns=columns) for part, path in source.items()}
        sha = hashlib.sha256("".join(d.sha256 for d in datasets.values()).encode()).hexdigest()
        test = datasets["test"].samples
        splits = Splits(datasets["train"].samples, datasets["val"].samples if "val" in datasets else [], test,
                        splitting.content_hash(test))
    else:
        datasets = {"data": load(_at(root, source), max_rows=max_rows, columns=columns)}
        sha = datasets["data"].sha256
    samples = [s for d in datasets.values() for s in d.samples]

    if task is None and kind is not None:
        task = "classification" if kind == "classification" else "generation"
    task = task or ("classification" if allowed_labels else splitting.infer_task(samples))
    kind = kind or task
    quality = [] if splits is not None else quality_checks(datasets["data"], kind, labels=allowed_labels,
                                                           near_threshold=near_threshold)
    split_error = None
    so_far = [c for d in datasets.values() for c in d.checks] + quality
    if splits is None and not any(c.level == "error" for c in so_far):
        try:
            splits = splitting.split(samples, split, seed=seed, stratify=task == "classification", judged=judged,
                                     source=tables.named(source))
        except DataError as e:
            split_error = str(e)
    unit = "row" if all(d.unit == "row" for d in datasets.values()) else "line"
    leakage = leakage_checks(splits, near_threshold=near_threshold, unit=unit) if splits is not None else []
    labels, unseen = [], []
    if task == "classification" and splits is not None:
        labels = splitting.labels(splits.train)
        unseen = sorted({s.answer.strip() for s in splits.test + splits.val} - set(labels))
    shown = {k: tables.describe(v) for k, v in source.items()} if isinstance(source, dict) else tables.describe(source)
    return DataStage(name, str(shown), sha, datasets, samples, task, kind, quality, leakage, splits, split_error,
                     labels, unseen)


def given_splits(source, where: str, root: Path = Path(".")):
    """The data as one source, or as {"train", "val", "test"}: a dict's keys read through
    `split_name` (validation, valid, dev: val), a DatasetDict (object or saved folder) as its splits."""
    tables.refuse_unsupported(source, where)
    if tables.is_split_table(_at(root, source)):  # before dict: a DatasetDict is one
        return tables.splits(_at(root, source), where)
    if isinstance(source, dict):
        out = {}
        for key, part in source.items():
            canonical = split_name(key)
            if canonical is None or canonical in out:
                raise DataError(f"{where}: data dict keys must be train, test and optionally one validation split "
                                f"(val, validation, valid or dev); got {', '.join(map(str, source))}")
            tables.refuse_unsupported(part, where)
            out[canonical] = part
        if "train" not in out or "test" not in out:
            raise DataError(f"{where}: data dict needs train and test splits (got {', '.join(map(str, source))})")
        return out
    return source


def sha256_of(source, root: Path = Path(".")) -> str:
    """The SHA-256 `prepare` records for one source (a file's bytes; a folder's or object's rows),
    without checking it."""
    source = _at(root, source)
    if tables.is_table(source):
        return tables.read(source, "data")[1]
    return hashlib.sha256(read_bytes(Path(source))).hexdigest()


def _at(root: Path, source):
    """A path relative to the project root; a datasets object as it is."""
    return root / source if isinstance(source, (str, Path)) else source
