"""`--json` on `harness runs`, `trials`, `data check` and `estimate`: the same facts as the text,
as one JSON document on stdout, and the same exit status."""
import json

from support.report_store import build_store
from tiny import write_classification_jsonl

from harness import cli
from harness.judge import decision


def test_runs_and_trials_as_json(tmp_path, capsys):
    store, (first, broken, second) = build_store(tmp_path / "h.duckdb")
    assert cli.main(["runs", "sarcasm", "--store", str(store.path), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in runs] == [first, broken, second]
    assert [r["status"] for r in runs] == ["complete", "failed", "complete"]
    assert runs[2]["verdict"] == decision.decide(store.stored_run(second).gates).verdict == "Fine-tune"
    assert runs[0]["gates"]["five_percent_rule"] == "FAIL" and runs[1]["error"].startswith("DataError")
    assert cli.main(["trials", "sarcasm", "--store", str(store.path), "--json"]) == 0
    trials = json.loads(capsys.readouterr().out)
    assert [t["number"] for t in trials] == [0, 1, 2, 3, 4, 5]
    assert trials[2]["state"] == "COMPLETE" and trials[2]["value"] == 0.80 and trials[3]["error"]


def test_data_check_as_json_keeps_the_exit_status(tmp_path, capsys):
    good = write_classification_jsonl(tmp_path / "d.jsonl", n=40)
    assert cli.main(["data", "check", str(good), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["passed"] is True and found["samples"] == 40 and found["task"] == "classification"
    assert {c["name"] for c in found["checks"]} >= {"parse", "duplicates"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text() + "{not json\n")
    assert cli.main(["data", "check", str(bad), "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    errors = [c for c in found["checks"] if c["level"] == "error"]
    assert found["passed"] is False and errors and errors[0]["lines"] == [41]


def test_estimate_as_json(capsys):
    code = cli.main(["estimate", "llama-70b", "--device", "cpu", "--json"])
    found = json.loads(capsys.readouterr().out)
    [e] = found["estimates"]
    assert e["model"] == "llama-70b" and e["method"] == "qlora"
    assert e["total_bytes"] == sum(e["components"].values()) > 0
    assert found["device"] == "cpu" and (code == 0) == e["fits"]
