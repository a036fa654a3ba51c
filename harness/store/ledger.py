"""The ledger of looks: every judgement of the five-percent rule on a sealed test split, recorded
by the hashes of its rows, per experiment (tables `test_looks` and `test_look_rows`).

A run whose test rows overlap rows already judged is a repeated look; the arithmetic (which
look, which budget, what error rate) is `harness.judge.looks`. Reads open their own connection;
`write` is called by `Store.finish_run` inside the run's own transaction, so a run that fails
records no look.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from harness.judge import looks

if TYPE_CHECKING:
    from harness.store.db import Store


def priors(store: Store, experiment: str, row_keys: Iterable[str]) -> list[looks.Prior]:
    """The recorded looks of `experiment` that judged any of `row_keys`, oldest first."""
    keys = sorted(set(row_keys))
    if not keys:
        return []
    wanted = pa.table({"key": pa.array(keys, pa.string())})  # noqa: F841  (read by DuckDB below)
    with store.connect(read_only=True) as con:
        rows = con.execute(
            "SELECT l.look_id, l.run_id, l.look, l.looks_budget FROM test_looks l WHERE l.experiment = ? AND "
            "l.look_id IN (SELECT DISTINCT r.look_id FROM test_look_rows r JOIN wanted w ON r.row_hash = w.key "
            "WHERE r.experiment = ?) ORDER BY l.judged_at, l.look, l.run_id", [experiment, experiment]).fetchall()
    return [looks.Prior(*row) for row in rows]


def count(store: Store, experiment: str, row_keys: Iterable[str], judged: dict, declared: int) -> looks.Look:
    """The look a judgement of `row_keys` is (judged: what decides its verdict, see `looks.look_id`),
    under the budget `declared` unless earlier looks at these rows recorded theirs."""
    row_keys = list(row_keys)
    return looks.count(looks.look_id(row_keys, judged), priors(store, experiment, row_keys), declared)


def budget(store: Store, experiment: str, row_keys: Iterable[str], declared: int) -> tuple[int, int]:
    """(the budget that counts for these rows, the distinct looks already recorded at them): known
    before training, for the power statement; every look within a budget is judged at alpha / budget."""
    found = priors(store, experiment, row_keys)
    distinct = {p.look_id: p for p in reversed(found)}
    return looks.budget_for(found, declared), len(distinct)


def judged_keys(store: Store, experiment: str, other_than: str | None = None) -> frozenset[str]:
    """Every row key `experiment` has had judged on test (what `fresh_test` keeps out of test); with
    `other_than`, only at looks of other draws (`looks.draw_id`), so that the same draw run again
    finds the same rows kept out and draws the same fresh split."""
    with store.connect(read_only=True) as con:
        rows = con.execute("SELECT DISTINCT r.row_hash FROM test_look_rows r JOIN test_looks l ON "
                           "l.experiment = r.experiment AND l.look_id = r.look_id WHERE r.experiment = ? AND "
                           "(? IS NULL OR l.draw IS NULL OR l.draw <> ?)", [experiment, other_than, other_than]
                           ).fetchall()
    return frozenset(r[0] for r in rows)


def history(store: Store, experiment: str) -> list[dict]:
    """Every recorded look of `experiment`, oldest first."""
    with store.connect(read_only=True) as con:
        cur = con.execute("SELECT * FROM test_looks WHERE experiment = ? ORDER BY judged_at, look, run_id",
                          [experiment])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def entry(experiment: str, look: looks.Look, outcome: str, row_keys: Iterable[str], draw: str | None = None) -> dict:
    """A look to record with the run (`RunRecord.looks`); draw: its test split's `looks.draw_id`."""
    keys = sorted(set(row_keys))
    return {"experiment": experiment, "look_id": look.look_id, "look": look.look, "looks_budget": look.budget,
            "outcome": outcome, "n_rows": len(keys), "row_keys": keys, "draw": draw}


def write(con, run_id: str, entries: list[dict], *, judged_at: datetime) -> None:
    """Record a run's looks on `con`, inside the caller's transaction (judged_at: the store's clock,
    UTC). The rows of a look already recorded (the same judgement made again) are not written twice."""
    for e in entries:
        con.execute("INSERT INTO test_looks (experiment, look_id, run_id, judged_at, look, looks_budget, outcome, "
                    "n_rows, draw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [e["experiment"], e["look_id"], run_id, judged_at, e["look"], e["looks_budget"], e["outcome"],
                     e["n_rows"], e.get("draw")])
        rows = pa.table({"row_hash": pa.array(sorted(set(e["row_keys"])), pa.string())})  # noqa: F841
        con.execute("INSERT INTO test_look_rows (experiment, look_id, row_hash) SELECT ?, ?, row_hash FROM rows "
                    "ON CONFLICT DO NOTHING", [e["experiment"], e["look_id"]])


def rows(store: Store, experiment: str, look_id: str) -> frozenset[str]:
    """The row keys one recorded look judged."""
    with store.connect(read_only=True) as con:
        found = con.execute("SELECT row_hash FROM test_look_rows WHERE experiment = ? AND look_id = ?",
                            [experiment, look_id]).fetchall()
    return frozenset(r[0] for r in found)
