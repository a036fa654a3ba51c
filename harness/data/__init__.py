"""Data: read a dataset file in any supported format into `Sample`s, check it, split it.

Every sample becomes prompt messages (optional system, then turns ending with the user) plus
the reference answer. Checks come in three groups, each a `Check` with a level (error stops the
experiment, warning is reported, info is a fact) and the file lines it concerns:

  load(path)                  the file: encoding, JSON, schema, header rows (only what is wrong);
  quality_checks(data, kind)  the samples: duplicates, near duplicates, labels, balance, size, PII;
  leakage_checks(splits)      val/test rows that repeat a train row, exactly or nearly.

`prepare` chains them as an experiment does: load, task, quality checks, split, leakage checks.
`CHECKS` names every check; docs/data-checks.md says what each does. `split` drops exact
duplicates and keeps rows with the same input together, so no row sits on both sides.

  samples    Sample, Check, Dataset, Splits          formats  the row formats, row -> Sample, column mappings
  read       load: JSONL/CSV/TSV, line by line       near     near-duplicate pairs (MinHash/LSH; numpy)
  tables     Parquet, save_to_disk folders, datasets objects, row by row
  checks     quality and leakage checks, CHECKS      pii      personal data: find, redact, redact_file
  splitting  infer_task, split, hashes, labels       stage    prepare: the whole data stage
  sealed     the test split, unreadable until final scoring
"""
from harness.data.checks import CHECKS, DATASET_KINDS, NEAR_THRESHOLD, SIZE_GUIDE, leakage_checks, quality_checks
from harness.data.formats import parse_columns
from harness.data.pii import find_pii, redact, redact_file
from harness.data.read import load
from harness.data.samples import Check, Dataset, Sample, Splits
from harness.data.splitting import content_hash, infer_task, labels, split
from harness.data.stage import DataStage, given_splits, prepare, sha256_of

__all__ = ["CHECKS", "DATASET_KINDS", "NEAR_THRESHOLD", "SIZE_GUIDE", "Check", "DataStage", "Dataset",
           "Sample", "Splits", "content_hash", "find_pii", "given_splits", "infer_task", "labels", "leakage_checks",
           "load", "parse_columns", "prepare", "quality_checks", "redact", "redact_file", "sha256_of", "split"]
