import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from harness.errors import DataError
from harness.judge import capability, decision, forgetting, regression
from harness.models import ResolvedModel, load_model, load_tokenizer

MMLU_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mmlu_test.jsonl"


@pytest.fixture(scope="module")
def mmlu():
    return capability.load_suite("mmlu")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    resolved = ResolvedModel("tiny", str(tiny_model_dir), "x")
    tokenizer = load_tokenizer(resolved)
    tokenizer.padding_side = "left"
    return load_model(resolved, quantize=False), tokenizer


def _row(**overrides):
    row = {"question": "What is 2 + 2?", "answer_a": "3", "answer_b": "4", "answer_c": "5", "answer_d": "22",
           "correct_answer": "B", "topic": "arithmetic"}
    row.update(overrides)
    return row


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _scores(suite, correct):
    """SuiteScores for `suite` with the given per-question correctness (predicted letters follow from it)."""
    chosen = [q.answer if c else (q.answer + 1) % 4 for q, c in zip(suite.rows, correct)]
    return capability.from_answers(suite, list(range(len(correct))), chosen)


def _base_correct(n=1140):
    return [1 if i % 3 == 0 else 0 for i in range(n)]  # 380 of 1140 right: 0.333


# --- the shipped suite ---------------------------------------------------------------------------------------

def test_shipped_slice_is_57_subjects_by_20_with_a_balanced_screen(mmlu):
    assert mmlu.name == "mmlu" and mmlu.title == "MMLU slice" and len(mmlu.rows) == 1140
    assert Counter(q.subject for q in mmlu.rows) == {s: 20 for s in mmlu.subjects} and len(mmlu.subjects) == 57
    # five questions per right letter in each subject, and one per letter in its screen
    assert Counter(q.answer for q in mmlu.rows) == {k: 285 for k in range(4)}
    screen = [mmlu.rows[i] for i in mmlu.screen_questions]
    assert len(screen) == 228 and Counter(q.answer for q in screen) == {k: 57 for k in range(4)}
    assert Counter(q.subject for q in screen) == {s: 4 for s in mmlu.subjects}
    assert all(len(q.choices) == 4 and all(q.choices) and q.question for q in mmlu.rows)


@pytest.mark.skipif(not MMLU_SOURCE.is_file(), reason="needs ../shared/datasets/mmlu_test.jsonl")
def test_slice_script_reproduces_the_shipped_file(tmp_path):
    from harness.judge.suites import make_mmlu_slice

    out = tmp_path / "slice.jsonl"
    make_mmlu_slice.main([str(MMLU_SOURCE), "--out", str(out)])
    assert out.read_bytes() == (capability.SUITES_DIR / "mmlu_slice.jsonl").read_bytes()


def test_prompt_is_lm_eval_harness_mmlu_continuation_style(mmlu):
    q = mmlu.rows[0]
    assert capability.prompt(q) == (f"The following are questions (with answers) about abstract algebra.\n\n"
                                    f"Question: {q.question}\nAnswer:")
    assert capability.continuations(q) == [" " + c for c in q.choices]
    prompts, conts = capability.items(mmlu, [0, 1])
    assert prompts == [capability.prompt(mmlu.rows[0])] * 4 + [capability.prompt(mmlu.rows[1])] * 4
    assert conts[4:] == capability.continuations(mmlu.rows[1])


def test_the_option_likeliest_per_character_is_chosen(mmlu):
    suite = replace(mmlu, rows=(capability.Question("q", ("a", "bbbbbbbbb", "c", "d"), 1, "s"),))
    # option B's total log-likelihood is the lowest, but per character (10 with the space) the highest
    assert capability.answers(suite, [0], [-4.0, -5.0, -3.0, -6.0]) == [1]
    assert capability.answers(suite, [0], [-1.0, -50.0, -3.0, -6.0]) == [0]


# --- user suites -------------------------------------------------------------------------------------------

def test_user_suite_loads_relative_to_root(tmp_path):
    _write(tmp_path / "mine.jsonl", [_row(), "", _row(question="Capital of France?", answer_a="Paris",
                                                      correct_answer="A", topic="geography")])
    suite = capability.load_suite("mine.jsonl", root=tmp_path)
    assert suite.name == "mine.jsonl" and suite.subjects == ["arithmetic", "geography"]
    assert suite.rows[0] == capability.Question("What is 2 + 2?", ("3", "4", "5", "22"), 1, "arithmetic")
    assert suite.rows[1].answer == 0


@pytest.mark.parametrize("bad, expected", [
    (_row(correct_answer="E"), "line 2: correct_answer must be one of A, B, C, D (got 'E')"),
    ({k: v for k, v in _row().items() if k != "answer_c"}, "line 2: missing answer_c; each row needs question"),
    (_row(topic=""), "line 2: topic must be non-empty text (got '')"),
    ('{"question": "unterminated', "line 2: not valid JSON"),
    ("[1, 2]", "line 2: expected a JSON object, got list"),
])
def test_bad_suite_row_is_one_line_naming_file_and_line(tmp_path, bad, expected):
    path = _write(tmp_path / "suite.jsonl", [_row(), bad])
    with pytest.raises(DataError) as e:
        capability.load_suite(str(path))
    message = str(e.value)
    assert "\n" not in message and f"regression suite {path} {expected}" in message


def test_missing_or_empty_suite_says_what_to_use(tmp_path):
    with pytest.raises(DataError, match=r"regression suite 'nope.jsonl' does not exist: use 'mmlu'"):
        capability.load_suite("nope.jsonl", root=tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="has no questions"):
        capability.load_suite(tmp_path / "empty.jsonl")


# --- scoring on the tiny model -----------------------------------------------------------------------------

def test_suite_scoring_batched_equals_one_at_a_time(tiny, mmlu):
    model, tokenizer = tiny
    indices = list(range(40, 52))  # three subjects' worth of prompt lengths mixed in a batch
    calls = []
    batched = capability.score_suite(model, tokenizer, mmlu, indices, batch_size=5,
                                     progress=lambda d, t: calls.append(d))
    single = capability.score_suite(model, tokenizer, mmlu, indices, batch_size=1)
    assert batched.predicted == single.predicted and batched.indices == indices
    assert set(batched.predicted) <= set("ABCD") and len(batched.predicted) == 12 and calls[-1] == 48
    assert batched.correct == [int(p == "ABCD"[mmlu.rows[i].answer]) for p, i in zip(batched.predicted, indices)]
    assert capability.SuiteScores.from_dict(json.loads(json.dumps(batched.to_dict()))) == batched


def test_probe_scoring_is_per_token_log_likelihood_after_a_boundary(tiny):
    import torch

    from harness.scoring import batched

    model, tokenizer = tiny
    probe = forgetting.load_probe("wikipedia")
    texts = list(probe.texts[:3])
    start = forgetting.boundary(tokenizer)
    loglik, tokens = batched.score_continuations(model, tokenizer, [start] * 3, texts, batch_size=2)
    ids = tokenizer(start + texts[0], add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float().log_softmax(-1)[0]
    n = tokens[0]
    direct = logits[-n - 1:-1].gather(-1, ids[0, -n:].unsqueeze(-1)).sum().item()
    assert loglik[0] == pytest.approx(direct, rel=1e-4, abs=1e-3)  # batched, padded, same number
    scores = forgetting.from_logliks(probe, loglik, tokens)
    assert scores.per_token == [ll / t for ll, t in zip(loglik, tokens)]
    assert scores.nats_per_token == pytest.approx(-sum(scores.per_token) / 3)


# --- the shipped probe ---------------------------------------------------------------------------------------

HALUEVAL_SOURCE = MMLU_SOURCE.with_name("halueval_qa.jsonl")


def test_shipped_probe_is_200_distinct_passages_no_shipped_experiment_uses():
    probe = forgetting.load_probe("wikipedia")
    assert probe.title == "held Wikipedia passages" and len(probe.texts) == 250 == len(set(probe.texts))
    used = Path(__file__).resolve().parents[1] / "experiments" / "data"
    shipped = {json.loads(line)["text"] for line in (used / "halueval_passages.jsonl").read_text().splitlines()}
    everything_shipped = "".join(p.read_text() for p in used.glob("*.jsonl"))
    assert not shipped & set(probe.texts)
    assert not any(text[:200] in everything_shipped for text in probe.texts)
    assert all(len(text) <= 800 for text in probe.texts)


@pytest.mark.skipif(not HALUEVAL_SOURCE.is_file(), reason="needs ../shared/datasets/halueval_qa.jsonl")
def test_probe_script_reproduces_the_shipped_file(tmp_path):
    from harness.judge.suites import make_wikipedia_probe

    out = tmp_path / "probe.jsonl"
    make_wikipedia_probe.main([str(HALUEVAL_SOURCE), "--out", str(out)])
    assert out.read_bytes() == (forgetting.SUITES_DIR / "wikipedia_passages.jsonl").read_bytes()


@pytest.mark.parametrize("bad, expected", [
    ('{"text": ""}', 'line 2: expected an object with non-empty "text"'),
    ('{"txt": "a"}', 'line 2: expected an object with non-empty "text"'),
    ("not json", "line 2: not valid JSON"),
])
def test_bad_probe_row_is_one_line_naming_file_and_line(tmp_path, bad, expected):
    path = _write(tmp_path / "probe.jsonl", ['{"text": "Some held text."}', bad])
    with pytest.raises(DataError) as e:
        forgetting.load_probe(str(path))
    assert "\n" not in str(e.value) and f"forgetting probe {path} {expected}" in str(e.value)
    with pytest.raises(DataError, match="forgetting probe 'nope.jsonl' does not exist: use 'wikipedia'"):
        forgetting.load_probe("nope.jsonl", root=tmp_path)


# --- the capability suite's verdicts -------------------------------------------------------------------------

def test_identical_answers_pass(mmlu):
    same = _scores(mmlu, _base_correct())
    v = capability.judge(same, same)
    assert v.gate == "regression" and v.outcome == "PASS"
    assert v.message == ("MMLU slice accuracy 0.333 -> 0.333 (+0.0 pts, 95% CI +0.0..+0.0) stays above -2 pts "
                         "on 1140 questions (0 broken, 0 fixed)")
    d = v.details
    assert (d["base_accuracy"], d["low"], d["high"], d["delta"], d["n"]) == (380 / 1140, 0.0, 0.0, 0.02, 1140)
    assert d["per_subject"] == {}  # 20 questions a subject: too few to name one
    assert d["base_correct"] == d["candidate_correct"] == _base_correct()
    json.dumps(d)  # stored as JSON


def test_losing_ten_points_fails(mmlu):
    base = _base_correct()
    cand = base[:]
    for i in [i for i, c in enumerate(base) if c][:114]:  # 114 of 1140 = 10 points lost
        cand[i] = 0
    v = capability.judge(_scores(mmlu, base), _scores(mmlu, cand))
    assert v.outcome == "FAIL" and "falls below -2 pts on 1140 questions (114 broken, 0 fixed)" in v.message
    assert v.details["high"] < -0.02 and v.details["difference"] == pytest.approx(-0.1)


def test_subjects_are_named_only_with_enough_questions(tmp_path):
    rows = [_row(topic="big")] * 60 + [_row(topic="small")] * 10
    suite = capability.load_suite(_write(tmp_path / "mine.jsonl", rows))
    base = [1] * 70
    cand = [0] * 6 + [1] * 54 + [0] * 10  # big loses 6 of 60, small loses all 10
    v = capability.judge(_scores(suite, base), _scores(suite, cand), delta=0.5)
    assert list(v.details["per_subject"]) == ["big"] and "lower in big 1.00 -> 0.90 (60 questions)" in v.message
    assert "small" not in v.message


def test_the_screen_skips_a_suite_the_base_answers_at_chance(mmlu):
    at_chance = _scores(mmlu, [1 if i % 4 == 0 else 0 for i in range(1140)])  # 0.25
    sub = capability.from_answers(mmlu, mmlu.screen_questions, [q.answer if i % 4 == 0 else (q.answer + 1) % 4
                                                      for i, q in enumerate(mmlu.rows[j] for j in mmlu.screen_questions)])
    checked = capability.screen(sub, 0.02)
    assert not checked.passed and checked.n == 228 and checked.floor == pytest.approx(0.27)
    skipped = capability.skipped(mmlu, checked)
    assert skipped.outcome == "SKIP" and "no accuracy here to lose" in skipped.message
    assert "57/228 screen questions (0.250), not shown above chance (0.25) plus the margin (0.27" in skipped.message
    assert at_chance.accuracy == 0.25
    strong = capability.from_answers(mmlu, mmlu.screen_questions, [mmlu.rows[j].answer if k % 2 else (mmlu.rows[j].answer + 1) % 4
                                                         for k, j in enumerate(mmlu.screen_questions)])
    assert capability.screen(strong, 0.02).passed  # 0.50 on 228: far above 0.27


def test_gate_refuses_scores_from_different_suites(mmlu, tmp_path):
    other = capability.load_suite(_write(tmp_path / "mine.jsonl", [_row()] * 4))
    with pytest.raises(ValueError, match="same questions"):
        capability.judge(_scores(mmlu, _base_correct()), _scores(other, [1, 0, 1, 0]))


# --- the forgetting probe's verdicts -------------------------------------------------------------------------

def _probe_scores(per_token, tokens=100):
    probe = forgetting.load_probe("wikipedia")
    n = len(per_token)
    return forgetting.ProbeScores(probe.name, probe.title, probe.sha256, [v * tokens for v in per_token], [tokens] * n)


def _documents(n=200, shift=0.0, sd=0.02, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.normal(-3.5, 0.4, n)
    return base.tolist(), (base + shift + rng.normal(0, sd, n)).tolist()


def test_probe_passes_no_loss_and_fails_a_real_one():
    base, same = _documents()
    v = forgetting.judge(_probe_scores(base), _probe_scores(same))
    assert v.outcome == "PASS" and "stays below x1.05 on 200 documents" in v.message
    assert v.message.startswith("held Wikipedia passages: perplexity x1.0")
    base, worse = _documents(shift=-0.15)  # perplexity x1.16
    v = forgetting.judge(_probe_scores(base), _probe_scores(worse))
    assert v.outcome == "FAIL" and "is above x1.05" in v.message and v.details["ratio"] == pytest.approx(1.16, abs=0.01)
    assert v.details["bar"] == pytest.approx(-0.04879, abs=1e-5) and len(v.details["base_loglik"]) == 200


def test_probe_margin_is_the_perplexity_ratio():
    base, worse = _documents(shift=-0.07, sd=0.01)  # x1.073
    assert forgetting.judge(_probe_scores(base), _probe_scores(worse)).outcome == "FAIL"
    assert forgetting.judge(_probe_scores(base), _probe_scores(worse), margin=0.10).outcome == "PASS"


# --- the gate: instruments combined --------------------------------------------------------------------------

def _part(outcome):
    return regression.GateResult("regression", outcome, f"it was {outcome}", {})


@pytest.mark.parametrize("probe, suite, expected", [
    ("PASS", "PASS", "PASS"), ("PASS", "SKIP", "PASS"), ("SKIP", "SKIP", "SKIP"),
    ("PASS", "INCONCLUSIVE", "INCONCLUSIVE"), ("INCONCLUSIVE", "SKIP", "INCONCLUSIVE"),
    ("FAIL", "PASS", "FAIL"), ("INCONCLUSIVE", "FAIL", "FAIL"), ("PASS", "FAIL", "FAIL"),
])
def test_instruments_combine_as_an_intersection_union_test(probe, suite, expected):
    v = regression.combine({regression.PROBE: _part(probe), regression.SUITE: _part(suite)})
    assert v.outcome == expected and v.gate == "regression"
    assert v.message == f"forgetting probe: {probe} - it was {probe}; capability suite: {suite} - it was {suite}"
    assert set(v.details["instruments"]) == {regression.PROBE, regression.SUITE}


def test_allowed_inconclusive_is_recorded_for_the_decision():
    v = regression.combine({regression.PROBE: _part("INCONCLUSIVE")}, allow_inconclusive=True)
    assert v.outcome == "INCONCLUSIVE" and decision.gate_passes(v) and v.message.endswith("(allowed by the spec)")
    assert not decision.gate_passes(regression.combine({regression.PROBE: _part("INCONCLUSIVE")}))


def test_power_is_planned_before_training_from_the_base_alone(mmlu):
    base, _ = _documents()
    planned = regression.plan(probe=_probe_scores(base), suite=_scores(mmlu, _base_correct()),
                              screen=capability.Screen(228, 80, 0.27, 1e-4, 0.025, True), margin=0.05, delta=0.02,
                              confidence=0.95)
    probe, suite = planned[regression.PROBE], planned[regression.SUITE]
    # per-document sd 0.4, correlation 0.9: paired sd 0.179; 200 documents resolve a 0.049 margin
    assert probe["power"]["unit_sd"] == pytest.approx(0.4 * (2 * 0.1) ** 0.5, rel=0.1)
    assert probe["power"]["power_now"] > 0.95 and probe["text"].startswith("forgetting probe: 98% power to PASS")
    # accuracy 1/3 at phi 0.9: discordance 4.4%, sd 0.21; 1,140 questions give about 84% power at -2 pts
    assert suite["power"]["unit_sd"] == pytest.approx((2 * 1 / 3 * 2 / 3 * 0.1) ** 0.5)
    assert 0.8 < suite["power"]["power_now"] < 0.9 and not regression.is_underpowered(planned)
    skipped = regression.plan(probe=None, suite=None, screen=capability.Screen(228, 57, 0.27, 0.8, 0.025, False),
                              margin=0.05, delta=0.02, confidence=0.95)
    assert skipped[regression.SUITE]["power"] is None and "will SKIP" in skipped[regression.SUITE]["text"]


def test_an_inconclusive_instrument_says_what_would_settle_it():
    base, worse = _documents(n=30, shift=-0.045, sd=0.08)
    part = regression.probe_part(_probe_scores(base), _probe_scores(worse), margin=0.05, confidence=0.95, seed=0,
                                 resamples=2000)
    assert part.outcome == "INCONCLUSIVE" and part.details["power"]["n"] == 30
    v = regression.combine({regression.PROBE: part})
    assert "30 documents have 80% power only for a true difference of" in v.message
