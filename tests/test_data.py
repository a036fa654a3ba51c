import json
import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from harness import data
from harness.data.near import near_pairs
from harness.data.read import is_header_row
from harness.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "data"


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
    assert ds.errors[0].name == "nan_infinity" and ds.errors[0].lines == [1]
    assert "NaN is not valid JSON" in ds.errors[0].message


def test_last_message_must_be_the_assistant(tmp_path):
    ds = data.load(_write(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "U"}]}]))
    assert ds.errors[0].name == "last_message"
    assert ds.errors[0].message == \
        "1 row(s) unusable; first at line 1: last message must be from the assistant (got 'user')"


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
    assert ds.format == "openai_evals" and not ds.errors and len(ds.samples) == 1480


def test_a_directory_or_unreadable_file_is_one_line(tmp_path):
    with pytest.raises(DataError, match=r"^data file .* is not a file; point to a .jsonl, .csv, .tsv or .parquet file, or a folder written by Dataset.save_to_disk$"):
        data.load(tmp_path)
    locked = _write(tmp_path / "locked.jsonl", [{"text": "a", "label": "0"}])
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as a user who can read any file")
        with pytest.raises(DataError, match="cannot be read .*; check its permissions"):
            data.load(locked)
    finally:
        locked.chmod(0o644)


def test_csv_reads_like_jsonl_with_the_header_as_line_1():
    csv_rows, jsonl_rows = data.load(FIXTURES / "classification.csv"), data.load(FIXTURES / "clean.jsonl")
    assert csv_rows.format == "classification" and not csv_rows.checks
    assert [(s.messages, s.answer) for s in csv_rows.samples] == [(s.messages, s.answer) for s in jsonl_rows.samples]
    assert [s.line for s in csv_rows.samples] == [s.line + 1 for s in jsonl_rows.samples]


def test_a_column_mapping_reads_any_rows():
    ds = data.load(FIXTURES / "columns.jsonl", columns={"input": "question", "output": "right_answer"})
    assert ds.format == "columns" and not ds.checks
    assert ds.samples[0].messages == (("user", "Name the capital of France."),) and ds.samples[0].answer == "Paris"
    mapping = data.parse_columns("input=topic+question,output=right_answer")
    joined = data.load(FIXTURES / "columns.jsonl", columns=mapping)
    assert joined.samples[0].input_text == "general\nName the capital of France."


def test_rows_in_no_format_ask_for_a_column_mapping():
    with pytest.raises(DataError, match=r"no row is in a known format \(keys seen: question, right_answer, topic\); "
                                        r"map the columns, e\.g\. --columns input=question,output=answer"):
        data.load(FIXTURES / "columns.jsonl")


def test_a_mapping_naming_an_absent_column_fails_each_row():
    ds = data.load(FIXTURES / "columns.jsonl", columns={"input": "prompt", "output": "right_answer"})
    [check] = ds.errors
    assert check.name == "missing_keys" and check.lines == [1, 2, 3, 4, 5, 6]
    assert "missing key 'prompt' (column mapping input=prompt)" in check.message


@pytest.mark.parametrize("text, message", [
    ("question", "column mapping 'question' needs role=column"),
    ("input=question", "column mapping needs input= and output="),
    ("input=q,output=a,label=b",
     "column mapping needs input= and output= (and optionally system=), got input, output, label"),
])
def test_bad_column_mappings_say_how_to_write_one(text, message):
    with pytest.raises(DataError, match="e.g. input=question,output=right_answer"):
        data.parse_columns(text)
    with pytest.raises(DataError) as e:
        data.parse_columns(text)
    assert message in str(e.value)


def test_max_rows_stops_reading():
    assert len(data.load(FIXTURES / "clean.jsonl", max_rows=5).samples) == 5


def test_rows_sharing_an_input_stay_on_one_side_of_the_split():
    samples = _samples(100)
    # the same headline under the other label, ten times: label noise that must not straddle the split
    samples += [data.Sample((("user", f"HEADLINE {i}"),), "1" if i % 2 == 0 else "0", line=101 + i) for i in range(10)]
    for seed in range(5):
        parts = data.split(samples, (0.8, 0.1, 0.1), seed=seed, stratify=True)
        train = {s.norm_input for s in parts.train}
        assert not train & {s.norm_input for s in parts.val + parts.test}
        assert sum(parts.sizes().values()) == 110


def test_the_shipped_split_is_unchanged():
    """Pinned: the test split of the shipped experiment must not move when harness/data changes."""
    ds = data.load("experiments/data/sarcasm.jsonl")
    parts = data.split(ds.samples, (480, 120, 800), seed=0, stratify=True)
    assert parts.test_sha256 == "79599898ffa64415cd6ceac5195a9462735a2c56afdc4d96279bfbac8cfe7528"
    # the first 1,100 rows (the slice before 380 rows were appended) still split as they always did
    parts = data.split(ds.samples[:1100], (480, 120, 400), seed=0, stratify=True)
    assert parts.test_sha256 == "4765c1b782998a28cc064471dcfc6d17a6dfe7f14c00204668cacbc7ac31c7ce"


def _shingles(text: str) -> set[bytes]:
    """Independent of harness/data/near.py: the 5-byte shingles of a text (the whole text when shorter)."""
    b = text.encode()
    return {b[i:i + 5] for i in range(max(1, len(b) - 4))}


def test_near_pairs_finds_what_brute_force_finds():
    rng = random.Random(7)
    words = "the a cat dog senate mayor votes on new old bill plan city man woman says finds report study".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(12, 20))) for _ in range(300)]
    for i in range(40):  # plant near duplicates: one word dropped or added
        t = texts[rng.randrange(300)].split()
        t.insert(rng.randrange(len(t)), rng.choice(words)) if i % 2 else t.pop(rng.randrange(len(t)))
        texts.append(" ".join(t))
    sets = [_shingles(t) for t in texts]
    jaccard = lambda i, j: len(sets[i] & sets[j]) / len(sets[i] | sets[j])
    brute = {(i, j): jaccard(i, j) for i in range(len(texts)) for j in range(i + 1, len(texts))}
    found = {(i, j): s for i, j, s in near_pairs(texts, 0.7)}
    assert all(brute[pair] == s >= 0.7 for pair, s in found.items())  # verified exactly: no false positives
    sure = {pair for pair, s in brute.items() if s >= 0.8}
    assert len(sure) >= 20 and sure <= set(found)  # LSH misses a pair at 0.8 with probability 0.0002


# Round trip: any valid sample, written in any format, reads back as the same Sample.

_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=30) \
    .filter(lambda t: t.strip())
_SAMPLE = st.tuples(st.one_of(st.none(), _TEXT), _TEXT, _TEXT)  # (system, user, answer)


def _render(fmt: str, system, user, answer, blocks: bool):
    content = [{"type": "text", "text": user}] if blocks else user
    turns = [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]
    if fmt == "openai_chat":
        return {"messages": ([{"role": "system", "content": system}] if system else []) + turns}
    if fmt == "anthropic":
        return {"system": system or "", "messages": turns}
    if fmt == "openai_evals":
        if system is None and not blocks:
            return {"input": user, "ideal": [answer]}
        return {"input": ([{"role": "system", "content": system}] if system else []) + turns[:1], "ideal": answer}
    if fmt == "alpaca":
        return {"instruction": user, "input": "", "output": answer}
    if fmt == "classification":
        return {"text": user, "label": answer}
    return {"prompt_col": user, "answer_col": answer, **({"system_col": system} if system else {})}


_NO_SYSTEM = ("alpaca", "classification")
_MAPPING = {"input": "prompt_col", "output": "answer_col", "system": "system_col"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["openai_chat", "anthropic", "openai_evals", "alpaca", "classification", "columns"]),
       rows=st.lists(_SAMPLE, min_size=1, max_size=5), blocks=st.booleans(), as_csv=st.booleans())
def test_every_format_round_trips_to_the_same_samples(fmt, rows, blocks, as_csv):
    import csv

    if fmt in _NO_SYSTEM:
        rows = [(None, user, answer) for _, user, answer in rows]
    rendered = [_render(fmt, *row, blocks) for row in rows]
    as_csv = as_csv and fmt in ("alpaca", "classification")
    if fmt == "columns" and any(r[0] for r in rows):  # a column mapping needs the column on every row
        rendered = [dict(r, system_col=r.get("system_col", " ")) for r in rendered]
    assume(not any(is_header_row(r) for r in rendered))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("d.csv" if as_csv else "d.jsonl")
        if as_csv:
            with path.open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=list(rendered[0]))
                writer.writeheader()
                writer.writerows(rendered)
        else:
            path.write_text("".join(json.dumps(r) + "\n" for r in rendered), encoding="utf-8")
        mapping = {k: v for k, v in _MAPPING.items() if k != "system" or any(r[0] for r in rows)}
        ds = data.load(path, columns=mapping if fmt == "columns" else None)
    assert not ds.checks, [c.message for c in ds.checks]
    expected = [(((("system", system),) if system else ()) + (("user", user),), answer)
                for system, user, answer in rows]
    assert [(s.messages, s.answer) for s in ds.samples] == expected
    if not as_csv:
        assert [s.line for s in ds.samples] == list(range(1, len(rows) + 1))


def test_one_stray_label_in_a_hundred_keeps_the_task_classification():
    samples = _samples(200) + [data.Sample((("user", "odd one"),), "positive", line=201)]
    assert data.infer_task(samples) == "classification"
    assert data.infer_task(samples + [data.Sample((("user", f"odd {i}"),), f"label {i}") for i in range(3)]) \
        == "generation"


def test_crlf_lines_read_clean(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "a", "label": "0"}\r\n{"text": "b", "label": "1"}\r\n')
    ds = data.load(path)
    assert not ds.checks and [s.answer for s in ds.samples] == ["0", "1"]


def test_a_json_array_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"text": "a", "label": "0"}\n]\n')
    with pytest.raises(DataError, match=r"is one JSON array, not JSON Lines; write one object per line, e\.g\. jq -c"):
        data.load(path)


def test_a_csv_cut_off_mid_row_is_a_truncated_last_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"hello there",1\n"cut off he')
    [check] = data.load(path).checks
    assert (check.name, check.level, check.lines) == ("truncated_last_line", "error", [3])


def test_an_anthropic_file_may_give_a_system_prompt_on_some_rows_only(tmp_path):
    turns = [{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]
    ds = data.load(_write(tmp_path / "d.jsonl", [{"messages": turns}, {"system": "S", "messages": turns}]))
    assert ds.format == "anthropic" and not ds.checks and ds.samples[1].system == "S"
    # a system *message* is OpenAI's way: mixing it with a top-level system is two formats in one file
    openai = {"messages": [{"role": "system", "content": "S"}] + turns}
    ds = data.load(_write(tmp_path / "e.jsonl", [{"messages": turns}, {"system": "S", "messages": turns}, openai]))
    assert [(c.name, c.lines) for c in ds.errors] == [("mixed_formats", [3])]
