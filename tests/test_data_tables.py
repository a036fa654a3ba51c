"""The Hugging Face side of the data: trl's prompt/completion rows, ShareGPT, Parquet files,
`save_to_disk` folders and `datasets` objects, and the Hub's split names. Each reads into the
same samples as JSONL and gets the same checks, numbered by row."""
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness import Experiment, baselines, data
from harness.cli import main
from harness.errors import DataError, SpecError

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("row, fmt, messages, answer", [
    ({"prompt": "U", "completion": "A"}, "prompt_completion", (("user", "U"),), "A"),
    ({"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
      "completion": [{"role": "assistant", "content": "A"}]}, "prompt_completion", (("system", "S"), ("user", "U")),
     "A"),
    ({"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "U"},
                        {"from": "gpt", "value": "A"}]}, "sharegpt", (("system", "S"), ("user", "U")), "A"),
    ({"system": "S", "conversations": [{"from": "human", "value": "U1"}, {"from": "gpt", "value": "A1"},
                                       {"from": "user", "value": "U2"}, {"from": "assistant", "value": "A2"}]},
     "sharegpt", (("system", "S"), ("user", "U1"), ("assistant", "A1"), ("user", "U2")), "A2"),
])
def test_trl_and_sharegpt_rows_read_as_one_sample(tmp_path, row, fmt, messages, answer):
    ds = data.load(_jsonl(tmp_path / "d.jsonl", [row]))
    assert ds.format == fmt and not ds.checks
    assert (ds.samples[0].messages, ds.samples[0].answer, ds.samples[0].line) == (messages, answer, 1)


@pytest.mark.parametrize("row, check, note", [
    ({"conversations": [{"from": "human", "value": "U"}, {"from": "function_call", "value": "{}"}]}, "bad_role",
     "conversations[1] is from 'function_call'"),
    ({"conversations": [{"from": "gpt", "value": "A"}, {"from": "human", "value": "U"}]}, "last_message",
     "the last turn must be from gpt"),
    ({"conversations": [{"from": "human"}, {"from": "gpt", "value": "A"}]}, "missing_keys",
     "conversations[0] needs 'from' and 'value'"),
    ({"prompt": "U", "completion": [{"role": "assistant", "content": "A"}]}, "wrong_type",
     "must both be strings or both be lists of messages (got str and list)"),
    ({"prompt": [{"role": "user", "content": "U"}], "completion": [{"role": "assistant", "content": "A"},
                                                                  {"role": "user", "content": "more"}]},
     "last_message", "'completion' must be one assistant message (got assistant, user)"),
    ({"prompt": "", "completion": "A"}, "empty_content", "a message has empty content"),
])
def test_a_bad_trl_or_sharegpt_row_is_an_error_on_its_line(tmp_path, row, check, note):
    good = {"prompt": "fine", "completion": "yes"} if "prompt" in row else \
        {"conversations": [{"from": "human", "value": "fine"}, {"from": "gpt", "value": "yes"}]}
    ds = data.load(_jsonl(tmp_path / "d.jsonl", [good, row, good]))
    [found] = ds.errors
    assert (found.name, found.lines) == (check, [2]) and note in found.message


# Every fixture of tests/test_data_check.py whose rows JSON can parse (NaN included) and Arrow can
# hold (one type per column): as Parquet, as a save_to_disk folder and as a Dataset, each must
# get the checks the JSONL file gets, on the same rows, with the same messages.
TABLE_FIXTURES = [
    ("nan_infinity.jsonl", {}), ("missing_keys.jsonl", {}), ("bad_role.jsonl", {}), ("last_message.jsonl", {}),
    ("empty_content.jsonl", {}), ("mixed_formats.jsonl", {}), ("header_row.jsonl", {}), ("duplicates.jsonl", {}),
    ("near_duplicates.jsonl", {}), ("label_conflicts.jsonl", {}), ("unknown_label.jsonl", {}),
    ("class_balance.jsonl", {}), ("short_answers.jsonl", {}), ("junk_rows.jsonl", {}), ("pii.jsonl", {}),
    ("clean.jsonl", {}), ("columns.jsonl", {"columns": {"input": "question", "output": "right_answer"}}),
]


def _rows(fixture: str) -> list[dict]:
    lines = (FIXTURES / fixture).read_text(encoding="utf-8").splitlines()
    assert all(line.strip() for line in lines), "row n is line n only without blank lines"
    return [json.loads(line) for line in lines]


def _as(kind: str, rows: list[dict], tmp_path: Path):
    import datasets

    keys = list(dict.fromkeys(k for row in rows for k in row))  # every column, as pandas would write them
    table = pa.Table.from_pydict({k: [row.get(k) for row in rows] for k in keys})
    if kind == "parquet":
        pq.write_table(table, tmp_path / "d.parquet")
        return tmp_path / "d.parquet"
    dataset = datasets.Dataset(table)
    if kind == "object":
        return dataset
    dataset.save_to_disk(str(tmp_path / "saved"))
    return tmp_path / "saved"


def _checks(ds, task: str) -> dict:
    checks = ds.checks + data.quality_checks(ds, task)
    return {c.name: (c.level, c.lines, c.message) for c in checks if c.name != "size"}


@pytest.mark.parametrize("kind", ["parquet", "folder", "object"])
@pytest.mark.parametrize("fixture, kwargs", TABLE_FIXTURES, ids=[f for f, _ in TABLE_FIXTURES])
def test_a_table_gets_the_checks_a_jsonl_file_gets_on_the_same_rows(tmp_path, kind, fixture, kwargs):
    from_file = data.load(FIXTURES / fixture, **kwargs)
    task = "generation" if fixture in ("short_answers.jsonl", "columns.jsonl") else "classification"
    from_table = data.load(_as(kind, _rows(fixture), tmp_path), **kwargs)
    assert from_table.unit == "row" and from_table.format == from_file.format
    assert [(s.messages, s.answer, s.line) for s in from_table.samples] == \
        [(s.messages, s.answer, s.line) for s in from_file.samples]
    expected = {name: (level, lines, re.sub(r"\bline\b", "row", message))
                for name, (level, lines, message) in _checks(from_file, task).items()}
    if fixture == "nan_infinity.jsonl":  # the note names the value as Python reads it back from Arrow
        expected["nan_infinity"] = expected["nan_infinity"][:2]
        got = _checks(from_table, task)
        assert got.pop("nan_infinity")[:2] == expected.pop("nan_infinity")
        assert "score is nan; JSON has no NaN" in from_table.checks[0].message
        assert got == expected
    else:
        assert _checks(from_table, task) == expected


def test_a_table_row_too_long_is_the_same_warning(tmp_path):
    rows = [{"text": f"headline {i}", "label": str(i % 2)} for i in range(8)]
    rows[5]["text"] = "word " * 200
    ds = data.load(_as("parquet", rows, tmp_path), max_line_bytes=300)
    [check] = ds.checks
    assert (check.name, check.level, check.lines) == ("long_line", "warning", [6])
    assert re.match(r"1 row\(s\) longer than 300 bytes \(longest at row 6, 1,0\d\d characters\)", check.message)


def test_a_damaged_parquet_file_is_one_line_naming_it(tmp_path):
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all\n" * 10)
    with pytest.raises(DataError, match=r"data file .*junk\.parquet is not a readable Parquet file \("):
        data.load(tmp_path / "junk.parquet")
    good = _as("parquet", [{"text": f"row {i} " * 50, "label": str(i % 2)} for i in range(2000)], tmp_path)
    raw = good.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(raw[: len(raw) // 2])  # the footer, which says where the rows are, is gone
    with pytest.raises(DataError, match=r"cut\.parquet is not a readable Parquet file"):
        data.load(cut)
    with pytest.raises(DataError, match=r"is not a file; point to a \.jsonl, \.csv, \.tsv or \.parquet file, or a "
                                        r"folder written by Dataset\.save_to_disk"):
        data.load(tmp_path)


def _split_rows(n: int, offset: int = 0) -> list[dict]:
    return [{"prompt": f"is headline {i} sarcastic?", "completion": str(i % 2)} for i in range(offset, offset + n)]


def _dataset_dict(val_name: str = "validation"):
    import datasets

    return datasets.DatasetDict({"train": datasets.Dataset.from_list(_split_rows(40)),
                                 val_name: datasets.Dataset.from_list(_split_rows(10, 40)),
                                 "test": datasets.Dataset.from_list(_split_rows(10, 50))})


def test_a_datasetdict_object_or_folder_gives_its_splits_with_the_hubs_names(tmp_path):
    splits = _dataset_dict()
    splits.save_to_disk(str(tmp_path / "hub"))
    from_object = data.prepare(splits, split=(0.8, 0.1, 0.1), seed=0, name="hub")
    from_folder = data.prepare("hub", root=tmp_path, split=(0.8, 0.1, 0.1), seed=0, name="hub")
    for stage in (from_object, from_folder):
        assert stage.splits.sizes() == {"train": 40, "val": 10, "test": 10}
        assert set(stage.datasets) == {"train", "val", "test"} and stage.task == "classification"
        assert stage.splits.test[0].messages == (("user", "is headline 50 sarcastic?"),)
    assert from_object.sha256 == from_folder.sha256  # the same rows, however they were handed over
    assert from_object.path.startswith("{'train': 'datasets.Dataset(40 rows, fingerprint ")
    bad = _dataset_dict("holdout")
    with pytest.raises(DataError, match=r"split 'holdout' is not train, val \(validation, valid, dev\) or test"):
        data.prepare(bad, split=(0.8, 0.1, 0.1), seed=0, name="hub")


def test_a_spec_takes_the_hubs_split_names_and_datasets_objects(tmp_path):
    import datasets

    zero = [baselines.zero_shot("s.md")]
    spec = Experiment(name="e", data={"train": "a.jsonl", "validation": "b.jsonl", "test": "c.jsonl"}, baselines=zero)
    assert spec.data == {"train": "a.jsonl", "val": "b.jsonl", "test": "c.jsonl"}
    assert Experiment(name="e", data={"Train": "a", "dev": "b", "TEST": "c"}, baselines=zero).data["val"] == "b"
    with pytest.raises(SpecError, match=r"one validation split \('val', 'validation', 'valid' or 'dev'\), got "
                                        r"\['test', 'train', 'val', 'validation'\]"):
        Experiment(name="e", data={"train": "a", "val": "b", "validation": "b", "test": "c"}, baselines=zero)
    whole = datasets.Dataset.from_list(_split_rows(60))
    config = Experiment(name="e", data=whole, baselines=zero).config()
    assert json.loads(json.dumps(config))["data"] == f"datasets.Dataset(60 rows, fingerprint {whole._fingerprint})"
    assert Experiment(name="e", data=_dataset_dict(), baselines=zero).config()["data"].startswith("datasets.DatasetDict(")
    with pytest.raises(SpecError, match="fresh_test draws the test split from one data file"):
        Experiment(name="e", data=_dataset_dict(), baselines=zero, fresh_test=True)
    streaming = whole.to_iterable_dataset()
    with pytest.raises(DataError, match=r"streaming IterableDataset.*materialise it first"):
        data.prepare(streaming, split=(0.8, 0.1, 0.1), seed=0, name="e")
    with pytest.raises(SpecError, match="data must be a path"):
        Experiment(name="e", data=[{"prompt": "a", "completion": "b"}], baselines=zero)


def _check(capsys, *argv):
    code = main(["data", "check", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_data_check_reads_parquet_and_numbers_its_rows(capsys, tmp_path):
    rows = _split_rows(30)
    rows[6] = {"prompt": "is headline 6 sarcastic?", "completion": ""}
    path = _as("parquet", rows, tmp_path)
    code, out, err = _check(capsys, path)
    assert code == 1 and not err
    assert f"{path}: prompt_completion, 29 samples" in out
    assert "empty_content (error): 1 row(s), 1 shown" in out
    assert re.search(r"^\s+row\s+what\s+text$", out, re.M)
    assert re.search(r"^\s+7\s+the answer is empty\s*$", out, re.M)
    code, out, err = _check(capsys, path, "--redact", tmp_path / "out.jsonl")
    assert code == 2 and "--redact writes a redacted copy of a JSONL, CSV or TSV file" in err
    assert len(err.strip().splitlines()) == 1


def test_data_check_checks_a_datasetdict_folder_as_splits(capsys, tmp_path):
    import datasets

    leaked = _split_rows(40) + _split_rows(1, 55)
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list(leaked),
                                   "test": datasets.Dataset.from_list(_split_rows(10, 50))})
    splits.save_to_disk(str(tmp_path / "hub"))
    code, out, _ = _check(capsys, tmp_path / "hub", "--json")
    report = json.loads(out)
    assert code == 1 and report["samples"] == 41 and report["leakage"].startswith("train = FILE, test = ")
    [leak] = [c for c in report["checks"] if c["name"] == "leakage"]
    assert leak["level"] == "error" and leak["lines"] == [6]  # test row 6 is train row 41
    code, _, err = _check(capsys, tmp_path / "hub", "--test", tmp_path / "hub" / "test")
    assert code == 2 and "holds its own splits; drop --val and --test" in err


def test_a_run_on_a_datasetdict_and_on_the_same_rows_saved_scores_once(tmp_path, tiny_model_dir):
    """A spec may hand over a DatasetDict; the same rows saved to disk are the same data (same
    SHA-256), so a second run scores nothing again."""
    from harness._engine import run_experiment
    from harness._engine.events import of
    from harness.store import Store

    splits = _dataset_dict("dev")
    splits.save_to_disk(str(tmp_path / "hub"))
    (tmp_path / "s.md").write_text("answer 1 or 0")
    store = Store(tmp_path / "h.duckdb")
    first = run_experiment(Experiment(name="hub", data=splits, model=str(tiny_model_dir), regression=None,
                                      forgetting=None, baselines=[baselines.zero_shot("s.md")]),
                           store, root=tmp_path, log=lambda _: None)
    assert first.task == "classification" and first.baselines["zero_shot"].metrics["test"]["accuracy"] >= 0
    again = run_experiment(Experiment(name="hub", data="hub", model=str(tiny_model_dir), regression=None,
                                      forgetting=None, baselines=[baselines.zero_shot("s.md")]),
                           store, root=tmp_path, log=lambda _: None)
    runs = store.runs("hub")
    assert len(runs) == 2 and runs[0].data_sha256 == runs[1].data_sha256
    cached = [(e.fields["cached"], e.fields["total"]) for e in of(again.events, "scoring.cached")]
    assert cached and all(done == total for done, total in cached), cached
    assert again.baselines["zero_shot"].metrics == first.baselines["zero_shot"].metrics
