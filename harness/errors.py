"""Errors a user can fix. Each carries one line: what failed, where, and the fix.

The pytest plugin and the CLI print these without a traceback; anything else is a bug
in the harness and keeps its traceback.
"""


class HarnessError(Exception):
    """A mistake in a spec, a data file or a command line, reported as one line."""


class SpecError(HarnessError):
    """An Experiment (or one of its parts) is declared wrongly."""


class DataError(HarnessError):
    """A data file cannot be used: missing, empty, malformed."""


class ModelError(HarnessError):
    """A model cannot be resolved or loaded safely."""


class StoreError(HarnessError):
    """The DuckDB store cannot be opened or written."""
