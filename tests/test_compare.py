"""`harness compare`: one stored run against another, per gate and per approach, found by run id
or by the git commit the store recorded; markdown a pull request can show; exit 1 when worse."""
import json
import subprocess

import pytest
from markdown_it import MarkdownIt
from support.report_store import XSS, _record, build_store, experiment_config

from harness import cli
from harness.report import compare
from harness.store import Store


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    store, (first, broken, second) = build_store(tmp_path_factory.mktemp("compare") / "h.duckdb")
    return store, first, broken, second


def test_a_better_run_lists_what_improved_with_a_paired_interval(built):
    store, first, _, second = built
    found = compare.compare(store, store.stored_runs(run_id=first)[0], store.stored_runs(run_id=second)[0])
    gates = {g["gate"]: g for g in found["gates"]}
    assert (gates["five_percent_rule"]["base"], gates["five_percent_rule"]["head"]) == ("FAIL", "PASS")
    assert gates["five_percent_rule"]["change"] == "better" and gates["overfit"]["change"] == "same"
    assert found["worse"] == []
    assert (found["base"]["verdict"], found["head"]["verdict"]) == ("Keep prompting", "Fine-tune")
    cand = next(a for a in found["approaches"] if a["approach"] == "candidate")
    # the candidate's test rows: 1,0,1,0,1,1,0,1 then 0,1,1,1,1,1,1,1 (tests/support/report_store.py)
    assert (cand["base"], cand["head"]) == (0.625, 0.875) and cand["delta"] == pytest.approx(0.25)
    assert cand["paired_rows"] == 8 and cand["paired_on"] == "the same test split"
    assert (cand["fixed_count"], cand["broken_count"]) == (3, 1)
    assert sorted(e["row"] for e in cand["fixed"]) == [1, 3, 6] and [e["row"] for e in cand["broken"]] == [0]
    assert cand["low"] <= cand["delta"] <= cand["high"] and cand["low"] < cand["high"]
    assert "data changed" in found["changes"]  # the two runs read different data files (their hashes)


def test_a_worse_run_fails_the_command_and_the_markdown_keeps_hostile_text_as_text(built, capsys):
    store, first, _, second = built
    code = cli.main(["compare", "--base", second, "--head", first, "--store", str(store.path)])
    text = capsys.readouterr().out
    assert code == 1
    assert "### sarcasm: gets worse: five_percent_rule, verdict" in text
    md = MarkdownIt("commonmark").enable("table")
    html = md.render(text)
    assert "<script" not in html and "&lt;script&gt;" in html  # the hostile row's input, as text
    assert XSS not in text
    rows = [t for t in md.parse(text) if t.type == "tr_open"]
    assert len(rows) == (1 + 3) + (1 + 3)  # gates: header + 3; approaches: header + the 3 both runs had
    assert cli.main(["compare", "--base", first, "--head", second, "--store", str(store.path), "--format",
                     "json"]) == 0
    [found] = json.loads(capsys.readouterr().out)
    assert found["worse"] == [] and found["head"]["run_id"] == second


def test_a_git_branch_finds_the_latest_complete_run_recorded_at_its_commit(tmp_path, capsys):
    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q", "-b", "main")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "one")
    main_sha = git("rev-parse", "HEAD")
    git("checkout", "-q", "-b", "feature")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "two")
    store = Store(tmp_path / "h.duckdb")
    for sha, right, outcome in ((main_sha, [1, 1, 1, 0], "PASS"), (git("rev-parse", "HEAD"), [1, 0, 0, 0], "FAIL")):
        record = _record(candidate_right=right, baseline_right=[0, 1, 0, 0], outcome=outcome, data_sha="11" * 32)
        record.run_fields["provenance"] = {**record.run_fields["provenance"], "git_commit": sha}
        store.finish_run(store.start_run("sarcasm", spec_file="x.py", config=experiment_config()), record)
    code = cli.main(["compare", "sarcasm", "--base", "main", "--store", str(tmp_path / "h.duckdb"),
                     "--root", str(tmp_path), "--format", "json"])
    [found] = json.loads(capsys.readouterr().out)
    assert found["base"]["commit"] == main_sha and found["head"]["commit"] != main_sha
    assert code == 1 and found["worse"][0] == "five_percent_rule"
    assert cli.main(["compare", "sarcasm", "--base", "no-such-branch", "--store", str(tmp_path / "h.duckdb"),
                     "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'no-such-branch' is neither a run id nor a git ref here" in err and err.count("\n") == 1
