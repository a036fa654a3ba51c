"""Holm's family-wise correction across the experiments of one session (harness/judge/family.py):
the step-down by hand, the simulation that could tell it from no correction, and the plugin
writing the corrected verdict where every reader finds it."""
from __future__ import annotations

import re

import numpy as np
import pytest

from harness.judge import family, stats
from harness.judge.outcomes import FAIL, INCONCLUSIVE, PASS, SKIP, GateResult


def rule(outcome: str, p: float | None, alpha: float = 0.025, **details) -> GateResult:
    return GateResult("five_percent_rule", outcome, "accuracy 0.80 vs zero_shot 0.60",
                      {"p_at_bar": p, "alpha_one_sided": alpha, **details})


def test_the_step_down_by_hand():
    # m = 3 at 2.5%: the levels are 2.5%/3, 2.5%/2, 2.5%/1 by rank
    judged = family.holm({"a": rule(PASS, 0.001), "b": rule(PASS, 0.0154), "c": rule(INCONCLUSIVE, 0.2)})
    assert judged["a"].outcome == PASS and judged["a"].details["family"]["rank"] == 1
    assert judged["a"].details["family"]["alpha_one_sided"] == pytest.approx(0.025 / 3)
    assert judged["b"].outcome == INCONCLUSIVE and judged["b"].details["outcome_alone"] == PASS
    assert judged["b"].details["family"]["alpha_one_sided"] == pytest.approx(0.0125)
    assert "ranked 2 by p=0.0154, which must be at most 0.0125" in judged["b"].message
    assert judged["c"].outcome == INCONCLUSIVE and judged["c"].details["family"]["size"] == 3
    # the step-down stops at the first that is not kept: everything after it keeps nothing
    after = family.holm({"a": rule(PASS, 0.02), "b": rule(PASS, 0.021), "c": rule(PASS, 0.022)})
    assert [after[k].outcome for k in "abc"] == [INCONCLUSIVE] * 3
    assert "an experiment ranked before it did not keep its PASS" in after["c"].message
    # the last rank is judged at the full level
    assert family.holm({"a": rule(PASS, 0.001), "b": rule(PASS, 0.024)})["b"].outcome == PASS


def test_only_judged_rules_are_members_and_fail_stays_fail():
    skipped = GateResult("five_percent_rule", SKIP, "no candidate declared; baselines only")
    spent = rule(INCONCLUSIVE, 0.001, looks_spent=True)
    judged = family.holm({"a": rule(PASS, 0.02), "skip": skipped, "spent": spent})
    assert judged["a"].outcome == PASS and "family" not in judged["a"].details  # a family of one: unchanged
    assert judged["skip"] is skipped and judged["spent"] is spent
    assert family.holm({"a": rule(FAIL, 0.9), "b": rule(PASS, 0.001)})["a"].outcome == FAIL
    # a repeated look brings its own, smaller level into the family
    looked = family.holm({"a": rule(PASS, 0.008, alpha=0.0125), "b": rule(PASS, 0.001)})
    assert looked["a"].outcome == PASS and looked["a"].details["family"]["alpha_one_sided"] == 0.0125
    assert family.holm({"a": rule(PASS, 0.008, alpha=0.0125), "b": rule(PASS, 0.0001),
                        "c": rule(INCONCLUSIVE, 0.5)})["a"].outcome == INCONCLUSIVE  # 0.0125 / 2


def test_p_at_bar_is_the_level_at_which_the_interval_clears_the_bar():
    """PASS at one-sided alpha and p_at_bar <= alpha say the same thing (up to the resolution of
    the resamples), so ranking by p and judging by the interval cannot disagree."""
    rng = np.random.default_rng(3)
    for _ in range(60):
        n = int(rng.integers(80, 400))
        base = (rng.random(n) < 0.6).astype(float)
        cand = np.where(rng.random(n) < 0.3, 1.0 - base, base)
        cand = np.where(rng.random(n) < rng.uniform(0, 0.3), 1.0, cand)
        u = stats.paired_uplift(cand, base, threshold=0.05, relative=False, resamples=4000, seed=1)
        if abs(u.p_at_bar - 0.025) > 0.003:
            assert (u.outcome == PASS) == (u.p_at_bar <= 0.025), (u.outcome, u.p_at_bar)


def test_holm_holds_the_family_at_the_bar_and_keeps_a_real_gain():
    """Five experiments, each truly at the bar: without a correction some PASS is false about
    1 - 0.975^5 = 12% of the time; with Holm at most 2.5% (plus Monte Carlo error: 600 sessions
    give a standard error of 0.6 points at 2.5%, so 4.5% is over three of them). A real
    +15-point gain among four experiments at the bar keeps most of its power."""
    null = family.simulate([0.05] * 5, n=300, draws=600, seed=7)
    assert null["any_alone"] > 0.07          # the problem is real: no correction, no control
    assert null["any_holm"] <= 0.045         # Holm: the family-wise rate at the nominal level
    mixed = family.simulate([0.20, 0.05, 0.05, 0.05, 0.05], n=300, draws=150, seed=8)
    assert mixed["holm"][0] >= 0.7 and mixed["holm"][0] >= mixed["alone"][0] - 0.2
    assert max(mixed["holm"][1:]) <= max(mixed["alone"][1:])


FAMILY_CONFTEST = '''
from types import SimpleNamespace

import harness._engine
from harness.judge import gates
from harness.judge.outcomes import GateResult

pytest_plugins = ["harness.plugin"]
# per experiment: (both right, only the baseline right, only the candidate right) of 200 test rows
TABLES = {"strong": (80, 5, 40), "borderline": (80, 5, 26), "weak": (80, 5, 18)}
_real = harness._engine.run_experiment


def fake_run(experiment, store, **kwargs):
    both, base_only, cand_only = TABLES[experiment.name]
    neither = 200 - both - base_only - cand_only
    cand = [1] * both + [0] * base_only + [1] * cand_only + [0] * neither
    base = [1] * both + [1] * base_only + [0] * cand_only + [0] * neither
    rule = gates.five_percent_rule("accuracy", cand, "zero_shot", base, threshold=0.05, relative=False,
                                   baseline_pick_score=0.5)
    verdicts = {"data_quality": GateResult("data_quality", "PASS", "no errors"), "five_percent_rule": rule,
                "overfit": GateResult("overfit", "PASS", "no sign of overfitting")}
    run_id = store.start_run(experiment.name, spec_file=experiment.spec_file, config=experiment.config())
    from harness.store import RunRecord
    store.finish_run(run_id, RunRecord(gates=[g.row() for g in verdicts.values()],
                                       approaches=[{"approach": "zero_shot", "kind": "baseline", "config": {}},
                                                   {"approach": "candidate", "kind": "candidate", "config": {}}],
                                       run_fields={"key_metric": "accuracy", "best_baseline": "zero_shot"}))
    return SimpleNamespace(run_id=run_id, gates=verdicts)


def pytest_configure(config):
    harness._engine.run_experiment = fake_run


def pytest_unconfigure(config):
    harness._engine.run_experiment = _real
'''

FAMILY_SPEC = '''
from harness import Experiment, QLoRA, baselines

{name} = Experiment(name="{name}", data="data.jsonl", metric="accuracy", baselines=[baselines.zero_shot("s.md")],
                    candidate=QLoRA(), regression=None, forgetting=None)
'''


@pytest.fixture
def family_project(heavy_modules, pytester):
    pytester.makeconftest(FAMILY_CONFTEST)
    (pytester.path / "data.jsonl").write_text('{"input": "a", "output": "1"}\n')
    (pytester.path / "s.md").write_text("answer 1 or 0")
    for name in ("strong", "borderline", "weak"):
        pytester.makepyfile(**{f"test_{name}": FAMILY_SPEC.format(name=name)})
    return pytester


def test_the_plugin_judges_the_family_and_every_reader_sees_the_same_verdict(family_project):
    from harness.judge import decision
    from harness.report import write_reports
    from harness.store import Store

    alone = family_project.runpytest("-p", "no:cacheprovider", "-k", "five_percent_rule", "--harness-no-report")
    alone.assert_outcomes(passed=2, failed=1, deselected=6)     # borderline PASSes on its own
    holm = family_project.runpytest("-p", "no:cacheprovider", "-k", "five_percent_rule", "--harness-holm")
    holm.assert_outcomes(passed=1, failed=2, deselected=6)      # ... not as one of three
    out = holm.stdout.str()
    assert "Holm across the 3 experiments judged in this session: ranked 2" in out
    store = Store(family_project.path / ".harness" / "harness.duckdb")
    latest = {name: store.stored_runs(name)[-1] for name in ("strong", "borderline", "weak")}
    borderline = latest["borderline"].gate("five_percent_rule")
    assert borderline.outcome == INCONCLUSIVE and borderline.details["family"]["rank"] == 2
    assert decision.decide(latest["borderline"].gates).verdict == decision.INCONCLUSIVE_VERDICT
    assert decision.decide(latest["strong"].gates).verdict == decision.FINE_TUNE
    write_reports(store, family_project.path / "out")
    page = (family_project.path / "out" / "borderline.html").read_text()
    badge = re.search(r'id="verdict" data-verdict="([^"]+)"', page).group(1)
    assert badge == "Inconclusive" and "ranked 2 by p=" in page and "not as one of the 3 experiments" in page


def test_holm_refuses_parallel_workers(family_project):
    result = family_project.runpytest("-p", "no:cacheprovider", "--harness-holm", "-n", "2")
    assert "--harness-holm judges every experiment of the session together, in one process" in \
        result.stderr.str() + result.stdout.str()
    assert result.ret != 0
