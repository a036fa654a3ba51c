"""The pytest plugin, driven through pytester on the tiny model: collection, verdicts, errors."""
import json
from pathlib import Path

import pytest

from harness.store import Store
from tiny import write_classification_jsonl

SPEC = """
from harness import Experiment, QLoRA, baselines

experiment = Experiment(
    name="toy",
    data="data.jsonl",
    model={model!r},
    metric="accuracy",
    split=(48, 16, 16),
    baselines=[baselines.zero_shot("system.md"), baselines.few_shot("system.md", k=2)],
    underpowered="warn", candidate=QLoRA(r=8, alpha=16, learning_rate=3e-2, epochs=4, batch_size=8, warmup_ratio=0.0),
    {extra}
)


def test_user_check(result):
    assert result.candidate.metrics["test"]["accuracy"] >= 0
    assert set(result.baselines) == {{"zero_shot", "few_shot_k2"}}
"""


@pytest.fixture
def project(heavy_modules, pytester, tiny_model_dir, tmp_path):
    pytester.makeconftest('pytest_plugins = ["harness.plugin"]')
    write_classification_jsonl(pytester.path / "data.jsonl", n=80)
    (pytester.path / "system.md").write_text("you label news headlines. answer with the label only: 1 or 0.")

    def make(extra: str = "", model=None, **files):
        pytester.makepyfile(test_toy=SPEC.format(model=str(model or tiny_model_dir), extra=extra), **files)
        return pytester

    return make


def _store(pytester):
    return Store(pytester.path / ".harness" / "harness.duckdb")


def test_each_gate_is_its_own_item(project):
    pytester = project()
    result = pytester.runpytest("--collect-only", "-q")
    lines = result.stdout.lines
    for item in ("test_toy.py::toy::data_quality", "test_toy.py::toy::five_percent_rule",
                 "test_toy.py::toy::overfit", "test_toy.py::toy::regression", "test_toy.py::test_user_check"):
        assert item in lines


def test_a_run_gives_verdicts_a_store_and_a_report(project, monkeypatch):
    pytester = project()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "step-summary.md"))
    result = pytester.runpytest("-v", "-p", "no:cacheprovider", "--junitxml=junit.xml")
    out = result.stdout.str()
    assert "test_toy.py::toy::data_quality PASSED" in out
    assert "test_toy.py::toy::test_user_check" not in out  # not a node of the experiment
    assert "test_toy.py::test_user_check PASSED" in out
    assert "harness verdicts" in out and "five_percent_rule" in out
    store = _store(pytester)
    [run] = store.runs("toy")
    assert run.status == "complete" and run.task == "classification"
    gates = {g["gate"]: g for g in store.rows("gates", run.run_id)}
    assert set(gates) == {"data_quality", "five_percent_rule", "overfit", "regression"}
    # the forgetting probe on base and candidate; the MMLU suite SKIPs: the tiny model answers at chance
    parts = gates["regression"]["details"]["instruments"]
    assert parts["forgetting_probe"]["details"]["n"] == 250 and parts["capability_suite"]["outcome"] == "SKIP"
    regression_metrics = {(m["approach"], m["metric"]) for m in store.rows("metrics", run.run_id, split="regression")}
    assert regression_metrics == {("base", "wikipedia_nats_per_token"), ("candidate", "wikipedia_nats_per_token")}
    rule = gates["five_percent_rule"]
    assert rule["details"]["picked_on"] == "val" and rule["details"]["n"] == 16
    # the item's outcome is the verdict's outcome
    expect = "PASSED" if rule["outcome"] == "PASS" else "FAILED"
    assert f"test_toy.py::toy::five_percent_rule {expect}" in out
    preds = store.rows("predictions", run.run_id, approach="candidate", split="test")
    assert len(preds) == 16 and all(p["prediction"] in ("0", "1") for p in preds)
    assert store.curves(run.run_id)
    assert (pytester.path / "reports" / "index.html").is_file()
    assert (pytester.path / "reports" / "toy.html").is_file()
    junit = (pytester.path / "junit.xml").read_text()
    assert 'name="five_percent_rule"' in junit
    # results.json beside the report, and the same run as markdown in GitHub's job summary
    from harness.judge import decision

    found = json.loads((pytester.path / "reports" / "results.json").read_text())
    assert f"harness: results {pytester.path / 'reports' / 'results.json'}" in out
    [shown] = found["runs"]
    assert shown["run_id"] == run.run_id
    assert shown["verdict"]["verdict"] == decision.decide(store.stored_runs("toy")[-1].gates).verdict
    assert {g["gate"]: g["outcome"] for g in shown["gates"]} == {k: g["outcome"] for k, g in gates.items()}
    assert found["passed"] == (result.ret == 0)
    summary = (pytester.path / "step-summary.md").read_text()
    assert summary.startswith("## harness: CI ") and "| toy | **" in summary


def test_the_toy_task_is_learned_and_the_item_reports_the_stored_verdict(project):
    """The toy labels follow a word the candidate learns; the item's outcome is the stored verdict's.

    (Whether it PASSes depends on how lucky a random model's prompt baselines get on 16 rows;
    the gate's statistics are tested in test_gates.py and test_stats.py.)"""
    pytester = project()
    result = pytester.runpytest("-k", "five_percent_rule")
    store = _store(pytester)
    run = store.runs("toy")[-1]
    [gate] = store.rows("gates", run.run_id, gate="five_percent_rule")
    passed = gate["outcome"] == "PASS"
    result.assert_outcomes(passed=int(passed), failed=int(not passed), deselected=4)
    if not passed:
        assert f"five_percent_rule {gate['outcome']}: accuracy" in result.stdout.str()
    accuracy = {(m["approach"], m["split"]): m["value"] for m in store.rows("metrics", run.run_id)
                if m["metric"] == "accuracy"}
    assert accuracy[("candidate", "val")] >= 0.9 and accuracy[("candidate", "test")] >= 0.85


def test_unknown_field_fails_collection_with_one_line(project):
    pytester = project(extra="lora_rank=8,")
    result = pytester.runpytest()
    out = result.stdout.str()
    assert "test_toy.py: Experiment has no field 'lora_rank'; did you mean QLoRA(r=...)?" in out
    assert "Traceback" not in out
    assert result.ret != 0


def test_missing_data_file_fails_every_item_with_one_line_and_records_the_run(project):
    pytester = project()
    (pytester.path / "data.jsonl").unlink()
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=4, errors=1)  # four gates fail; the user test's fixture errors
    out = result.stdout.str()
    assert "toy: data file data.jsonl not found; check the path in the spec" in out
    assert "Traceback" not in out
    [run] = _store(pytester).runs("toy")
    assert run.status == "failed" and "not found" in run.error


def test_unknown_model_fails_with_the_fix(project):
    pytester = project(model="no-such-model")
    result = pytester.runpytest("-k", "data_quality")
    out = result.stdout.str()
    assert "unknown model 'no-such-model': use 'smollm2-135m-instruct' (embedded)" in out
    assert _store(pytester).runs("toy")[0].status == "failed"


def test_error_level_data_stops_the_experiment(project):
    pytester = project()
    with open(pytester.path / "data.jsonl", "a") as f:
        f.write("{broken\n")
    result = pytester.runpytest("-k", "data_quality")
    out = result.stdout.str()
    assert "invalid_json: 1 row(s) unusable; first at line 81" in out
    [run] = _store(pytester).runs("toy")
    assert run.status == "failed"
    assert [c["name"] for c in _store(pytester).rows("checks", run.run_id) if c["level"] == "error"] == \
        ["invalid_json"]
    assert not _store(pytester).rows("predictions", run.run_id)


def test_result_fixture_needs_one_experiment(pytester):
    pytester.makeconftest('pytest_plugins = ["harness.plugin"]')
    pytester.makepyfile(test_none="def test_x(result):\n    pass\n")
    out = pytester.runpytest().stdout.str()
    assert "the result fixture needs exactly one Experiment at module level (found 0)" in out


def test_verdict_is_in_user_properties(project):
    pytester = project()
    pytester.runpytest("-k", "data_quality", "--junitxml=j.xml")
    junit = (pytester.path / "j.xml").read_text()
    assert "harness_verdict" in junit and json.dumps("data_quality")[1:-1] in junit


def test_a_store_moved_to_another_folder_rejudges_with_no_training_and_no_scoring(project, tmp_path):
    """Train on one machine, gate on another: the project and its .harness/ (store and adapters)
    moved to a new folder rerun with nothing trained or scored again, and judge the same. The
    .harness/ is moved, not copied, so nothing can still be read from where it was."""
    import shutil
    import subprocess
    import sys

    pytester = project()
    pytester.runpytest("-p", "no:cacheprovider", "--harness-no-report")
    moved = tmp_path / "ci-machine" / "repo"
    shutil.copytree(pytester.path, moved, ignore=shutil.ignore_patterns(".harness"))
    shutil.move(str(pytester.path / ".harness"), moved / ".harness")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--harness-no-report"],
                          cwd=moved, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert "candidate adapter reused from the cache" in out and "step 24/24" not in out, out[-3000:]
    for what in ("zero_shot test: 16 of 16", "candidate test: 16 of 16", "forgetting probe, candidate: 250 of 250"):
        assert f"{what} outputs from the cache" in out, out[-3000:]
    store = Store(moved / ".harness" / "harness.duckdb")
    first, second = store.stored_runs("toy")
    assert {g.gate: g.outcome for g in first.gates} == {g.gate: g.outcome for g in second.gates}
    adapter = Path(second.candidate.adapter_path)
    assert adapter.is_relative_to(moved / ".harness") and (adapter / "adapter_config.json").is_file()
    stored = store.query("SELECT adapter_path FROM adapter_cache")[0]["adapter_path"]
    assert not Path(stored).is_absolute()  # written relative to the store's folder


def test_an_unchanged_rerun_recomputes_nothing_and_a_new_threshold_rejudges(project):
    pytester = project()
    first = pytester.runpytest("-p", "no:cacheprovider").stdout.str()
    assert "outputs from the cache" not in first and "step 24/24" in first
    second = pytester.runpytest("-p", "no:cacheprovider").stdout.str()
    assert "candidate adapter reused from the cache" in second and "step 24/24" not in second
    for what in ("zero_shot val: 16 of 16", "zero_shot test: 16 of 16", "candidate test: 16 of 16",
                 "forgetting probe, base: 250 of 250", "forgetting probe, candidate: 250 of 250",
                 "capability suite screen, base: 912 of 912"):
        assert f"{what} outputs from the cache" in second
    # a new threshold re-judges the same outputs (no training, no scoring), and that is a second
    # look at the same test rows: with the default budget of one look it can neither pass nor fail
    project(extra="threshold=5.0,")
    third = pytester.runpytest("-p", "no:cacheprovider", "-k", "five_percent_rule")
    third.assert_outcomes(failed=1, deselected=4)
    assert "step " not in third.stdout.str() and "is spent" in third.stdout.str()
    store = _store(pytester)
    runs = store.runs("toy")
    assert [r.status for r in runs] == ["complete"] * 3
    preds = [sorted((p["split"], p["idx"], p["prediction"]) for p in store.rows("predictions", r.run_id))
             for r in runs]
    assert preds[0] == preds[1] == preds[2]
    first_rule, *_, third_rule = [store.stored_run(r.run_id).gate("five_percent_rule") for r in runs]
    assert third_rule.outcome == "INCONCLUSIVE" and third_rule.details["threshold"] == 5.0
    assert third_rule.details["look"] == 2 and third_rule.details["overlaps"] == [runs[0].run_id]
    assert "look" not in first_rule.message  # an unchanged rerun is the same look, said once


OUTCOMES_CONFTEST = '''
from types import SimpleNamespace

from harness import plugin
from harness.judge.outcomes import GateResult

pytest_plugins = ["harness.plugin"]
GATES = {
    "data_quality": GateResult("data_quality", "PASS", "no errors"),
    "five_percent_rule": GateResult("five_percent_rule", "PASS", "accuracy 0.90 vs zero_shot 0.50"),
    "overfit": GateResult("overfit", "PASS", "no sign of overfitting"),
    "regression": GateResult("regression", "INCONCLUSIVE", "straddles -2 pts", {"allow_inconclusive": True}),
}
_real_result = plugin._Session.result


def pytest_configure(config):
    plugin._Session.result = lambda self, experiment: SimpleNamespace(gates=GATES)


def pytest_unconfigure(config):  # in-process runs share the module: later tests get the real engine back
    plugin._Session.result = _real_result
'''


def test_an_allowed_inconclusive_is_an_xfail_in_pytests_own_outcome(pytester, tiny_model_dir):
    """Gate outcomes set by hand (no run): the items and the session report what the decider says."""
    pytester.makeconftest(OUTCOMES_CONFTEST)
    pytester.makepyfile(test_toy=SPEC.format(model=str(tiny_model_dir), extra="").split("\n\ndef test_user")[0])
    result = pytester.runpytest("-rx", "--harness-no-report")
    result.assert_outcomes(passed=3, xfailed=1)
    out = result.stdout.str()
    assert "XFAIL test_toy.py::toy::regression - regression INCONCLUSIVE, let through by the spec's " \
           "allow_inconclusive" in out
    assert "regression         INCONCLUSIVE (xfail)" in out
    strict = pytester.runpytest("--harness-strict", "--harness-no-report")  # a lane where allowed is not enough
    strict.assert_outcomes(passed=3, failed=1)
    assert "regression INCONCLUSIVE: straddles -2 pts" in strict.stdout.str()
