import pytest

from harness.errors import HarnessError
from harness.judge import gates, pricing, recommendation
from harness.judge.outcomes import GateResult
from harness.store.record import ApproachRecord


def approaches(**kwargs) -> list[ApproachRecord]:
    """The approaches as the store gives them back (approach_rows as written)."""
    return [record(r) for r in approach_rows(**kwargs)]


def record(row: dict) -> ApproachRecord:
    return ApproachRecord.from_row({"run_id": "r", **row})


def approach_rows(candidate_ms=18.0, train_seconds=3600.0, total_params=None) -> list[dict]:
    config = {"total_params": total_params} if total_params else {}
    return [
        {"approach": "zero_shot", "kind": "baseline", "prompt_tokens": 100.0, "latency_p50_ms": 36.0},
        {"approach": "few_shot_k8", "kind": "baseline", "prompt_tokens": 316.0, "latency_p50_ms": 72.0},
        {"approach": "candidate", "kind": "candidate", "prompt_tokens": 50.0, "latency_p50_ms": candidate_ms,
         "train_seconds": train_seconds, "config": config},
    ]


def test_cost_per_million_training_and_break_even_by_hand():
    view = pricing.cost_view(approaches(), gpu_hour_price=2.0, calls=1_000_000, reference="zero_shot")
    # 36 ms at $2/h: 0.036 s * 2 / 3600 = $2e-5 a call = $20 per million
    assert view.row("zero_shot").cost_per_million == pytest.approx(20.0)
    assert view.row("few_shot_k8").cost_per_million == pytest.approx(40.0)
    c = view.candidate
    assert c.cost_per_million == pytest.approx(10.0) and c.cost_at_volume == pytest.approx(10.0)
    assert c.training_cost == pytest.approx(2.0)  # one hour at $2
    # $2 of training / ($2e-5 - $1e-5 saved a call) = 200,000 calls
    assert view.row("zero_shot").break_even_calls == pytest.approx(200_000)
    assert view.row("few_shot_k8").break_even_calls == pytest.approx(2 / 3e-5)
    assert view.break_even_calls == pytest.approx(200_000)
    assert view.to_dict()["rows"][0]["name"] == "zero_shot"


def test_no_break_even_when_the_candidate_is_not_cheaper_and_reference_defaults_to_the_cheapest():
    view = pricing.cost_view(approaches(candidate_ms=50.0), gpu_hour_price=2.0)
    assert view.reference == "zero_shot"  # cheapest per call: the hardest to pay back against
    assert view.row("zero_shot").break_even_calls is None
    assert view.row("few_shot_k8").break_even_calls == pytest.approx(2 / ((40 - 50 * 20 / 36) / 1e6))
    assert view.candidate.cost_at_volume is None
    lines = recommendation.format_summary(view, None)
    assert lines[0] == "cost at $2.00 per GPU-hour:"
    assert lines[-1] == "  break-even vs zero_shot: never (the candidate is not cheaper per call)"


def test_bad_price_or_reference_is_refused():
    with pytest.raises(HarnessError, match="price per GPU-hour must be positive"):
        pricing.cost_view(approaches(), 0)
    with pytest.raises(HarnessError, match="reference baseline 'nope' is not among"):
        pricing.cost_view(approaches(), 1.0, reference="nope")


def passing_rule(low=0.43, uplift=0.589, inconclusive=False, allow=False):
    details = {"baseline": "zero_shot", "candidate_score": 0.735, "baseline_score": 0.4625, "uplift": uplift,
               "low": low, "high": 0.767, "threshold": 0.05, "relative": True, "n": 400, "confidence": 0.95,
               "metric": "accuracy", "allow_inconclusive": allow,
               "power": {"rows_50": 610, "rows_80": 1200, "alternative": 0.10, "alternative_is": "2x the bar",
                         "relative": True}}
    outcome = "INCONCLUSIVE" if inconclusive else "PASS"
    return GateResult("five_percent_rule", outcome, "accuracy 0.735 vs zero_shot 0.463", details)


def overfit_pass():
    return GateResult("overfit", "PASS", "no sign of overfitting")


def test_fine_tune_when_every_gate_passes_with_the_numbers():
    view = pricing.cost_view(approaches(), 2.0, 1_000_000, reference="zero_shot")
    rec = recommendation.recommend([passing_rule(), overfit_pass()], approaches(),
                         "classification", view)
    assert rec.action == "fine-tune"
    assert rec.reasons[0] == ("the candidate scores accuracy 0.735 vs zero_shot 0.463: +58.9% (95% CI +43.0%..+76.7%) "
                              "against a 5% bar on 400 paired test rows")
    assert rec.reasons[1] == ("its prompt is 50 tokens vs 100 for zero_shot (2.0x shorter), "
                              "18 ms vs 36 ms per call (p50)")
    assert "pays back after 200,000 calls (within the 1,000,000 priced)" in rec.reasons[2]
    summary = recommendation.format_summary(view, rec)
    assert "recommendation: fine-tune" in summary and "  break-even vs zero_shot: 200,000 calls" in summary


def test_fine_tune_a_smaller_model_when_a_big_base_wins_with_headroom_and_serving_dominates():
    rows = approaches(total_params=7_000_000_000)
    view = pricing.cost_view(rows, 2.0, 1_000_000, reference="zero_shot")
    rec = recommendation.recommend([passing_rule(), overfit_pass()], rows, "generation", view)
    assert rec.action == "fine-tune a smaller model"
    assert "a smaller base (7.0B now)" in rec.reasons[-1]
    # no headroom (low end just above the bar) -> plain fine-tune
    rec = recommendation.recommend([passing_rule(low=0.06)], rows, "generation", view)
    assert rec.action == "fine-tune" and "behaviour, style and format" in rec.reasons[-1]
    # a small base has no smaller sibling worth trying
    assert recommendation.recommend([passing_rule()], approaches(total_params=135_000_000),
                          "generation", view).action == "fine-tune"


def test_keep_prompting_when_the_candidate_fails_the_rule():
    rule = gates.five_percent_rule("accuracy", [1.0, 0.0] * 50, "zero_shot", [1.0, 0.0] * 50)
    assert rule.outcome == "FAIL"
    rec = recommendation.recommend([rule], approaches(), "classification", None)
    assert rec.action == "keep prompting"
    assert rec.reasons[0].startswith("the candidate scores accuracy 0.500 vs zero_shot 0.500: +0.0%")


def test_collect_more_data_when_inconclusive_or_overfit():
    rec = recommendation.recommend([passing_rule(low=-0.02, uplift=0.04, inconclusive=True)],
                         approaches(), "classification")
    assert rec.action == "collect more data"
    assert ("about 610-1,200 test rows would give 50%-80% power if the true uplift is +10.0% (2x the bar); "
            "400 now. Draw them as a fresh test split") in rec.reasons[-1]
    overfit = GateResult("overfit", "FAIL", "train accuracy 1.000 vs test 0.700: gap 0.300 > 0.15")
    rec = recommendation.recommend([passing_rule(), overfit], approaches(), "classification")
    assert rec.action == "collect more data" and "gap 0.300 > 0.15" in rec.reasons[-1]


def test_a_regression_keeps_prompting_and_an_allowed_inconclusive_leaves_the_verdict_open():
    regression = GateResult("regression", "FAIL", "mmlu accuracy fell 6.0 points")
    rec = recommendation.recommend([passing_rule(), regression], approaches(), "classification")
    assert (rec.action, rec.verdict) == ("keep prompting", "Keep prompting")
    assert "mmlu accuracy fell 6.0 points" in rec.reasons[-1]
    # the spec's allow_inconclusive lets CI go on; it does not turn an unsettled gate into a fine-tune
    allowed = GateResult("regression", "INCONCLUSIVE", "straddles -2 pts", {"allow_inconclusive": True})
    rec = recommendation.recommend([passing_rule(), allowed], approaches(), "classification")
    assert (rec.action, rec.verdict) == ("collect more data", "Inconclusive")
    assert "but the regression gate is INCONCLUSIVE (allowed by the spec, so CI goes on)" in rec.reasons[-1]
    assert not any(r.startswith("every gate passed") for r in rec.reasons)


def test_use_retrieval_for_a_knowledge_task_the_fine_tune_did_not_crack():
    rule = gates.five_percent_rule("exact_match", [0.0] * 90 + [1.0] * 10, "zero_shot", [0.0] * 92 + [1.0] * 8)
    rec = recommendation.recommend([rule], approaches(), "generation", knowledge_task=True)
    assert rec.action == "use retrieval"
    assert "a knowledge task where the best prompt scores 0.080" in rec.reasons[-1]
    failed = gates.five_percent_rule("exact_match", [0.0] * 100, "zero_shot", [0.0] * 92 + [1.0] * 8)
    assert failed.outcome == "FAIL"
    assert recommendation.recommend([failed], approaches(), "generation",
                          knowledge_task=True).action == "use retrieval"
    # retrieval already measured as the best baseline, and still not told apart: more data, not "use retrieval"
    measured = gates.five_percent_rule("exact_match", [0.0] * 93 + [1.0] * 7, "retrieval_k3", [0.0] * 99 + [1.0])
    assert measured.outcome == "INCONCLUSIVE"
    rows = approaches() + [record({"approach": "retrieval_k3", "kind": "baseline", "config": {"knowledge": "kb.jsonl"}})]
    rec = recommendation.recommend([measured], rows, "generation", knowledge_task=True)
    assert rec.action == "collect more data"
    assert "a knowledge task where retrieval was measured (retrieval_k3, 0.010) and did not settle it either" \
        in rec.reasons
    no_candidate = GateResult("five_percent_rule", "SKIP", "no candidate declared; baselines only")
    assert recommendation.recommend([no_candidate], approaches()[:2], None,
                          knowledge_task=True).action == "use retrieval"
    assert recommendation.recommend([no_candidate], approaches()[:2], None).action == "keep prompting"
    assert set(recommendation.ACTIONS) == {"keep prompting", "fine-tune", "fine-tune a smaller model", "collect more data",
                                  "use retrieval"}


def test_for_run_reads_everything_from_the_store():
    from dataclasses import replace

    from harness.store import RunRecord, Store

    store = Store(":memory:")
    run_id = store.start_run("sarcasm", spec_file=None, config={"gpu_hour_price": 2.0, "calls": 1_000_000})
    store.finish_run(run_id, RunRecord(
        approaches=approach_rows(), gates=[passing_rule().row(), overfit_pass().row()],
        run_fields={"task": "classification", "provenance": {"hardware": {"device": "cuda", "gpu": "H100"}}}))
    [run] = store.stored_runs("sarcasm")
    view, rec = recommendation.for_run(run)
    assert view.gpu_hour_price == 2.0 and view.calls == 1_000_000 and view.device == "H100"
    assert view.reference == "zero_shot" and view.break_even_calls == pytest.approx(200_000)
    assert rec.action == "fine-tune"
    cheaper, _ = recommendation.for_run(run, gpu_hour_price=4.0, calls=10)  # the command line wins over the spec
    assert cheaper.row("zero_shot").cost_per_million == pytest.approx(40.0) and cheaper.calls == 10
    none, rec = recommendation.for_run(replace(run, run=replace(run.run, config={})))
    assert none is None and rec.action == "fine-tune"
    assert recommendation.for_run(run, knowledge_task=True)[1].reasons[-1].startswith("note: this is a knowledge task")
