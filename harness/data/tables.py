"""Rows from columnar sources: Parquet files (how Hub datasets are stored), folders written by
`Dataset.save_to_disk` / `DatasetDict.save_to_disk`, and `datasets.Dataset` / `DatasetDict`
objects given in a spec.

Each row becomes the dict a JSONL line would have parsed to, numbered from 1 (the row's index
+ 1, which is what `Dataset[i]` and a Parquet viewer show, plus one), so the file checks and the
quality checks report rows the way they report lines. A column a row leaves empty reads as
absent: columnar storage fills every column on every row, so a null is how "this row has no
such key" is written there.

The SHA-256 that identifies the data is the file's bytes for a Parquet file, like any file, and
for a folder or an object that of the rows themselves (canonical JSON, in order): the arrow
files of two saves of the same rows need not be byte-identical.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from harness.errors import DataError
from harness.spec.sources import describe, split_name
from harness.spec.sources import is_datasets as _is_datasets

PARQUET_SUFFIXES = (".parquet", ".pq")
BATCH_ROWS = 1024  # rows converted to Python at a time: memory stays bounded by a batch, not the file
_SAVED_DATASET = ("state.json", "dataset_info.json")  # what Dataset.save_to_disk writes beside its arrow files
_SAVED_DICT = "dataset_dict.json"  # what DatasetDict.save_to_disk writes beside one folder per split


def is_table(source) -> bool:
    """One table of rows: a Parquet file, a saved Dataset folder, or a `datasets.Dataset`."""
    if _is_datasets(source, "Dataset"):
        return True
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix.lower() in PARQUET_SUFFIXES:
            return True
        return path.is_dir() and any((path / name).is_file() for name in _SAVED_DATASET)
    return False


def is_split_table(source) -> bool:
    """Splits in one source: a `datasets.DatasetDict`, or a folder written by its save_to_disk."""
    if _is_datasets(source, "DatasetDict"):
        return True
    return isinstance(source, (str, Path)) and (Path(source) / _SAVED_DICT).is_file()


def refuse_unsupported(source, where: str) -> None:
    """A `datasets` object the harness cannot read as it is, refused with the conversion."""
    if _is_datasets(source, "IterableDataset", "IterableDatasetDict"):
        raise DataError(f"{where}: data is a streaming {type(source).__name__}, whose rows the harness cannot count, "
                        f"split or hash before reading them all; materialise it first, e.g. "
                        f"Dataset.from_generator(lambda: (yield from data)) or data.take(n)")


def named(source) -> str:
    """How a message names the data: "data file PATH", or "data datasets.Dataset(...)"."""
    return f"data file {source}" if isinstance(source, (str, Path)) else f"data {describe(source)}"


def splits(source, where: str) -> dict:
    """{"train": ..., "val": ..., "test": ...} of a DatasetDict (object or saved folder): each part a
    Dataset or its folder, the split names read through `split_name` (validation, valid, dev: val)."""
    if _is_datasets(source, "DatasetDict"):
        parts = dict(source)
    else:
        folder = Path(source)
        try:
            names = json.loads((folder / _SAVED_DICT).read_text(encoding="utf-8"))["splits"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{where}: {folder / _SAVED_DICT} cannot be read ({e}); save the DatasetDict again "
                            f"with save_to_disk") from None
        parts = {name: folder / name for name in names}
    out = {}
    for name, part in parts.items():
        canonical = split_name(name)
        if canonical is None:
            raise DataError(f"{where}: split {name!r} is not train, val (validation, valid, dev) or test; rename it, "
                            f"e.g. dataset_dict[\"test\"] = dataset_dict.pop({name!r})")
        if canonical in out:
            raise DataError(f"{where}: two splits are the {canonical} split ({', '.join(sorted(parts))}); keep one")
        out[canonical] = part
    if "train" not in out or "test" not in out:
        raise DataError(f"{where}: the splits are {', '.join(parts) or 'none'}; the harness needs train and test "
                        f"(and optionally a validation split)")
    return out


def read(source, where: str):
    """(name, sha256, rows) for one table; rows yields (row number, dict) lazily, batch by batch."""
    if isinstance(source, (str, Path)) and Path(source).suffix.lower() in PARQUET_SUFFIXES:
        return _parquet(Path(source), where)
    dataset = source if _is_datasets(source, "Dataset") else _load_saved(Path(source), where)
    return (describe(source) if dataset is source else str(source)), _rows_sha(dataset), _dataset_rows(dataset)


def _parquet(path: Path, where: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harness.data.read import read_bytes  # the one place a data file's bytes are read, with its errors

    sha = hashlib.sha256(read_bytes(path)).hexdigest()
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{where}: data file {path} is not a readable Parquet file ({_first_line(e)}); write it again, "
                        f"e.g. with Dataset.to_parquet or pandas' to_parquet") from None

    def rows():
        number = 0
        try:
            for batch in file.iter_batches(batch_size=BATCH_ROWS):
                for row in batch.to_pylist():
                    number += 1
                    yield number, row
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{where}: data file {path} cannot be read past row {number} ({_first_line(e)}); the file "
                            f"is damaged or cut off; copy it again") from None

    return str(path), sha, rows()


def _load_saved(folder: Path, where: str):
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, OSError, ValueError) as e:
        raise DataError(f"{where}: {folder} is not a folder written by Dataset.save_to_disk ({_first_line(e)}); "
                        f"save it again, or point to a .jsonl, .csv, .tsv or .parquet file") from None
    if _is_datasets(loaded, "DatasetDict"):
        raise DataError(f"{where}: {folder} holds a DatasetDict; give the folder itself as data (its splits become "
                        f"train/val/test), not inside a dict of split files")
    return loaded


def _dataset_rows(dataset):
    number = 0
    for table in dataset.with_format("arrow").iter(batch_size=BATCH_ROWS):
        for row in table.to_pylist():
            number += 1
            yield number, row


def _rows_sha(dataset) -> str:
    digest = hashlib.sha256()
    for _, row in _dataset_rows(dataset):
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8", "replace"))
        digest.update(b"\n")
    return digest.hexdigest()


def present(row: dict) -> dict:
    """The row without its null columns: what the row would hold as a JSON object."""
    return {key: value for key, value in row.items() if value is not None}


def size(value) -> int:
    """Characters of text a row holds, however deeply nested: what MAX_LINE_BYTES bounds for a line."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(size(k) + size(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(map(size, value))
    return 8


def non_finite(value, where: str = "") -> str | None:
    """The first NaN or infinity a row holds, as 'column: nan' (JSON cannot write them; a float
    NaN label is usually a missing value pandas wrote)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where or 'a value'} is {value}"
    if isinstance(value, dict):
        for key, item in value.items():
            if found := non_finite(item, f"{where}.{key}" if where else str(key)):
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if found := non_finite(item, f"{where}[{i}]"):
                return found
    return None


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
