"""The data stage in one call: `prepare` reads an experiment's data, checks it and splits it.

`harness data check` runs it with the spec's default split, so the command reports what a run
would see: the same checks in the same order, and the same splits for the same seed.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from harness.data import splitting
from harness.data.checks import NEAR_THRESHOLD, leakage_checks, quality_checks
from harness.data.read import load
from harness.data.samples import Check, Dataset, Sample, Splits
from harness.errors import DataError


@dataclass
class DataStage:
    """An experiment's data, read, checked and split: what `prepare` returns."""

    name: str | None  # the experiment's, for error messages
    path: str  # the data as given: one file, or the dict of split files
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


def prepare(source: str | Path | dict, *, root: str | Path = ".", split: tuple, seed: int, task: str | None = None,
            kind: str | None = None, allowed_labels: list[str] | None = None, max_rows: int | None = None,
            columns: dict | None = None, near_threshold: float = NEAR_THRESHOLD, name: str | None = None,
            judged: frozenset[str] | set[str] = frozenset()) -> DataStage:
    """Read `source` (one file, or {"train": ..., "val": ..., "test": ...}, relative to `root`), then,
    in this order: infer the task, run the quality checks, split, run the leakage checks, and find the
    val/test labels train lacks. Nothing past reading raises: see `DataStage.refusal`.

    Replaces, in harness/_engine/prepare.py, `_load_data` and the data part of `prepare` (from the
    `_load_data` call to the "appear in val/test but never in train" check) with

        stage = data.prepare(experiment.data, root=root, split=experiment.split, seed=experiment.seed,
                             task=experiment.task, max_rows=experiment.max_rows,
                             columns=experiment.columns, name=experiment.name)

    and `stage.path, sha256, checks, task, splits, labels` for its `data_path, data_sha, checks, task,
    splits, labels`. The engine keeps its data_quality gate, then raises `DataError(stage.refusal)`
    when there is one (to keep today's order exactly, raise `stage.split_error` before recording the
    checks). Also replaces the chain in harness/cli.py `_data_check`, which passes the spec's default split.

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
    if name is not None:
        for path in source.values() if isinstance(source, dict) else [source]:
            if not (root / path).is_file():
                raise DataError(f"{name}: data file {path} not found; check the path in the spec "
                                f"(paths are relative to the project root, {root})")
    splits = None
    if isinstance(source, dict):
        datasets = {part: load(root / path, max_rows=max_rows, columns=columns) for part, path in source.items()}
        sha = hashlib.sha256("".join(d.sha256 for d in datasets.values()).encode()).hexdigest()
        test = datasets["test"].samples
        splits = Splits(datasets["train"].samples, datasets["val"].samples if "val" in datasets else [], test,
                        splitting.content_hash(test))
    else:
        datasets = {"data": load(root / source, max_rows=max_rows, columns=columns)}
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
                                     source=f"data file {source}")
        except DataError as e:
            split_error = str(e)
    leakage = leakage_checks(splits, near_threshold=near_threshold) if splits is not None else []
    labels, unseen = [], []
    if task == "classification" and splits is not None:
        labels = splitting.labels(splits.train)
        unseen = sorted({s.answer.strip() for s in splits.test + splits.val} - set(labels))
    return DataStage(name, str(source), sha, datasets, samples, task, kind, quality, leakage, splits, split_error,
                     labels, unseen)
