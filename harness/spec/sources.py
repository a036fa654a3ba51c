"""What a spec's `data` may be, said without reading it (or importing `datasets`): a path, a dict
of splits under their usual names, or a `datasets` object, and how each is described in a run
record. harness/data reads them; the spec only validates and names them."""
from __future__ import annotations

# The names a split goes by in the wild (the Hub's "validation", scikit-learn's "dev", ...) and the
# one the harness uses for each.
SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "dev": "val", "test": "test"}


def split_name(name) -> str | None:
    """train, val or test for any of their usual names (case-insensitive); None for another name."""
    return SPLIT_ALIASES.get(name.strip().lower()) if isinstance(name, str) else None


def is_datasets(obj, *names: str) -> bool:
    """An object of one of `datasets`' classes (any, without names), without importing `datasets` to ask."""
    cls = type(obj)
    return cls.__module__.split(".")[0] == "datasets" and (not names or cls.__name__ in names)


def describe(source) -> str:
    """What the data was, in words a run record and a message can hold (a path stays a path)."""
    if is_datasets(source, "Dataset"):
        return f"datasets.Dataset({source.num_rows} rows, fingerprint {source._fingerprint})"
    if is_datasets(source, "DatasetDict"):
        parts = ", ".join(f"{name}: {ds.num_rows}" for name, ds in source.items())
        return f"datasets.DatasetDict({parts})"
    return str(source)
