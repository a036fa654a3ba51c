import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from harness.errors import DataError
from harness.judge import decision, regression
from harness.models import ResolvedModel, load_model, load_tokenizer

MMLU_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mmlu_test.jsonl"


@pytest.fixture(scope="module")
def mmlu():
    return regression.load_suite("mmlu")


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
    predicted = [regression.LETTERS[q.answer if c else (q.answer + 1) % 4] for q, c in zip(suite.rows, correct)]
    return regression.SuiteScores(suite.name, suite.title, suite.sha256, [q.subject for q in suite.rows],
                                  list(correct), predicted)


def _base_correct(n=228):
    return [1 if i % 3 == 0 else 0 for i in range(n)]  # 76 of 228 right: 0.333, about a small model's MMLU


# --- the shipped suite ---------------------------------------------------------------------------------------

def test_shipped_slice_is_57_subjects_by_4_with_balanced_answers(mmlu):
    assert mmlu.name == "mmlu" and mmlu.title == "MMLU slice" and len(mmlu.rows) == 228
    assert Counter(q.subject for q in mmlu.rows) == {s: 4 for s in mmlu.subjects} and len(mmlu.subjects) == 57
    # one question per right letter in each subject: always answering "A" scores exactly 0.25
    assert Counter(q.answer for q in mmlu.rows) == {0: 57, 1: 57, 2: 57, 3: 57}
    assert all(len(q.choices) == 4 and all(q.choices) and q.question for q in mmlu.rows)


@pytest.mark.skipif(not MMLU_SOURCE.is_file(), reason="needs ../shared/datasets/mmlu_test.jsonl")
def test_slice_script_reproduces_the_shipped_file(tmp_path):
    from harness.judge.suites import make_mmlu_slice

    out = tmp_path / "slice.jsonl"
    make_mmlu_slice.main([str(MMLU_SOURCE), "--out", str(out)])
    assert out.read_bytes() == (regression.SUITES_DIR / "mmlu_slice.jsonl").read_bytes()


def test_prompt_is_lm_eval_harness_mmlu_style(mmlu):
    assert regression.prompt(mmlu.rows[0]) == (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Statement 1 | If H and K are subgroups of G and one of H or K is normal subgroup of G, then HK is a "
        "subgroup of G. Statement 2 | All groups of order p^2 where p is prime are Abelian.\n"
        "A. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer:")


# --- user suites -------------------------------------------------------------------------------------------

def test_user_suite_loads_relative_to_root(tmp_path):
    _write(tmp_path / "mine.jsonl", [_row(), "", _row(question="Capital of France?", answer_a="Paris",
                                                      correct_answer="A", topic="geography")])
    suite = regression.load_suite("mine.jsonl", root=tmp_path)
    assert suite.name == "mine.jsonl" and suite.subjects == ["arithmetic", "geography"]
    assert suite.rows[0] == regression.Question("What is 2 + 2?", ("3", "4", "5", "22"), 1, "arithmetic")
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
        regression.load_suite(str(path))
    message = str(e.value)
    assert "\n" not in message and f"regression suite {path} {expected}" in message


def test_missing_or_empty_suite_says_what_to_use(tmp_path):
    with pytest.raises(DataError, match=r"regression suite 'nope.jsonl' does not exist: use 'mmlu'"):
        regression.load_suite("nope.jsonl", root=tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="has no questions"):
        regression.load_suite(tmp_path / "empty.jsonl")


# --- scoring on the tiny model -----------------------------------------------------------------------------

def test_scoring_gives_letters_and_batched_equals_one_at_a_time(tiny, mmlu):
    model, tokenizer = tiny
    suite = replace(mmlu, rows=mmlu.rows[:12])  # 3 subjects: enough to mix prompt lengths in a batch
    calls = []
    batched = regression.score_suite(model, tokenizer, suite, batch_size=5, progress=lambda d, t: calls.append(d))
    single = regression.score_suite(model, tokenizer, suite, batch_size=1)
    assert batched.predicted == single.predicted
    assert set(batched.predicted) <= set("ABCD") and len(batched.predicted) == 12
    assert batched.correct == [int(p == "ABCD"[q.answer]) for p, q in zip(batched.predicted, suite.rows)]
    assert batched.accuracy == sum(batched.correct) / 12 and calls[-1] == 12
    assert list(batched.per_subject) == suite.subjects and all(n == 4 for _, n in batched.per_subject.values())
    assert batched.suite_sha256 == mmlu.sha256 and batched.seconds > 0
    assert regression.SuiteScores.from_dict(json.loads(json.dumps(batched.to_dict()))) == batched


# --- the gate --------------------------------------------------------------------------------------------

def test_identical_scores_pass(mmlu):
    same = _scores(mmlu, _base_correct())
    v = regression.regression_gate(same, same)
    assert v.gate == "regression" and v.outcome == "PASS" and decision.gate_passes(v)
    assert v.message == ("MMLU slice accuracy 0.333 -> 0.333 (+0.0 pts, 95% CI +0.0..+0.0) stays above -2 pts "
                         "on 228 questions (0 broken, 0 fixed); no subject lost accuracy")
    d = v.details
    assert (d["base_accuracy"], d["candidate_accuracy"], d["low"], d["high"], d["delta"], d["n"]) == \
        (76 / 228, 76 / 228, 0.0, 0.0, 0.02, 228)
    assert len(d["per_subject"]) == 57 and all(row[2] == 4 for row in d["per_subject"].values())
    assert d["base_correct"] == d["candidate_correct"] == _base_correct()
    json.dumps(d)  # stored as JSON


def test_losing_ten_points_fails_and_names_the_worst_subject(mmlu):
    base = _base_correct()
    cand = base[:]
    right = [i for i, c in enumerate(base) if c]
    for i in right[:23]:            # 23 of 228 = 10.1 points lost
        cand[i] = 0
    v = regression.regression_gate(_scores(mmlu, base), _scores(mmlu, cand))
    assert v.outcome == "FAIL" and not decision.gate_passes(v)
    assert v.message.startswith("MMLU slice accuracy 0.333 -> 0.232 (-10.1 pts, 95% CI -")
    assert "falls below -2 pts on 228 questions (23 broken, 0 fixed)" in v.message
    worst = v.details["worst_subject"]
    b, c, n = v.details["per_subject"][worst]
    assert c < b and f"worst subject: {worst} {b:.2f} -> {c:.2f} ({n} questions)" in v.message
    assert v.details["high"] < -0.02 and v.details["difference"] == pytest.approx(-23 / 228)


def test_small_noisy_loss_is_inconclusive(mmlu):
    base = _base_correct()
    cand = base[:]
    right = [i for i, c in enumerate(base) if c]
    wrong = [i for i, c in enumerate(base) if not c]
    for i in right[:8]:
        cand[i] = 0
    for i in wrong[:4]:             # net -4 of 228: -1.8 points, too few questions to tell from -2
        cand[i] = 1
    v = regression.regression_gate(_scores(mmlu, base), _scores(mmlu, cand))
    assert v.outcome == "INCONCLUSIVE" and not decision.gate_passes(v)
    assert v.details["low"] < -0.02 < v.details["high"]
    assert "straddles -2 pts on 228 questions (8 broken, 4 fixed)" in v.message
    assert "228 questions have 80% power only for a true difference of" in v.message
    assert "if the true difference is +0.0 pts (no loss) takes about" in v.message


def test_a_wider_delta_passes_the_same_small_loss(mmlu):
    base = _base_correct()
    cand = base[:]
    cand[0] = 0
    v = regression.regression_gate(_scores(mmlu, base), _scores(mmlu, cand), delta=0.05, confidence=0.9)
    assert v.outcome == "PASS" and "90% CI" in v.message and "stays above -5 pts" in v.message


def test_gate_refuses_scores_from_different_suites(mmlu, tmp_path):
    other = regression.load_suite(_write(tmp_path / "mine.jsonl", [_row()] * 4))
    with pytest.raises(ValueError, match="same suite"):
        regression.regression_gate(_scores(mmlu, _base_correct()), _scores(other, [1, 0, 1, 0]))
