"""The regression gate's data shipped with the harness, and how a spec's own file is found.

`mmlu_slice.jsonl` is the "mmlu" capability suite of `harness.judge.capability`: a fixed,
stratified slice of the MMLU test set made by `make_mmlu_slice.py` in this folder.
`wikipedia_passages.jsonl` is the "wikipedia" forgetting probe of `harness.judge.forgetting`:
held Wikipedia paragraphs made by `make_wikipedia_probe.py`. See ATTRIBUTION.md for both.
"""
from __future__ import annotations

from pathlib import Path

from harness.errors import DataError


def read(name_or_path: str | Path, shipped: dict[str, tuple[str, Path]], *, root: str | Path, kind: str,
         use: str, row_help: str) -> tuple[str, str, Path, bytes, str]:
    """(key, title, path, bytes, text) of a shipped file by its name, or of a spec's own file
    (relative paths resolve against `root`). kind: "regression suite" or "forgetting probe", as
    the one-line DataError for a missing or non-UTF-8 file names it; use: what to write instead."""
    key = str(name_or_path)
    if key in shipped:
        title, path = shipped[key]
    else:
        path = Path(name_or_path).expanduser()
        path = path if path.is_absolute() else Path(root) / path
        title = key
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise DataError(f"{kind} {key!r} {what}: use {use} or a path to a JSONL file; {row_help}")
    try:
        raw = path.read_bytes()
        return key, title, path, raw, raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{kind} {path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from e
