"""The ledger of looks (docs/statistics.md, "Repeated looks at the test rows"): the spending
scheme, the store's record of every judgement of test rows, the engine's use of both, the fresh
test split, and a simulation of nested looks through the harness's own gate statistics."""
from __future__ import annotations

import math

import pytest

from harness.data import splitting
from harness.data.samples import Sample
from harness.errors import DataError, SpecError
from harness.judge import gates, looks
from harness.store import RunRecord, Store, ledger


def _scores(both: int, broken: int, fixed: int, n: int):
    base = [1.0] * (both + broken) + [0.0] * (n - both - broken)
    cand = [1.0] * both + [0.0] * broken + [1.0] * fixed + [0.0] * (n - both - broken - fixed)
    return cand, base


# --- (a) the scheme -----------------------------------------------------------------------

def test_every_look_within_the_budget_is_judged_at_alpha_over_the_budget():
    assert looks.spent_confidence(0.95, 1) == 0.95
    assert looks.spent_confidence(0.95, 5) == pytest.approx(0.99)
    look = looks.Look("id", 2, 5, ("run-a",))
    assert look.alpha_one_sided(0.95) == pytest.approx(0.005) and not look.spent
    assert looks.Look("id", 6, 5, ("a", "b", "c", "d", "e")).spent
    with pytest.raises(ValueError):
        looks.spent_confidence(0.95, 0)


def test_the_same_judgement_again_is_the_same_look_and_a_new_one_is_the_next():
    a, b = looks.look_id(["k1", "k2"], {"adapter": "x"}), looks.look_id(["k2", "k1"], {"adapter": "x"})
    assert a == b  # row order does not matter
    assert looks.look_id(["k1", "k2"], {"adapter": "y"}) != a  # another candidate is another look
    assert looks.look_id(["k1", "k3"], {"adapter": "x"}) != a
    priors = [looks.Prior("L1", "run-1", 1, 3), looks.Prior("L1", "run-1b", 1, 3), looks.Prior("L2", "run-2", 2, 3)]
    again = looks.count("L1", priors, declared=9)
    assert (again.look, again.budget, again.repeat_of, again.overlaps) == (1, 3, "run-1", ())
    second_again = looks.count("L2", priors, declared=9)
    assert (second_again.look, second_again.overlaps) == (2, ("run-1",))
    new = looks.count("L3", priors, declared=9)  # the budget of the first look counts, not the spec's 9
    assert (new.look, new.budget, new.overlaps) == (3, 3, ("run-1", "run-2"))
    fresh = looks.count("L4", [], declared=2)
    assert (fresh.look, fresh.budget, fresh.overlaps) == (1, 2, ())


def test_a_single_first_look_changes_neither_verdict_nor_message():
    cand, base = _scores(300, 40, 120, 800)
    plain = gates.five_percent_rule("accuracy", cand, "best", base, baseline_pick_score=0.42)
    first = gates.five_percent_rule("accuracy", cand, "best", base, baseline_pick_score=0.42,
                                    look=looks.Look("id", 1, 1, ()))
    assert plain.outcome == first.outcome == "PASS"
    assert plain.message == first.message and "look" not in first.message
    assert first.details["look"] == 1 and first.details["alpha_one_sided"] == pytest.approx(0.025)


def test_a_repeated_look_says_which_and_is_judged_on_a_wider_interval():
    cand, base = _scores(300, 40, 120, 800)
    once = gates.five_percent_rule("accuracy", cand, "best", base, baseline_pick_score=0.42)
    second = gates.five_percent_rule("accuracy", cand, "best", base, baseline_pick_score=0.42,
                                     look=looks.Look("id", 2, 5, ("run-a",)))
    assert "look 2 of 5 on these test rows (overlaps run run-a), judged at one-sided 0.50%" in second.message
    assert "99% CI" in second.message and "a one-sided test at 0.5%" in second.message
    assert second.details["low"] < once.details["low"]
    assert (second.details["look"], second.details["looks_budget"], second.details["overlaps"]) == (2, 5, ["run-a"])
    assert second.details["alpha_one_sided"] == pytest.approx(0.005)
    assert second.details["confidence"] == pytest.approx(0.99) and second.details["declared_confidence"] == 0.95


def test_a_look_beyond_the_budget_can_neither_pass_nor_fail():
    clear_win, clear_loss = _scores(300, 10, 200, 800), _scores(300, 200, 10, 800)
    spent = looks.Look("id", 3, 2, ("run-a", "run-b"))
    for cand, base in (clear_win, clear_loss):
        assert gates.five_percent_rule("accuracy", cand, "b", base).outcome in ("PASS", "FAIL")
        v = gates.five_percent_rule("accuracy", cand, "b", base, look=spent)
        assert v.outcome == "INCONCLUSIVE"
        assert ("look 3 of 2 on these test rows (overlaps run run-a, run-b): these test rows were already judged "
                "2 times (run run-a, run-b) and the budget of 2 looks declared at their first look (looks=2) is "
                "spent") in v.message
        assert "fresh_test=True" in v.message and v.details["looks_spent"] is True


def test_the_spec_declares_the_looks_and_refuses_a_wrong_one():
    from harness import Experiment, baselines

    make = lambda **kw: Experiment(name="e", data="d.jsonl", baselines=[baselines.zero_shot("s.md")], **kw)  # noqa: E731
    assert make().looks == 1 and make().fresh_test is False
    assert make(looks=5).config()["looks"] == 5
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(SpecError, match=r"Experiment 'e': looks must be a positive integer"):
            make(looks=bad)
    with pytest.raises(SpecError, match="fresh_test draws the test split from one data file"):
        Experiment(name="e", data={"train": "a.jsonl", "test": "b.jsonl"}, baselines=[baselines.zero_shot("s.md")],
                   fresh_test=True)


# --- the fresh test split -------------------------------------------------------------------

@pytest.fixture
def rows(tmp_path) -> list[Sample]:
    from tiny import write_classification_jsonl

    from harness.data.read import load

    return list(load(write_classification_jsonl(tmp_path / "d.jsonl", n=80)).samples)


def test_a_fresh_split_keeps_judged_rows_out_of_test_only(rows):
    before = splitting.split(rows, (48, 16, 16), seed=0, stratify=True)
    assert splitting.split(rows, (48, 16, 16), seed=0, stratify=True, judged=frozenset({"not-a-key"})) == before
    judged = {s.key for s in before.test}
    fresh = splitting.split(rows, (48, 16, 16), seed=0, stratify=True, judged=judged)
    assert len(fresh.test) == 16 and not judged & {s.key for s in fresh.test}
    assert judged <= {s.key for s in fresh.train + fresh.val}  # judged rows still train and select
    assert sorted(s.answer for s in fresh.test) == sorted(s.answer for s in before.test)  # still stratified
    assert len({s.key for s in fresh.train + fresh.val + fresh.test}) == 80


def test_too_few_rows_never_judged_is_a_one_line_error_naming_the_file(rows):
    judged = {s.key for s in rows[:70]}
    with pytest.raises(DataError, match=r"^fresh_test: data file d\.jsonl has 10 unique rows never judged on test "
                                        r"\(of 80\), too few for a test split of 16; add at least 6 new rows to "
                                        r"data file d\.jsonl"):
        splitting.split(rows, (48, 16, 16), seed=0, stratify=True, judged=judged, source="data file d.jsonl")


# --- (b) the store ------------------------------------------------------------------------

def _judge(store: Store, experiment: str, keys, candidate: str, declared: int, outcome: str = "INCONCLUSIVE"):
    """One run that judges `keys` with `candidate`; returns (run id, its look)."""
    run_id = store.start_run(experiment, spec_file=None, config={})
    look = ledger.count(store, experiment, keys, {"candidate": candidate}, declared)
    record = RunRecord()
    record.looks.append(ledger.entry(experiment, look, outcome, keys, draw="d"))
    store.finish_run(run_id, record)
    return run_id, look


def test_the_ledger_counts_looks_by_overlapping_rows(tmp_path):
    store = Store(tmp_path / "h.duckdb")
    first_run, first = _judge(store, "e", ["a", "b", "c"], "cand-1", declared=2)
    assert (first.look, first.budget, first.overlaps) == (1, 2, ())
    rerun_id, rerun = _judge(store, "e", ["c", "b", "a"], "cand-1", declared=2)  # a CI rerun: the same look
    assert (rerun.look, rerun.repeat_of, rerun.look_id) == (1, first_run, first.look_id)
    second_run, second = _judge(store, "e", ["c", "d"], "cand-2", declared=7)  # overlapping rows: look 2
    assert (second.look, second.budget, second.overlaps) == (2, 2, (first_run,))  # the first look's budget wins
    _, third = _judge(store, "e", ["a", "d", "z"], "cand-3", declared=7)  # overlaps both earlier looks
    assert (third.look, third.budget, third.overlaps) == (3, 2, (first_run, second_run)) and third.spent
    _, disjoint = _judge(store, "e", ["x", "y"], "cand-4", declared=3)  # a disjoint split starts afresh
    assert (disjoint.look, disjoint.budget, disjoint.overlaps) == (1, 3, ())
    _, other = _judge(store, "other", ["a", "b", "c"], "cand-1", declared=1)  # per experiment
    assert other.look == 1
    history = ledger.history(store, "e")
    assert [h["look"] for h in history] == [1, 1, 2, 3, 1] and history[1]["run_id"] == rerun_id
    assert ledger.rows(store, "e", first.look_id) == {"a", "b", "c"}
    assert ledger.judged_keys(store, "e") == {"a", "b", "c", "d", "z", "x", "y"}
    assert ledger.judged_keys(store, "e", other_than="d") == frozenset()  # all at draw "d"
    assert ledger.budget(store, "e", ["a", "c"], declared=9) == (2, 3) and ledger.budget(store, "e", ["b"], 9) == (2, 1)
    assert Store(tmp_path / "h.duckdb").schema_version() >= 7  # the migration is recorded; reopening keeps it


def test_a_failed_run_records_no_look(tmp_path):
    store = Store(tmp_path / "h.duckdb")
    run_id = store.start_run("e", spec_file=None, config={})
    record = RunRecord()
    record.looks.append(ledger.entry("e", ledger.count(store, "e", ["a"], {}, 1), "PASS", ["a"]))
    store.fail_run(run_id, "boom", record)
    assert ledger.history(store, "e") == [] and ledger.judged_keys(store, "e") == frozenset()
    # a run whose write fails part way records nothing of its looks either (one transaction)
    run_id = store.start_run("e", spec_file=None, config={})
    record = RunRecord()
    good = ledger.entry("e", ledger.count(store, "e", ["a"], {}, 1), "PASS", ["a"])
    record.looks += [good, {**good, "look_id": "other", "outcome": None}]  # NOT NULL refuses the second
    with pytest.raises(Exception):
        store.finish_run(run_id, record)
    assert ledger.history(store, "e") == [] and ledger.judged_keys(store, "e") == frozenset()


# --- (c) the engine -------------------------------------------------------------------------

def test_runs_on_overlapping_test_rows_are_counted_and_a_fresh_split_starts_afresh(tmp_path, tiny_model_dir):
    from tiny import write_classification_jsonl

    from harness import Experiment, QLoRA, baselines
    from harness._engine import run_experiment

    write_classification_jsonl(tmp_path / "data.jsonl", n=64)
    (tmp_path / "s.md").write_text("answer 1 or 0")
    store = Store(tmp_path / "h.duckdb")

    def run(candidate, **kw):
        spec = Experiment(name="looked", data="data.jsonl", model=str(tiny_model_dir), split=(40, 8, 16),
                          baselines=[baselines.zero_shot("s.md")], regression=None, forgetting=None, underpowered="warn",
                          allow_inconclusive=True, candidate=candidate, **kw)
        lines = []
        result = run_experiment(spec, store, root=tmp_path, log=lines.append)
        rule = result.gates["five_percent_rule"]
        keys = ledger.rows(store, "looked", rule.details["look_id"])
        return result, rule, keys, lines

    first, rule1, keys1, lines1 = run(QLoRA(epochs=1, seed=0), looks=2)
    assert rule1.outcome != "SKIP" and rule1.details["look"] == 1 and rule1.details["looks_budget"] == 2
    assert "look 1 of 2 on these test rows, judged at one-sided 1.25%" in rule1.message
    assert any("a budget of 2 looks at these test rows, 0 already recorded" in line for line in lines1)
    assert len(keys1) == 16

    _, again, keys_again, _ = run(QLoRA(epochs=1, seed=0), looks=2)  # a rerun (cache hits): the same look
    assert again.details["look"] == 1 and again.details["look_id"] == rule1.details["look_id"]
    assert again.details["repeat_of"] == first.run_id and again.message == rule1.message

    _, second, keys2, _ = run(QLoRA(epochs=1, seed=1), looks=5)  # another candidate on the same rows: look 2
    assert keys2 == keys1
    assert second.details["look"] == 2 and second.details["looks_budget"] == 2  # the first look's budget
    assert f"look 2 of 2 on these test rows (overlaps run {first.run_id})" in second.message

    # new rows, and a fresh test split drawn from those never judged: disjoint, look 1 again
    write_classification_jsonl(tmp_path / "data.jsonl", n=80)
    _, fresh, keys3, _ = run(QLoRA(epochs=1, seed=1), looks=2, fresh_test=True)
    assert not keys3 & keys1 and len(keys3) == 16
    assert fresh.details["look"] == 1 and fresh.details["overlaps"] == []
    _, fresh_again, keys4, _ = run(QLoRA(epochs=1, seed=1), looks=2, fresh_test=True)  # the same fresh draw
    assert keys4 == keys3 and fresh_again.details["look"] == 1 and fresh_again.details["repeat_of"] is not None


# --- (d) repeated looks, simulated --------------------------------------------------------------

NESTED = (200, 400, 600, 800, 1000)  # each test split a superset of the last
LOOK_DRAWS = 1000


def test_repeated_looks_are_held_at_the_nominal_level():
    """The same candidate re-judged on growing nested test splits at a true uplift exactly at the bar
    (base 0.645, phi 0): re-gating each look at 2.5% (the alpha not divided) passes far more often
    after five looks; the ledger's alpha / 5 keeps five looks at or below 2.5%."""
    rates = looks.simulate(0.05, sizes=NESTED, draws=LOOK_DRAWS, budget=5, seed=11)
    print(f"false PASS after 1..5 nested looks: {rates}")
    band = lambda p: 3 * math.sqrt(p * (1 - p) / LOOK_DRAWS)  # noqa: E731
    naive, spent = rates["naive"], rates["ledger"]
    assert abs(naive[0] - 0.025) <= band(0.025)  # one look is the nominal 2.5%
    assert naive[4] > 0.025 + band(0.025)  # undivided alpha over five looks is detected as too high
    assert naive[4] > 2 * naive[0]
    assert spent[4] <= 0.025 + band(0.025)  # the ledger's scheme holds five looks at the level
    assert spent[0] <= 0.005 + band(0.005)  # each look at 0.5%
    assert all(a <= b for a, b in zip(spent, spent[1:])) and all(s <= n for s, n in zip(spent, naive))


def test_a_spent_budget_recommends_a_fresh_test_split_not_a_superset():
    from harness.judge.outcomes import PASS, GateResult
    from harness.judge.recommendation import MORE_DATA, recommend

    cand, base = _scores(300, 10, 200, 800)
    spent = gates.five_percent_rule("accuracy", cand, "zero_shot", base, look=looks.Look("id", 2, 1, ("run-a",)))
    close_cand, close_base = _scores(300, 60, 100, 800)
    within = gates.five_percent_rule("accuracy", close_cand, "zero_shot", close_base)
    from harness.store.record import ApproachRecord

    approaches = [ApproachRecord("r", "candidate", "candidate"), ApproachRecord("r", "zero_shot", "baseline")]
    others = [GateResult("data_quality", PASS, "ok"), GateResult("overfit", PASS, "ok")]
    said = recommend([*others, spent], approaches, "classification")
    assert said.action == MORE_DATA
    assert any("look 2 of 1 at these test rows" in r and "fresh_test=True" in r and "superset" in r
               for r in said.reasons), said.reasons
    assert within.outcome == "INCONCLUSIVE"
    usual = recommend([*others, within], approaches, "classification")
    assert not any("superset" in r for r in usual.reasons)
