import duckdb
import pytest

from harness.errors import StoreError
from harness.store import SCHEMA_VERSION, RunRecord, Store


def _record():
    return RunRecord(
        checks=[{"name": "size", "level": "info", "message": "m", "lines": [1, 2]}],
        approaches=[{"approach": "zero_shot", "kind": "baseline", "config": {"k": 0}, "prompt_tokens": 12.5}],
        metrics=[{"approach": "zero_shot", "split": "test", "metric": "accuracy", "value": 0.5}],
        predictions=[{"approach": "zero_shot", "split": "test", "idx": 0, "input": "<script>x</script>",
                      "reference": "1", "prediction": "0\x00'); DROP TABLE runs;--", "score": 0.0}],
        curves=[{"approach": "candidate", "step": 0, "epoch": 0.0, "split": "val", "loss": 1.5}],
        gates=[{"gate": "five_percent_rule", "outcome": "PASS", "message": "ok", "details": {"uplift": 0.2}}],
        run_fields={"task": "classification", "provenance": {"git_commit": "abc"}},
    )


def test_round_trip_keeps_every_value_byte_for_byte(tmp_path):
    store = Store(tmp_path / "h.duckdb")
    run_id = store.start_run("sarcasm", spec_file="experiments/test_sarcasm.py", config={"threshold": 0.05})
    store.finish_run(run_id, _record())
    again = Store(tmp_path / "h.duckdb")
    [run] = again.runs("sarcasm")
    assert run.status == "complete" and run.config == {"threshold": 0.05}
    assert run.provenance == {"git_commit": "abc"} and run.task == "classification"
    [pred] = again.rows("predictions", run_id)
    assert pred["input"] == "<script>x</script>" and pred["prediction"] == "0\x00'); DROP TABLE runs;--"
    assert again.rows("gates", run_id)[0]["details"] == {"uplift": 0.2}
    assert again.rows("checks", run_id)[0]["lines"] == [1, 2]
    assert again.curves(run_id)[0].loss == 1.5


def test_failed_run_keeps_its_checks_and_nothing_else(tmp_path):
    store = Store(tmp_path / "h.duckdb")
    run_id = store.start_run("x", spec_file=None, config={})
    store.fail_run(run_id, "data file broken", _record())
    [run] = store.runs("x")
    assert run.status == "failed" and run.error == "data file broken"
    assert store.rows("checks", run_id) and not store.rows("predictions", run_id)
    assert not store.rows("gates", run_id)


def test_a_failing_write_leaves_nothing_half_written(tmp_path):
    store = Store(tmp_path / "h.duckdb")
    run_id = store.start_run("x", spec_file=None, config={})
    bad = _record()
    bad.gates.append(dict(bad.gates[0]))  # duplicate primary key: the transaction must roll back
    with pytest.raises(duckdb.Error):
        store.finish_run(run_id, bad)
    assert not store.rows("predictions", run_id) and store.runs("x")[0].status == "running"


def test_schema_is_versioned_and_a_newer_store_is_refused(tmp_path):
    path = tmp_path / "h.duckdb"
    assert Store(path).schema_version() == SCHEMA_VERSION
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_migrations VALUES (?, 'from_the_future', now())", [SCHEMA_VERSION + 1])
    con.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this harness"):
        Store(path)


def test_unknown_table_or_column_is_refused():
    store = Store(":memory:")
    with pytest.raises(ValueError):
        store.rows("runs; DROP TABLE runs", "x")
    with pytest.raises(ValueError):
        store.rows("gates", "x", **{"gate = gate OR 1=1 --": "y"})


def test_an_old_store_is_migrated_on_open_and_keeps_its_runs(tmp_path, monkeypatch):
    import harness.store.db as store_mod

    path = tmp_path / "old.duckdb"
    old = store_mod.MIGRATIONS[:2]
    with monkeypatch.context() as m:
        m.setattr(store_mod, "MIGRATIONS", old)
        m.setattr(store_mod, "SCHEMA_VERSION", len(old))
        Store(path)
        run_id = "20260101T000000-old"  # written as that older harness wrote runs
        con = duckdb.connect(str(path))
        con.execute("INSERT INTO runs (run_id, experiment, status, started_at, config) "
                    "VALUES (?, 'x', 'complete', now(), '{\"a\": 1}')", [run_id])
        con.execute("INSERT INTO approaches (run_id, approach, kind) VALUES (?, 'zero_shot', 'baseline')", [run_id])
        con.close()
    s = Store(path)
    assert s.schema_version() == SCHEMA_VERSION > len(old)
    [row] = s.approaches(run_id)
    assert row.name == "zero_shot" and row.generated_tokens is None
    assert s.runs("x")[0].config == {"a": 1}
    # a column added later (best_baseline) is NULL on runs written before it; the upgrade fills it
    # in the way the engine picked then: the only baseline
    assert s.runs("x")[0].best_baseline == "zero_shot"


def test_rows_an_older_harness_wrote_read_back_in_todays_shape(tmp_path):
    """Each shape `store/upgrade.py` knows, written as the older harness wrote it, and read
    back as the one shape every reader knows."""
    store = Store(tmp_path / "h.duckdb")
    run_id = store.start_run("old", spec_file=None, config={"metric": "accuracy", "threshold": 0.05, "relative": True,
                                                            "confidence": 0.95})
    rule = {"baseline": "few_shot", "candidate": 0.8, "uplift": 0.14}   # no candidate_score, no settings
    store.finish_run(run_id, RunRecord(
        approaches=[{"approach": "zero_shot", "kind": "baseline", "config": {"system_prompt": "Label it."}},
                    {"approach": "few_shot", "kind": "baseline", "config": {}},
                    {"approach": "candidate", "kind": "candidate", "config": {"system_prompt": "cand.md"}}],
        metrics=[{"approach": "zero_shot", "split": "val", "metric": "accuracy", "value": 0.9},
                 {"approach": "few_shot", "split": "val", "metric": "accuracy", "value": 0.7}],
        gates=[{"gate": "five_percent_rule", "outcome": "PASS", "message": "m", "details": rule},
               {"gate": "overfit", "outcome": "PASS", "message": "m"}]))   # no details at all
    [stored] = store.stored_runs("old")
    assert stored.run.key_metric == "accuracy"          # from the rule's metric, else the config's
    assert stored.run.best_baseline == "few_shot"      # the one the rule was judged against, not the best on val
    details = stored.gate("five_percent_rule").details
    assert details["candidate_score"] == 0.8 and (details["threshold"], details["relative"]) == (0.05, True)
    assert stored.gate("overfit").details == {}
    # the candidate's "system_prompt" was its file's path; a baseline's has always been its text
    assert stored.candidate.config == {"system_prompt": None, "system_prompt_file": "cand.md"}
    assert stored.approach("zero_shot").config == {"system_prompt": "Label it."}
    # and a run the engine wrote today is left exactly as written
    new = store.start_run("new", spec_file=None, config={"threshold": 0.1})
    store.finish_run(new, RunRecord(
        approaches=[{"approach": "candidate", "kind": "candidate",
                     "config": {"system_prompt": "text", "system_prompt_file": "c.md"}}],
        gates=[{"gate": "five_percent_rule", "outcome": "SKIP", "message": "m",
                "details": {"threshold": 0.05, "candidate_score": 0.5, "metric": "f1"}}],
        run_fields={"key_metric": "f1", "best_baseline": "b"}))
    [today] = store.stored_runs("new")
    assert today.run.best_baseline == "b" and today.run.key_metric == "f1"
    assert today.gate("five_percent_rule").details == {"threshold": 0.05, "candidate_score": 0.5, "metric": "f1"}
    assert today.candidate.config == {"system_prompt": "text", "system_prompt_file": "c.md"}
