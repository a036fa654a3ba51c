"""results.json and its markdown: valid against the shipped schema, the same verdict the decider
gives, hostile text kept as text, and `harness summary` printing either for a stored run."""
import json

import pytest
from markdown_it import MarkdownIt
from support.report_store import XSS, build_store

from harness import cli
from harness.judge import decision
from harness.judge.outcomes import GATES, OUTCOMES
from harness.report import results


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    built, _ = build_store(tmp_path_factory.mktemp("results") / "h.duckdb")
    return built


@pytest.fixture(scope="module")
def schema():
    return json.loads(results.SCHEMA_FILE.read_text(encoding="utf-8"))


def _validate(found, schema):
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(found)


def test_every_stored_run_validates_against_the_schema_and_carries_the_deciders_verdict(store, schema):
    runs = store.stored_runs()
    found = results.results(runs)
    _validate(json.loads(json.dumps(found, allow_nan=False)), schema)  # plain JSON: no NaN, no datetime
    assert [r["run_id"] for r in found["runs"]] == [s.run.run_id for s in runs]
    for shown, stored in zip(found["runs"], runs):
        said = decision.decide(stored.gates, status=stored.run.status)
        assert (shown["verdict"]["verdict"], shown["verdict"]["passed"]) == (said.verdict, said.passed)
        assert [g["item"] for g in shown["gates"]] == [decision.item_outcome(g) for g in
                                                        sorted(stored.gates, key=lambda g: GATES.index(g.gate))]
    assert found["passed"] is False  # the store holds a failed run and a FAIL
    assert {r["status"] for r in found["runs"]} == {"complete", "failed"}


def test_the_schema_names_exactly_what_the_code_can_write(schema):
    run = schema["$defs"]["run"]["properties"]
    assert set(run["gates"]["items"]["properties"]["outcome"]["enum"]) == set(OUTCOMES)
    assert set(run["gates"]["items"]["properties"]["item"]["enum"]) == {
        decision.ITEM_PASSED, decision.ITEM_SKIPPED, decision.ITEM_XFAILED, decision.ITEM_FAILED}
    assert set(run["verdict"]["properties"]["verdict"]["enum"]) == {
        decision.FINE_TUNE, decision.KEEP_PROMPTING, decision.INCONCLUSIVE_VERDICT, decision.RUN_FAILED,
        decision.RUNNING}
    assert schema["properties"]["schema_version"]["const"] == results.SCHEMA_VERSION


def test_a_change_the_schema_does_not_allow_is_caught(store, schema):
    """The validation above can fail: a field renamed or an outcome misspelt is refused."""
    import jsonschema

    found = json.loads(json.dumps(results.results(store.stored_runs())))
    found["runs"][0]["gates"][0]["outcome"] = "PASSED"
    with pytest.raises(jsonschema.ValidationError):
        _validate(found, schema)
    found = json.loads(json.dumps(results.results(store.stored_runs())))
    found["runs"][0]["verdict"]["ok"] = found["runs"][0]["verdict"].pop("passed")
    with pytest.raises(jsonschema.ValidationError):
        _validate(found, schema)


def test_the_markdown_is_one_table_row_per_run_and_hostile_text_stays_text(store):
    latest = [store.stored_runs(name)[-1] for name in ("sarcasm", "headlines.v2", "baselines-only")]
    found = results.results(latest)
    # gate messages quote data and model output: plant hostile text and a pipe where they go
    found["runs"][0]["gates"][0]["message"] = f"a row said {XSS} | and a pipe"
    found["runs"][0]["experiment"] = "sarcasm|v2"
    text = results.markdown(found)
    md = MarkdownIt("commonmark").enable("table")
    html = md.render(text)
    tokens = md.parse(text)
    rows = [t for t in tokens if t.type == "tr_open"]
    assert len(rows) == 1 + 3  # the header and one row per run
    header = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "th_open"]
    shown_gates = header[2:-1]  # the gates any of these runs judged, in the order a run judges them
    assert header[:2] == ["experiment", "verdict"] and header[-1] == "candidate vs best baseline"
    assert shown_gates == [g for g in GATES if g in shown_gates] and len(shown_gates) >= 3
    cells = [tokens[i + 1].children for i, t in enumerate(tokens) if t.type == "td_open"]
    assert len(cells) == 3 * len(header)  # no pipe in a message split a cell
    assert "<script" not in html and "&lt;script&gt;" in html  # the planted message is shown, not run
    assert XSS not in text
    for stored in latest:
        assert f"<strong>{decision.decide(stored.gates, status=stored.run.status).verdict}</strong>" in html
    assert text.startswith("## harness: CI fails: ")


def test_harness_summary_prints_markdown_or_json_for_stored_runs(store, schema, capsys):
    path = str(store.path)
    assert cli.main(["summary", "--store", path]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    assert len(rows) == 1 + 3  # the header and the latest run of each of the three experiments
    assert cli.main(["summary", "sarcasm", "--store", path, "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    _validate(found, schema)
    assert [r["run_id"] for r in found["runs"]] == [store.stored_runs("sarcasm")[-1].run.run_id]
    first = store.stored_runs("sarcasm")[0].run.run_id
    assert cli.main(["summary", "--run", first, "--store", path, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["run_id"] == first
    assert cli.main(["summary", "--run", "nope", "--store", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness: no run 'nope' in ") and err.count("\n") == 1


def test_a_failed_run_shows_its_error_recommends_nothing_and_keeps_the_table_whole(store):
    """A run that ended before its gates (killed, or a data error) has no gate cells to fill: the
    table keeps one cell per column, and the run says why it failed instead of advising."""
    failed = [s for s in store.stored_runs("sarcasm") if s.run.status == "failed"]
    for runs in (failed, failed + store.stored_runs("headlines.v2")):
        found = results.results(runs)
        assert found["runs"][0]["recommendation"] is None
        text = results.markdown(found)
        tokens = MarkdownIt("commonmark").enable("table").parse(text)
        columns = sum(1 for t in tokens if t.type == "th_open")
        widths, cells = [], None
        for t in tokens:
            if t.type == "tr_open":
                cells = 0
            elif t.type == "td_open":
                cells += 1
            elif t.type == "tr_close" and cells:
                widths.append(cells)
        assert columns >= 3 and widths == [columns] * len(runs), text
        failed_block = text.split("<details>")[1]
        assert "- error: DataError: sarcasm: data file" in failed_block and "recommendation" not in failed_block
