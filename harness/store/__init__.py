"""The store stage: the DuckDB database every run is written to and read back from.

`Store` (db.py) owns the schema, its migrations and every read and write; `record` holds the
typed rows it gives back (a run, its approaches, gates, curves, sweep trials); `upgrade` brings
rows an older harness wrote to today's shape, in one place; `workers` tells whether the process
that holds a row is still alive.
"""
from harness.store.db import DEFAULT_PATH, MIGRATIONS, SCHEMA_VERSION, RunRecord, Store

__all__ = ["DEFAULT_PATH", "MIGRATIONS", "SCHEMA_VERSION", "RunRecord", "Store"]
