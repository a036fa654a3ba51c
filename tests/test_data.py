import json

import pytest

from harness import data
from harness.errors import DataError


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("row, fmt, messages, answer", [
    ({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                   {"role": "assistant", "content": "A"}]}, "openai_chat", (("system", "S"), ("user", "U")), "A"),
    ({"system": "S", "messages": [{"role": "user", "content": [{"type": "text", "text": "U"}]},
                                  {"role": "assistant", "content": "A"}]}, "anthropic",
     (("system", "S"), ("user", "U")), "A"),
    ({"instruction": "Do", "input": "this", "output": "done"}, "alpaca", (("user", "Do\n\nthis"),), "done"),
    ({"instruction": "Do", "input": "", "output": "done"}, "alpaca", (("user", "Do"),), "done"),
    ({"text": "T", "label": 1}, "classification", (("user", "T"),), "1"),
    ({"input": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], "ideal": "1"},
     "openai_evals", (("system", "S"), ("user", "U")), "1"),
    ({"input": "U", "ideal": ["A", "B"]}, "openai_evals", (("user", "U"),), "A"),
])
def test_every_format_normalises_to_one_sample(tmp_path, row, fmt, messages, answer):
    ds = data.load(_write(tmp_path / "d.jsonl", [row]))
    assert ds.format == fmt and not ds.checks
    s = ds.samples[0]
    assert s.messages == messages and s.answer == answer and s.line == 1


def test_invalid_json_is_an_error_with_its_line(tmp_path):
    ds = data.load(_write(tmp_path / "d.jsonl", [{"text": "a", "label": 0}, "{not json", {"text": "b", "label": 1}]))
    [check] = ds.errors
    assert check.name == "invalid_json" and check.lines == [2]
    assert len(ds.samples) == 2


def test_nan_is_not_json(tmp_path):
    ds = data.load(_write(tmp_path / "d.jsonl", ['{"text": "a", "label": NaN}']))
    assert ds.errors[0].name == "invalid_json" and ds.errors[0].lines == [1]


def test_last_message_must_be_the_assistant(tmp_path):
    ds = data.load(_write(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "U"}]}]))
    assert ds.errors[0].name == "schema" and "last message must be from the assistant" in ds.errors[0].message


def test_mixed_formats_are_an_error(tmp_path):
    ds = data.load(_write(tmp_path / "d.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": 1},
                                                 {"instruction": "i", "output": "o"}]))
    assert [c.name for c in ds.errors] == ["mixed_formats"] and ds.errors[0].lines == [3]


def test_missing_and_empty_files_are_refused(tmp_path):
    with pytest.raises(DataError, match="not found"):
        data.load(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="has no rows"):
        data.load(tmp_path / "empty.jsonl")


def _samples(n, labels=("0", "1")):
    return [data.Sample((("user", f"headline {i}"),), labels[i % len(labels)], line=i + 1) for i in range(n)]


def test_split_is_seeded_stratified_and_disjoint():
    samples = _samples(100)
    a = data.split(samples, (0.8, 0.1, 0.1), seed=1, stratify=True)
    b = data.split(samples, (0.8, 0.1, 0.1), seed=1, stratify=True)
    assert [s.key for s in a.test] == [s.key for s in b.test] and a.test_sha256 == b.test_sha256
    assert a.sizes() == {"train": 80, "val": 10, "test": 10}
    keys = [set(s.key for s in part) for part in (a.train, a.val, a.test)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert sorted(s.answer for s in a.test) == ["0"] * 5 + ["1"] * 5
    c = data.split(samples, (0.8, 0.1, 0.1), seed=2, stratify=True)
    assert c.test_sha256 != a.test_sha256


def test_split_by_counts_and_duplicates_never_straddle():
    samples = _samples(50) + _samples(50)  # every row twice
    parts = data.split(samples, (30, 10, 10), seed=0, stratify=True)
    assert parts.sizes() == {"train": 30, "val": 10, "test": 10}
    train_keys = {s.key for s in parts.train}
    assert not train_keys & {s.key for s in parts.test}
    with pytest.raises(DataError, match="split asks for 40\\+10\\+10 rows but the data has 50 unique rows"):
        data.split(samples, (40, 10, 10), seed=0, stratify=True)


def test_task_inference():
    assert data.infer_task(_samples(20)) == "classification"
    long = [data.Sample((("user", "q"),), f"a long free-text answer number {i}") for i in range(20)]
    assert data.infer_task(long) == "generation"


def test_quality_checks_flag_duplicates_balance_and_size(tmp_path):
    rows = [{"text": f"t{i}", "label": "1" if i < 45 else "0"} for i in range(50)] + [{"text": "t0", "label": "1"}]
    ds = data.load(_write(tmp_path / "d.jsonl", rows))
    checks = {c.name: c for c in data.quality_checks(ds, "classification")}
    assert checks["duplicates"].level == "warning" and checks["duplicates"].lines == [51]
    assert checks["class_balance"].level == "warning" and "largest/smallest = 9.20" in checks["class_balance"].message
    assert checks["size"].level == "info"


def test_shipped_sarcasm_slice_loads_clean():
    ds = data.load("experiments/data/sarcasm.jsonl")
    assert ds.format == "openai_evals" and not ds.errors and len(ds.samples) == 1100
