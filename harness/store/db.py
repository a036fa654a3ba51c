"""The DuckDB store: every run, prediction, metric, curve and verdict.

The schema is an ordered list of named migrations, recorded in `schema_migrations` and
applied on open. A store written by a newer harness is refused.

DuckDB allows one writing process per file, so every access opens a short-lived
connection under a cross-process file lock (`<store>.lock`): pytest-xdist workers and
`harness report` take turns instead of meeting a lock error. A run's results are written
in one transaction when it finishes; until then it is marked "running", and a run
that died stays visibly incomplete, never half-written.
"""
from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pyarrow as pa
from filelock import FileLock

from harness.errors import StoreError
from harness.judge.outcomes import GateResult
from harness.store import ledger, upgrade, workers
from harness.store.record import ApproachRecord, CurvePoint, MetricTable, Run, StoredRun, Trial

DEFAULT_PATH = ".harness/harness.duckdb"

MIGRATIONS: list[tuple[str, str]] = [
    ("create_core_tables", """
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY,
            experiment VARCHAR NOT NULL,
            spec_file VARCHAR,
            status VARCHAR NOT NULL,            -- running | complete | failed
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            error VARCHAR,
            task VARCHAR,
            key_metric VARCHAR,
            model VARCHAR,
            model_sha256 VARCHAR,
            data_path VARCHAR,
            data_sha256 VARCHAR,
            test_sha256 VARCHAR,                 -- the sealed test split's content hash
            config VARCHAR,                      -- JSON: the spec as declared
            provenance VARCHAR                   -- JSON: git commit, library versions, hardware, seeds
        );
        CREATE TABLE checks (
            run_id VARCHAR NOT NULL, name VARCHAR NOT NULL, level VARCHAR NOT NULL,
            message VARCHAR, lines VARCHAR       -- JSON list of line numbers
        );
        CREATE TABLE approaches (
            run_id VARCHAR NOT NULL, approach VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,               -- baseline | candidate
            config VARCHAR,                      -- JSON: prompt, examples, hyperparameters
            prompt_tokens DOUBLE, latency_p50_ms DOUBLE, latency_p95_ms DOUBLE,
            train_seconds DOUBLE, adapter_path VARCHAR, adapter_sha256 VARCHAR,
            PRIMARY KEY (run_id, approach)
        );
        CREATE TABLE metrics (
            run_id VARCHAR NOT NULL, approach VARCHAR NOT NULL, split VARCHAR NOT NULL,
            metric VARCHAR NOT NULL, value DOUBLE,
            PRIMARY KEY (run_id, approach, split, metric)
        );
        CREATE TABLE predictions (
            run_id VARCHAR NOT NULL, approach VARCHAR NOT NULL, split VARCHAR NOT NULL,
            idx INTEGER NOT NULL, example_key VARCHAR, input VARCHAR, reference VARCHAR,
            prediction VARCHAR, score DOUBLE
        );
        CREATE TABLE curves (
            run_id VARCHAR NOT NULL, approach VARCHAR NOT NULL, step INTEGER NOT NULL,
            epoch DOUBLE, split VARCHAR NOT NULL, loss DOUBLE
        );
        CREATE TABLE gates (
            run_id VARCHAR NOT NULL, gate VARCHAR NOT NULL,
            outcome VARCHAR NOT NULL,            -- PASS | FAIL | INCONCLUSIVE | SKIP
            message VARCHAR, details VARCHAR,    -- JSON: the numbers and thresholds behind it
            PRIMARY KEY (run_id, gate)
        );
    """),
    ("create_caches", """
        -- Model outputs keyed by everything that determines them (see harness/scoring/cache.py):
        -- re-running an unchanged experiment recomputes nothing.
        CREATE TABLE output_cache (
            key VARCHAR PRIMARY KEY, prediction VARCHAR, label_logprobs VARCHAR,
            latency_ms DOUBLE, prompt_tokens INTEGER, generated_tokens INTEGER, created_at TIMESTAMP
        );
        CREATE TABLE adapter_cache (
            key VARCHAR PRIMARY KEY, adapter_path VARCHAR NOT NULL, adapter_sha256 VARCHAR NOT NULL,
            result VARCHAR,                      -- JSON: curves, steps, seconds, parameter counts, device
            created_at TIMESTAMP
        );
    """),
    ("approaches_generated_tokens", """
        -- mean tokens generated per call (0 for label scoring, which generates nothing)
        ALTER TABLE approaches ADD COLUMN generated_tokens DOUBLE;
    """),
    ("create_sweep_trials", """
        -- Every finished trial of a hyperparameter sweep (harness/candidate/sweep.py), mirrored from the
        -- Optuna study, keyed by (study, number) so a trial is recorded exactly once.
        CREATE TABLE sweep_trials (
            study VARCHAR NOT NULL,              -- Optuna study name (experiment + search-space hash)
            experiment VARCHAR NOT NULL,
            number INTEGER NOT NULL,             -- Optuna trial number
            state VARCHAR NOT NULL,              -- COMPLETE | PRUNED | FAIL
            params VARCHAR,                      -- JSON: the QLoRA fields this trial set
            key_metric VARCHAR,
            value DOUBLE,                        -- the objective: key metric on the validation split
            val_metrics VARCHAR,                 -- JSON: every metric on the validation split
            curves VARCHAR,                      -- JSON: [{step, epoch, split, loss}]
            steps INTEGER,                       -- optimizer steps taken (fewer when pruned)
            adapter_path VARCHAR, adapter_sha256 VARCHAR,
            seconds DOUBLE,                      -- wall time of the trial
            worker VARCHAR,                      -- host:pid that ran it
            started_at TIMESTAMP, finished_at TIMESTAMP,
            error VARCHAR,
            PRIMARY KEY (study, number)
        );
    """),
    ("runs_worker", """
        -- host:pid of the process running it: a run left 'running' by a process that no longer
        -- exists is marked failed (incomplete) the next time the store is opened on that host
        ALTER TABLE runs ADD COLUMN worker VARCHAR;
    """),
    ("runs_best_baseline", """
        -- the baseline (or calibrated twin) the engine picked on the selection split, the one the
        -- candidate is gated against, so that readers need not pick it again
        ALTER TABLE runs ADD COLUMN best_baseline VARCHAR;
    """),
    ("create_ledger_of_looks", """
        -- Every judgement of the five-percent rule on a sealed test split, by the hashes of its rows
        -- (harness/store/ledger.py): a run whose test rows overlap rows already judged is a repeated look.
        CREATE TABLE test_looks (
            experiment VARCHAR NOT NULL,
            look_id VARCHAR NOT NULL,            -- hash of the sorted row keys and what decides the verdict
            run_id VARCHAR NOT NULL,             -- the run that judged it (the same look may be made again)
            judged_at TIMESTAMP NOT NULL,
            look INTEGER NOT NULL,               -- 1-based among distinct looks at overlapping rows
            looks_budget INTEGER NOT NULL,       -- the looks declared at the first look of these rows
            outcome VARCHAR NOT NULL,            -- PASS | FAIL | INCONCLUSIVE
            n_rows INTEGER NOT NULL,
            draw VARCHAR,                        -- the test split's draw: data hash and split settings
            PRIMARY KEY (run_id, look_id)
        );
        CREATE TABLE test_look_rows (
            experiment VARCHAR NOT NULL, look_id VARCHAR NOT NULL,
            row_hash VARCHAR NOT NULL,           -- Sample.key: the row's content hash
            PRIMARY KEY (experiment, look_id, row_hash)
        );
    """),
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class RunRecord:
    """Everything a finished run writes, in one transaction."""

    checks: list[dict] = field(default_factory=list)
    approaches: list[dict] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    predictions: list[dict] = field(default_factory=list)
    curves: list[dict] = field(default_factory=list)
    gates: list[dict] = field(default_factory=list)
    run_fields: dict = field(default_factory=dict)  # late facts about the run (task, hashes)
    looks: list[dict] = field(default_factory=list)  # judgements of test rows, for the ledger (ledger.entry)


# DuckDB's words for a file it cannot read as a database (not for a lock held by another process)
_DAMAGE_SIGNS = ("not a valid DuckDB database", "Could not read enough bytes", "Corrupt", "corrupt", "checksum",
                 "Serialization Error", "Failure while replaying WAL")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


# Column lists per table: identifiers are fixed here, never taken from user text.
_COLUMNS = {
    "checks": ["run_id", "name", "level", "message", "lines"],
    "approaches": ["run_id", "approach", "kind", "config", "prompt_tokens", "latency_p50_ms", "latency_p95_ms",
                   "train_seconds", "adapter_path", "adapter_sha256", "generated_tokens"],
    "metrics": ["run_id", "approach", "split", "metric", "value"],
    "predictions": ["run_id", "approach", "split", "idx", "example_key", "input", "reference", "prediction", "score"],
    "curves": ["run_id", "approach", "step", "epoch", "split", "loss"],
    "gates": ["run_id", "gate", "outcome", "message", "details"],
}
_TRIAL_COLUMNS = ["study", "experiment", "number", "state", "params", "key_metric", "value", "val_metrics", "curves",
                  "steps", "adapter_path", "adapter_sha256", "seconds", "worker", "started_at", "finished_at", "error"]
_TRIAL_JSON = {"params", "val_metrics", "curves"}
_JSON_COLUMNS = {"lines", "config", "details"}
_RUN_FIELDS = {"task", "key_metric", "model", "model_sha256", "data_path", "data_sha256", "test_sha256", "provenance",
               "best_baseline"}


class Store:
    """A DuckDB file (or ":memory:") holding the history of every experiment."""

    def __init__(self, path: str | Path = DEFAULT_PATH):
        self.path = str(path)
        self._memory = self.path == ":memory:"
        self._shared = duckdb.connect(":memory:") if self._memory else None
        if not self._memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(self.path + ".lock", timeout=600)
        with self.connect() as con:
            self._migrate(con)
            self._fail_dead_runs(con)

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection held only for the block, under the cross-process lock. A file DuckDB
        cannot read (on open, or when a query reaches a damaged block) is moved aside, kept."""
        if self._memory:
            yield self._shared
            return
        with self._lock:
            try:
                con = duckdb.connect(self.path, read_only=read_only and Path(self.path).exists())
            except duckdb.Error as e:
                self._raise_damaged(e)
                raise StoreError(f"store {self.path} cannot be opened: {str(e).splitlines()[0]}; "
                                 f"move it aside to start a new store") from e
            try:
                yield con
            except duckdb.Error as e:
                con.close()
                self._raise_damaged(e)
                raise
            finally:
                con.close()

    def _raise_damaged(self, error: Exception) -> None:
        first = str(error).splitlines()[0]
        if any(sign in first for sign in _DAMAGE_SIGNS):
            kept = self._keep_aside()
            raise StoreError(f"store {self.path} is damaged ({first}); it was moved, untouched, to {kept}; "
                             f"the next run starts a new store (recover old runs from the kept file with the "
                             f"duckdb CLI, or restore a backup in its place)") from error

    def _keep_aside(self) -> str:
        """Move a damaged store (and its write-ahead log) to a dated name beside it; never delete."""
        stamp = f"{_now():%Y%m%dT%H%M%S}"
        kept = f"{self.path}.damaged-{stamp}"
        for suffix in ("", ".wal"):
            if Path(self.path + suffix).exists():
                Path(self.path + suffix).rename(kept + suffix)
        return kept

    def _fail_dead_runs(self, con) -> None:
        """Runs left 'running' by a process of this host that no longer exists (killed, crashed):
        nothing of theirs was committed but the start, so they are marked failed, saying so."""
        has_worker = con.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'runs' "
                                 "AND column_name = 'worker'").fetchone()[0]
        if not has_worker:  # a store migrated only part way, by an older harness
            return
        for run_id, worker in con.execute("SELECT run_id, worker FROM runs WHERE status = 'running' "
                                          "AND worker IS NOT NULL").fetchall():
            if workers.died(worker):
                con.execute("UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE run_id = ? "
                            "AND status = 'running'",
                            [_now(), f"incomplete: the process running it ({worker}) ended before the run "
                                     f"finished; none of its results were committed", run_id])

    def _migrate(self, con) -> None:
        con.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
        applied = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]
        if applied > SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema version {applied}, newer than this harness "
                             f"understands ({SCHEMA_VERSION}); upgrade harness or use another --harness-store")
        for version, (name, sql) in enumerate(MIGRATIONS, start=1):
            if version <= applied:
                continue
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(sql)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, _now()])
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        with self.connect() as con:
            return con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]

    # --- writing -------------------------------------------------------------------------

    def start_run(self, experiment: str, *, spec_file: str | None, config: dict, provenance: dict | None = None) -> str:
        run_id = f"{_now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        with self.connect() as con:
            con.execute("INSERT INTO runs (run_id, experiment, spec_file, status, started_at, config, provenance, "
                        "worker) VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
                        [run_id, experiment, spec_file, _now(), _json(config), _json(provenance),
                         workers.worker_id()])
        return run_id

    def finish_run(self, run_id: str, record: RunRecord) -> None:
        """Write all results and mark the run complete, atomically."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for table, rows in (("checks", record.checks), ("approaches", self._portable_rows(record.approaches)),
                                    ("metrics", record.metrics), ("predictions", record.predictions),
                                    ("curves", record.curves), ("gates", record.gates)):
                    self._insert(con, table, run_id, rows)
                ledger.write(con, run_id, record.looks, judged_at=_now())
                fields = {k: v for k, v in record.run_fields.items() if k in _RUN_FIELDS}
                if "provenance" in fields:
                    fields["provenance"] = _json(fields["provenance"])
                assignments = "".join(f", {k} = ?" for k in fields)
                con.execute(f"UPDATE runs SET status = 'complete', finished_at = ?{assignments} WHERE run_id = ?",
                            [_now(), *fields.values(), run_id])
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise

    def fail_run(self, run_id: str, error: str, record: RunRecord | None = None) -> None:
        """Mark a run failed; its checks and input hashes are kept (they say why), nothing else."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                fields = {}
                if record is not None:
                    self._insert(con, "checks", run_id, record.checks)
                    # what is known of the input (e.g. the data file's hash) says which file failed
                    fields = {k: v for k, v in record.run_fields.items() if k in _RUN_FIELDS and k != "provenance"}
                assignments = "".join(f", {k} = ?" for k in fields)
                con.execute(f"UPDATE runs SET status = 'failed', finished_at = ?, error = ?{assignments} "
                            f"WHERE run_id = ?", [_now(), error, *fields.values(), run_id])
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise

    # --- paths that travel with the store --------------------------------------------------
    # Adapters are trained beside the store (.harness/). Their paths are written relative to the
    # store's folder, so that .harness/ copied to another machine or folder (train on a GPU,
    # gate in CI) still finds them; an absolute path written by an older harness stays as it is.

    def _portable(self, path: str | None) -> str | None:
        if not path or self._memory:
            return path
        folder, where = Path(self.path).resolve().parent, Path(path).resolve()
        return where.relative_to(folder).as_posix() if where.is_relative_to(folder) else str(path)

    def _located(self, path: str | None) -> str | None:
        if not path or self._memory or Path(path).is_absolute():
            return path
        return str(Path(self.path).resolve().parent / path)

    def _portable_rows(self, rows: list[dict]) -> list[dict]:
        return [{**r, "adapter_path": self._portable(r.get("adapter_path"))} if r.get("adapter_path") else r
                for r in rows]

    @staticmethod
    def _insert(con, table: str, run_id: str, rows: list[dict]) -> None:
        if not rows:
            return
        columns = _COLUMNS[table]
        data = {c: [] for c in columns}
        for row in rows:
            for c in columns:
                value = run_id if c == "run_id" else row.get(c)
                data[c].append(_json(value) if c in _JSON_COLUMNS and not isinstance(value, str) else value)
        arrow = pa.table({c: pa.array(v) for c, v in data.items()})  # noqa: F841  (read by DuckDB below)
        con.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM arrow")

    def rejudge(self, changed: list[tuple[str, GateResult]]) -> None:
        """Replace gate rows of finished runs, all in one transaction: a family-wise correction
        (harness/judge/family.py) re-judges rules after the runs are recorded. The ledger's
        record of each look follows its rule's outcome."""
        if not changed:
            return
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for run_id, gate in changed:
                    con.execute("UPDATE gates SET outcome = ?, message = ?, details = ? WHERE run_id = ? AND gate = ?",
                                [gate.outcome, gate.message, _json(gate.details), run_id, gate.gate])
                    if gate.details.get("look_id"):
                        con.execute("UPDATE test_looks SET outcome = ? WHERE run_id = ? AND look_id = ?",
                                    [gate.outcome, run_id, gate.details["look_id"]])
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise

    # --- caches --------------------------------------------------------------------------

    def cached_outputs(self, keys: list[str]) -> dict[str, dict]:
        if not keys:
            return {}
        with self.connect(read_only=True) as con:
            wanted = pa.table({"key": pa.array(sorted(set(keys)), pa.string())})  # noqa: F841  (read below)
            cur = con.execute("SELECT c.* FROM output_cache c JOIN wanted w ON c.key = w.key")
            names = [d[0] for d in cur.description]
            return {row[0]: dict(zip(names, row)) for row in cur.fetchall()}

    def cache_outputs(self, rows: list[dict]) -> None:
        if not rows:
            return
        columns = ["key", "prediction", "label_logprobs", "latency_ms", "prompt_tokens", "generated_tokens"]
        arrow = pa.table({c: pa.array([r.get(c) for r in rows]) for c in columns})  # noqa: F841
        with self.connect() as con:
            con.execute(f"INSERT INTO output_cache ({', '.join(columns)}, created_at) "
                        f"SELECT {', '.join(columns)}, ? FROM arrow ON CONFLICT DO NOTHING", [_now()])

    def cached_adapter(self, key: str) -> dict | None:
        rows = self.query("SELECT * FROM adapter_cache WHERE key = ?", [key])
        if not rows:
            return None
        row = rows[0]
        row["result"] = json.loads(row["result"]) if row["result"] else {}
        row["adapter_path"] = self._located(row["adapter_path"])
        return row

    def cache_adapter(self, key: str, adapter_path: str, adapter_sha256: str, result: dict) -> None:
        with self.connect() as con:
            con.execute("INSERT INTO adapter_cache VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                        "adapter_path = excluded.adapter_path, adapter_sha256 = excluded.adapter_sha256, "
                        "result = excluded.result, created_at = excluded.created_at",
                        [key, self._portable(adapter_path), adapter_sha256, _json(result), _now()])

    # --- sweeps ---------------------------------------------------------------------------

    def record_trials(self, rows: list[dict]) -> None:
        """Insert or update finished sweep trials by (study, number): each is stored exactly once."""
        if not rows:
            return
        rows = self._portable_rows(rows)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _TRIAL_COLUMNS[3:])
        sql = (f"INSERT INTO sweep_trials ({', '.join(_TRIAL_COLUMNS)}) VALUES "
               f"({', '.join('?' for _ in _TRIAL_COLUMNS)}) ON CONFLICT DO UPDATE SET {updates}")
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for row in rows:
                    con.execute(sql, [_json(row.get(c)) if c in _TRIAL_JSON else row.get(c) for c in _TRIAL_COLUMNS])
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise

    def trials(self, *, study: str | None = None, experiment: str | None = None) -> list[Trial]:
        """Sweep trials, oldest first."""
        sql, params = "SELECT * FROM sweep_trials WHERE 1=1", []
        if study is not None:
            sql, params = sql + " AND study = ?", params + [study]
        if experiment is not None:
            sql, params = sql + " AND experiment = ?", params + [experiment]
        rows = self.query(sql + " ORDER BY study, number", params)
        for row in rows:
            for key in _TRIAL_JSON:
                decoded = json.loads(row[key]) if isinstance(row.get(key), str) else None
                row[key] = decoded if decoded is not None else ([] if key == "curves" else {})
            row["adapter_path"] = self._located(row.get("adapter_path"))
        return [Trial.from_row(r) for r in rows]

    # --- reading -------------------------------------------------------------------------

    def query(self, sql: str, params: list | None = None) -> list[dict]:
        with self.connect(read_only=True) as con:
            cur = con.execute(sql, params or [])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def runs(self, experiment: str | None = None, status: str | None = None) -> list[Run]:
        """Runs, oldest first."""
        return [r.run for r in self.stored_runs(experiment, status)]

    def latest_run(self, experiment: str, status: str = "complete") -> Run | None:
        runs = self.runs(experiment, status)
        return runs[-1] if runs else None

    def stored_runs(self, experiment: str | None = None, status: str | None = None, *,
                    run_id: str | None = None) -> list[StoredRun]:
        """Runs, oldest first, each with its metrics, gates and approaches, typed, and upgraded
        from an older harness's shapes (`upgrade.upgrade_run`)."""
        sql, params = "SELECT * FROM runs WHERE 1=1", []
        for column, value in (("experiment", experiment), ("status", status), ("run_id", run_id)):
            if value is not None:
                sql, params = sql + f" AND {column} = ?", params + [value]
        runs = [_decode(r) for r in self.query(sql + " ORDER BY started_at, run_id", params)]
        if not runs:
            return []
        wanted = None if experiment is None and run_id is None else [r["run_id"] for r in runs]
        grouped = {table: self._rows_of_runs(table, wanted) for table in ("metrics", "gates", "approaches")}
        out = []
        for row in runs:
            rid = row["run_id"]
            metrics, gates, approaches = (grouped[t].get(rid, []) for t in ("metrics", "gates", "approaches"))
            upgrade.upgrade_run(row, gates, approaches, metrics)
            table: MetricTable = {}
            for m in metrics:
                table.setdefault(m["approach"], {}).setdefault(m["split"], {})[m["metric"]] = m["value"]
            out.append(StoredRun(run=Run.from_row(row), metrics=table, gates=[GateResult.from_row(g) for g in gates],
                                 approaches=[ApproachRecord.from_row({**a, "adapter_path": self._located(
                                     a.get("adapter_path"))}) for a in approaches]))
        return out

    def stored_run(self, run_id: str) -> StoredRun | None:
        found = self.stored_runs(run_id=run_id)
        return found[0] if found else None

    def with_detail(self, stored: StoredRun) -> StoredRun:
        """The run with its checks, loss curves and test predictions read too."""
        rid = stored.run.run_id
        return replace(stored, checks=self.rows("checks", rid),
                       curves=[CurvePoint.from_row(c) for c in self.rows("curves", rid)],
                       predictions=self.rows("predictions", rid, split="test"))

    def gates(self, run_id: str) -> list[GateResult]:
        """A run's gate outcomes, typed."""
        stored = self.stored_run(run_id)
        return stored.gates if stored else []

    def approaches(self, run_id: str) -> list[ApproachRecord]:
        stored = self.stored_run(run_id)
        return stored.approaches if stored else []

    def curves(self, run_id: str) -> list[CurvePoint]:
        return [CurvePoint.from_row(c) for c in self.rows("curves", run_id)]

    def rows(self, table: str, run_id: str, **where) -> list[dict]:
        """A run's rows of a table with no typed record of its own (checks, predictions), decoded."""
        if table not in _COLUMNS:
            raise ValueError(f"unknown table {table!r}")
        sql, params = f"SELECT * FROM {table} WHERE run_id = ?", [run_id]
        for column, value in where.items():
            if column not in _COLUMNS[table]:
                raise ValueError(f"unknown column {column!r} of {table}")
            sql, params = sql + f" AND {column} = ?", params + [value]
        order = {"predictions": " ORDER BY approach, split, idx", "curves": " ORDER BY approach, split, step"}
        return [_decode(r) for r in self.query(sql + order.get(table, ""), params)]

    def _rows_of_runs(self, table: str, run_ids: list[str] | None) -> dict[str, list[dict]]:
        """Rows of a per-run table, decoded, grouped by run id in the order they were written;
        of the given runs, or of every run."""
        if run_ids is None:
            rows = self.query(f"SELECT * FROM {table}")
        else:
            rows = self.query(f"SELECT * FROM {table} WHERE list_contains(?, run_id)", [run_ids])
        grouped: dict[str, list[dict]] = {}
        for row in rows:
            grouped.setdefault(row["run_id"], []).append(_decode(row))
        return grouped


def _decode(row: dict) -> dict:
    for key in ("config", "provenance", "lines", "details"):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row


def best_of_trials(trials: list[Trial]) -> Trial | None:
    """Among sweep trial rows, the complete one with the best value; ties go to the earlier trial.

    The one rule for which trial won: the sweep picks the candidate with it and the report marks
    the same trial as best."""
    complete = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    return max(complete, key=lambda t: (t.value, -t.number), default=None)
