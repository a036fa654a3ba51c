"""One decider: the report's badge, each pytest gate item, `harness export` and the
recommendation all ask `judge.decision`, so they agree on every combination of outcomes."""
from __future__ import annotations

import re

import pytest

from harness.errors import HarnessError
from harness.export import export
from harness.judge import decision, recommendation
from harness.judge.decision import FINE_TUNE, INCONCLUSIVE_VERDICT, KEEP_PROMPTING
from harness.judge.outcomes import GateResult
from harness.plugin import GateFailed, act_on
from harness.report import write_reports
from harness.store import RunRecord, Store

ALLOWED = "INCONCLUSIVE-allowed"
OUTCOMES = ("PASS", "FAIL", "INCONCLUSIVE", ALLOWED, "SKIP")
RULE_DETAILS = {"baseline": "zero_shot", "candidate_score": 0.80, "baseline_score": 0.70, "uplift": 0.143,
                "low": 0.08, "high": 0.21, "threshold": 0.05, "relative": True, "n": 400, "confidence": 0.95,
                "metric": "accuracy", "n_to_settle": None}


def gate(name: str, outcome: str) -> GateResult:
    details = dict(RULE_DETAILS) if name == "five_percent_rule" else {}
    if outcome == ALLOWED:
        outcome, details["allow_inconclusive"] = "INCONCLUSIVE", True
    return GateResult(name, outcome, f"{name} said {outcome}", details)


def gate_set(varied: str, outcome: str) -> list[GateResult]:
    """Every gate PASS but `varied`; a five-percent rule at SKIP means no candidate was trained."""
    if varied == "five_percent_rule" and outcome == "SKIP":
        return [gate("data_quality", "PASS"), gate("five_percent_rule", "SKIP")]
    names = ("data_quality", "five_percent_rule", "overfit", "regression")
    return [gate(n, outcome if n == varied else "PASS") for n in names]


def item(g: GateResult) -> str:
    """What the plugin's gate item does with this outcome (its real code path)."""
    try:
        act_on(g)
    except GateFailed:
        return "failed"
    except pytest.skip.Exception:
        return "skipped"
    except pytest.xfail.Exception:
        return "xfailed"
    return "passed"


def stored_run(tmp_path, gates: list[GateResult]):
    store = Store(tmp_path / "h.duckdb")
    run_id = store.start_run("toy", spec_file=None, config={"metric": "accuracy"})
    trained = any(g.gate == "five_percent_rule" and g.outcome != "SKIP" for g in gates)
    approaches = [{"approach": "zero_shot", "kind": "baseline", "config": {}, "latency_p50_ms": 30.0}]
    if trained:
        approaches.append({"approach": "candidate", "kind": "candidate", "config": {}, "latency_p50_ms": 20.0,
                           "train_seconds": 60.0, "adapter_path": str(tmp_path / "gone"), "adapter_sha256": "ab"})
    metrics = [{"approach": a["approach"], "split": "test", "metric": "accuracy", "value": 0.7} for a in approaches]
    store.finish_run(run_id, RunRecord(approaches=approaches, metrics=metrics, gates=[g.row() for g in gates],
                                       run_fields={"task": "classification", "key_metric": "accuracy"}))
    return store, store.stored_runs("toy")[-1]


def badge(tmp_path, store) -> tuple[str, str]:
    """(the experiment page's verdict badge, the index row's), read off the rendered HTML."""
    out = tmp_path / "reports"
    write_reports(store, out)
    page = (out / "toy.html").read_text(encoding="utf-8")
    index = (out / "index.html").read_text(encoding="utf-8")
    on_page = re.search(r'<section class="card verdict (\w+)" id="verdict" data-verdict="([^"]+)">\s*'
                        r'<div class="big">([^<]+)</div>', page)
    assert on_page and on_page.group(2) == on_page.group(3), "the badge's label and data-verdict differ"
    in_index = re.search(r'<td class="verdict-cell" data-verdict="([^"]+)"><span class="badge \w+">([^<]+)</span>',
                         index)
    assert in_index and in_index.group(1) == in_index.group(2)
    return on_page.group(2), in_index.group(2)


def exportable(tmp_path, store) -> bool:
    """Whether `harness export` would go on (it stops later here: the test's adapter folder is gone)."""
    with pytest.raises(HarnessError) as refused:
        export(store, "toy", tmp_path / "export", root=tmp_path, log=lambda _: None)
    return "export refused" not in str(refused.value) and "no complete run trained a candidate" not in str(
        refused.value)


CASES = [(g, o) for g in ("five_percent_rule", "regression", "overfit", "data_quality") for o in OUTCOMES]


@pytest.mark.parametrize(("varied", "outcome"), CASES, ids=[f"{g}-{o}" for g, o in CASES])
def test_badge_pytest_outcome_exportability_and_recommendation_agree(tmp_path, varied, outcome):
    gates = gate_set(varied, outcome)
    store, run = stored_run(tmp_path, gates)
    decided = decision.decide(run.gates)
    page_badge, index_badge = badge(tmp_path, store)
    items = [item(g) for g in run.gates]
    ci_passed = "failed" not in items
    can_export = exportable(tmp_path, store)
    _, recommended = recommendation.for_run(run)

    assert page_badge == index_badge == decided.verdict
    assert ci_passed == decided.passed
    assert can_export == decided.exportable == (decided.verdict == FINE_TUNE)
    assert recommended.verdict == decided.verdict
    assert recommended.action in recommendation.ACTIONS_BY_VERDICT[decided.verdict]
    # no silent pass: a green CI with every item a plain pass (or skip) means the evidence says
    # Fine-tune, or that no candidate was trained at all
    if set(items) <= {"passed", "skipped"}:
        assert decided.verdict == FINE_TUNE or not decided.candidate_judged
    if outcome == ALLOWED:
        assert "xfailed" in items and ci_passed and decided.verdict != FINE_TUNE and not can_export


# The cases a reader should not have to work out (B1 in the architecture review among them).
EXPECTED = {
    ("five_percent_rule", "PASS"): (FINE_TUNE, True, "fine-tune"),
    ("five_percent_rule", "FAIL"): (KEEP_PROMPTING, False, "keep prompting"),
    ("five_percent_rule", "INCONCLUSIVE"): (INCONCLUSIVE_VERDICT, False, "collect more data"),
    ("five_percent_rule", ALLOWED): (INCONCLUSIVE_VERDICT, True, "collect more data"),
    ("five_percent_rule", "SKIP"): (KEEP_PROMPTING, True, "keep prompting"),
    ("regression", "FAIL"): (KEEP_PROMPTING, False, "keep prompting"),
    ("regression", "INCONCLUSIVE"): (INCONCLUSIVE_VERDICT, False, "collect more data"),
    ("regression", ALLOWED): (INCONCLUSIVE_VERDICT, True, "collect more data"),
    ("regression", "SKIP"): (FINE_TUNE, True, "fine-tune"),
    ("overfit", "FAIL"): (INCONCLUSIVE_VERDICT, False, "collect more data"),
}


@pytest.mark.parametrize(("case", "expected"), EXPECTED.items(), ids=[f"{g}-{o}" for g, o in EXPECTED])
def test_the_verdict_ci_outcome_and_action_of_each_case(tmp_path, case, expected):
    store, run = stored_run(tmp_path, gate_set(*case))
    decided = decision.decide(run.gates)
    _, recommended = recommendation.for_run(run)
    assert (decided.verdict, decided.passed, recommended.action) == expected


def test_an_allowed_inconclusive_is_an_xfail_that_names_the_policy():
    g = gate("regression", ALLOWED)
    with pytest.raises(pytest.xfail.Exception, match="let through by the spec's allow_inconclusive") as info:
        act_on(g)
    assert "regression said INCONCLUSIVE" in str(info.value)
    assert item(gate("regression", "INCONCLUSIVE")) == "failed"


def test_runs_that_did_not_complete_neither_pass_nor_export():
    gates = gate_set("five_percent_rule", "PASS")
    for status, verdict in (("failed", decision.RUN_FAILED), ("running", decision.RUNNING)):
        decided = decision.decide(gates, status=status)
        assert (decided.verdict, decided.passed, decided.exportable) == (verdict, False, False)


def test_the_first_unsettled_gate_in_judging_order_decides():
    gates = [gate("regression", "INCONCLUSIVE"), gate("overfit", "FAIL"), gate("five_percent_rule", "PASS")]
    assert decision.decide(gates).deciding.gate == "overfit"
    gates.append(gate("regression", "FAIL"))  # harm outranks an unsettled check
    assert decision.decide(gates[1:]).verdict == KEEP_PROMPTING


def test_harm_outranks_an_unsettled_rule_and_no_reason_says_ci_goes_on_when_it_stops():
    """The shipped sarcasm run: the rule INCONCLUSIVE (allowed), the regression gate FAIL."""
    gates = [gate("data_quality", "PASS"), gate("five_percent_rule", ALLOWED), gate("overfit", "PASS"),
             gate("regression", "FAIL")]
    found = decision.decide(gates)
    assert (found.verdict, found.passed, found.deciding.gate) == (KEEP_PROMPTING, False, "regression")
    assert "loses general ability" in found.reason and "CI goes on" not in found.reason
    # an allowed INCONCLUSIVE beside a gate that blocks CI: the reason does not promise CI goes on
    blocked = decision.decide([gate("five_percent_rule", ALLOWED), gate("overfit", "FAIL")])
    assert not blocked.passed and "CI goes on" not in blocked.reason
    assert "CI goes on" in decision.decide([gate("five_percent_rule", ALLOWED)]).reason


def test_every_reader_says_ci_goes_on_only_when_it_does(tmp_path):
    """The summary line, the report's notes and headline and the recommendation, on the shipped
    sarcasm run's shape: an allowed INCONCLUSIVE rule beside a regression FAIL."""
    gates = [gate("data_quality", "PASS"), gate("five_percent_rule", ALLOWED), gate("overfit", "PASS"),
             gate("regression", "FAIL")]
    store, run = stored_run(tmp_path, gates)
    found = decision.decide(run.gates)
    [note] = decision.allowed_notes(found)
    assert note.startswith("five_percent_rule INCONCLUSIVE, let through") and "CI stops anyway, on regression FAIL" in note
    _, recommended = recommendation.for_run(run)
    assert recommended.action == "keep prompting" and not any("CI goes on" in r for r in recommended.reasons)
    from harness.report import summary

    assert summary.verdict(run)["allowed"] == [note]
    line = summary.headline(summary.run_summary(run), found)
    assert "not shown to clear" in line and "CI goes on" not in line
    [alone] = decision.allowed_notes(decision.decide([gate("five_percent_rule", ALLOWED)]))
    assert alone.startswith("CI goes on: five_percent_rule INCONCLUSIVE")
