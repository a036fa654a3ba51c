"""Each defect in tests/fixtures/data is found by the right check, at the right level, on the right line;
and `harness data check` reports them with its exit status."""
import json
import re
from pathlib import Path

import pytest

from harness import data
from harness.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "data"
DOCS = Path(__file__).parent.parent / "docs" / "data-checks.md"

# fixture, load() keywords, task -> every check above info (except size: every fixture is small), its level and lines
DEFECTS = [
    ("bom.jsonl", {}, "classification", {"bom": ("warning", [1])}),
    ("invalid_utf8.jsonl", {}, "classification", {"invalid_utf8": ("error", [3])}),
    ("invalid_json.jsonl", {}, "classification", {"invalid_json": ("error", [4])}),
    ("nan_infinity.jsonl", {}, "classification", {"nan_infinity": ("error", [2, 5, 7])}),
    ("truncated_last_line.jsonl", {}, "classification", {"truncated_last_line": ("error", [12])}),
    ("long_line.jsonl", {"max_line_bytes": 300}, "classification", {"long_line": ("warning", [6])}),
    ("missing_keys.jsonl", {}, "classification", {"missing_keys": ("error", [3])}),
    ("wrong_type.jsonl", {}, "classification", {"wrong_type": ("error", [2])}),
    ("bad_role.jsonl", {}, "classification", {"bad_role": ("error", [2])}),
    ("last_message.jsonl", {}, "classification", {"last_message": ("error", [3])}),
    ("empty_content.jsonl", {}, "classification", {"empty_content": ("error", [2])}),
    ("mixed_formats.jsonl", {}, "classification", {"mixed_formats": ("error", [4])}),
    ("header_row.jsonl", {}, "classification", {"header_row": ("error", [5])}),
    ("header_row.csv", {}, "classification", {"header_row": ("error", [6])}),
    ("invalid_csv.csv", {}, "classification", {"invalid_csv": ("error", [4])}),
    ("duplicates.jsonl", {}, "classification", {"duplicates": ("warning", [13])}),
    ("near_duplicates.jsonl", {}, "classification", {"near_duplicates": ("warning", [13])}),
    ("label_conflicts.jsonl", {}, "classification", {"near_duplicates": ("warning", [13]),
                                                      "label_conflicts": ("warning", [13])}),
    ("unknown_label.jsonl", {}, "classification", {"unknown_label": ("warning", [13])}),
    ("class_balance.jsonl", {}, "classification", {"class_balance": ("warning", [])}),
    ("short_answers.jsonl", {}, "generation", {"short_answers": ("warning", [3, 5])}),
    ("junk_rows.jsonl", {}, "classification", {"junk_rows": ("warning", [2, 4, 6])}),
    ("pii.jsonl", {}, "classification", {"pii": ("warning", [2, 3, 4, 5, 6])}),
    ("clean.jsonl", {}, "classification", {}),
    ("classification.csv", {}, "classification", {}),
    ("columns.jsonl", {"columns": {"input": "question", "output": "right_answer"}}, "generation", {}),
]


def _findings(fixture: str, task: str, labels=None, **kwargs) -> dict:
    ds = data.load(FIXTURES / fixture, **kwargs)
    checks = ds.checks + data.quality_checks(ds, task, labels=labels)
    return {c.name: c for c in checks}


@pytest.mark.parametrize("fixture, kwargs, task, expected", DEFECTS, ids=[d[0] for d in DEFECTS])
def test_each_defect_is_found_at_its_level_and_line(fixture, kwargs, task, expected):
    found = _findings(fixture, task, **kwargs)
    flagged = {name: (c.level, c.lines) for name, c in found.items() if c.level != "info" and name != "size"}
    assert flagged == expected
    assert set(found) <= set(data.CHECKS)


@pytest.mark.parametrize("fixture, name, message", [
    ("invalid_json.jsonl", "invalid_json",
     "1 row(s) unusable; first at line 4: Expecting ',' delimiter (column 74)"),
    ("invalid_utf8.jsonl", "invalid_utf8", "1 row(s) unusable; first at line 3: invalid UTF-8 byte 0xff at column 57"),
    ("nan_infinity.jsonl", "nan_infinity",
     "3 row(s) unusable; first at line 2: NaN is not valid JSON; write null or a string"),
    ("truncated_last_line.jsonl", "truncated_last_line",
     "1 row(s) unusable; first at line 12: the file ends mid-row (30 bytes, no newline); "
     "copy it again or delete the partial row"),
    ("missing_keys.jsonl", "missing_keys", "1 row(s) unusable; first at line 3: missing key(s) 'label' "
                                           "(the file is classification)"),
    ("bad_role.jsonl", "bad_role", "1 row(s) unusable; first at line 2: messages[1] has role 'bot'; "
                                   "expected one of system, user, assistant"),
    ("mixed_formats.jsonl", "mixed_formats", "rows in several formats {'classification': 11, 'alpaca': 1}; "
                                             "use one format per file (first other at line 4)"),
    ("invalid_csv.csv", "invalid_csv", "1 row(s) unusable; first at line 4: 3 field(s) where the header has 2"),
])
def test_row_errors_say_where_and_what(fixture, name, message):
    assert _findings(fixture, "classification")[name].message == message


def test_repeats_name_their_twin():
    assert _findings("duplicates.jsonl", "classification")["duplicates"].twins == {13: 2}
    near = _findings("near_duplicates.jsonl", "classification")["near_duplicates"]
    assert near.twins == {13: 3} and near.examples == [(13, "~ line 3 (similarity 0.75)")]
    conflict = _findings("label_conflicts.jsonl", "classification")["label_conflicts"]
    assert conflict.twins == {13: 4} and conflict.examples == [(13, "'0' vs '1' at line 4")]


def test_a_given_label_set_makes_stray_labels_errors():
    found = _findings("unknown_label.jsonl", "classification", labels=["0", "1"])
    assert (found["unknown_label"].level, found["unknown_label"].lines) == ("error", [13])
    assert "label outside the label set ['0', '1']: 'positive' x1 (first at line 13)" in found["unknown_label"].message
    assert found["class_balance"].message == ("classes {'0': 6, '1': 6}; largest/smallest = 1.00 "
                                              "(1 row(s) outside the label set not counted)")
    close = _findings("unknown_label.jsonl", "classification", labels=["0", "1", "Positive"])["unknown_label"]
    assert "'positive' (did you mean 'Positive'?)" in close.message


def test_size_follows_the_guide_for_each_task():
    ds = data.load(FIXTURES / "clean.jsonl")
    for task, (minimum, good) in data.SIZE_GUIDE.items():
        [size] = [c for c in data.quality_checks(ds, task) if c.name == "size"]
        assert size.level == "warning"
        assert size.message == \
            f"12 unique rows: below the {minimum:,} recommended as a minimum for {task} ({good:,} is good)"
    assert data.SIZE_GUIDE["code"] == (1_000, 10_000) and data.SIZE_GUIDE["domain"] == (500, 5_000)


def test_pii_finds_each_kind_and_redacts_it(tmp_path):
    pii = _findings("pii.jsonl", "classification")["pii"]
    assert "email 1, phone 1, credit_card 1, national_id 1, ip 1" in pii.message
    assert 7 not in pii.lines  # 4111 1111 1111 1112 fails the Luhn check
    assert data.redact("mail jane.doe@example.com or call (212) 555-0142") == "mail [EMAIL] or call [PHONE]"
    assert data.find_pii("card 4111-1111-1111-1111, not 4111-1111-1111-1112") == \
        [("credit_card", "4111-1111-1111-1111")]
    assert data.find_pii("ssn 123-45-6789, not 000-45-6789; ni AB 12 34 56 C") == [
        ("national_id", "123-45-6789"), ("national_id", "AB 12 34 56 C")]
    assert data.find_pii("in 1844-1846, 3.14159 and version 10.2") == []


def test_leakage_names_the_held_out_row_and_its_train_twin():
    train, test = data.load(FIXTURES / "leakage_train.jsonl"), data.load(FIXTURES / "leakage_test.jsonl")
    checks = {c.name: c for c in data.leakage_checks(data.Splits(train.samples, [], test.samples, ""))}
    assert (checks["leakage"].level, checks["leakage"].lines, checks["leakage"].twins) == ("error", [2], {2: 1})
    assert checks["leakage"].message.startswith("1 val/test row(s) repeat a train row's input (first: test line 2 "
                                                "(leakage_test.jsonl) = train line 1)")
    near = checks["near_leakage"]
    assert (near.level, near.lines, near.twins) == ("warning", [4], {4: 8})


def test_the_harness_split_never_leaks():
    ds = data.load(FIXTURES / "label_conflicts.jsonl")
    for seed in range(10):
        checks = data.leakage_checks(data.split(ds.samples, (0.6, 0.2, 0.2), seed=seed, stratify=True))
        assert checks[0].name == "leakage" and checks[0].level == "info"


def test_every_check_is_documented():
    docs = DOCS.read_text(encoding="utf-8")
    missing = [name for name in data.CHECKS if f"`{name}`" not in docs]
    assert not missing, f"add these checks to docs/data-checks.md: {missing}"


# The CLI


def _run(capsys, *argv):
    code = main(["data", "check", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_passes_a_clean_file(capsys):
    code, out, err = _run(capsys, FIXTURES / "clean.jsonl")
    assert code == 0 and not err
    assert re.search(r"^check\s+level\s+rows\s+seconds\s+finding$", out, re.M)
    assert "task classification (inferred; set it with --task)" in out
    assert out.rstrip().splitlines()[-1].startswith("PASS: no error-level check failed (0 error(s), 1 warning(s))")


def test_cli_fails_on_an_error_and_shows_the_line(capsys):
    code, out, err = _run(capsys, FIXTURES / "header_row.jsonl")
    assert code == 1 and not err
    assert re.search(r"^header_row\s+error\s+1\s+[\d.]+\s+1 header row\(s\) inside the data \(first at line 5",
                     out, re.M)
    assert re.search(r"^\s+5\s+its values repeat the column names\s+\{\"text\": \"text\", \"label\": \"label\"\}$",
                     out, re.M)
    assert out.rstrip().splitlines()[-1].startswith("FAIL: an error-level check failed (1 error(s)")


def test_cli_shows_a_near_duplicate_next_to_its_twin(capsys):
    code, out, _ = _run(capsys, FIXTURES / "near_duplicates.jsonl", "--show", "1")
    assert code == 0
    assert re.search(r"^\s+13\s+~ line 3 \(similarity 0\.75\)\s+scientists discover frozen water ice on distant moon$"
                     r"\n^\s+3\s+\(its twin\)\s+scientists discover water ice on distant moon$", out, re.M)


def test_cli_reads_columns_and_checks_split_files(capsys):
    code, out, _ = _run(capsys, FIXTURES / "columns.jsonl", "--columns", "input=question,output=right_answer",
                        "--task", "extraction")
    assert code == 0 and "columns, 6 samples, task extraction," in out
    code, out, _ = _run(capsys, FIXTURES / "leakage_train.jsonl", "--test", FIXTURES / "leakage_test.jsonl")
    assert code == 1
    assert "leakage: train = FILE, test = " in out
    assert re.search(r"^\s+2\s+test, = train line 1\s+LOCAL COUNCIL approves new bike lanes downtown$", out, re.M)


def test_cli_shows_errors_of_a_split_file_from_that_file(capsys, tmp_path):
    test = tmp_path / "test.jsonl"
    test.write_text('{"text": "county fair returns", "label": "0"}\n{"text": "broken\n')
    code, out, _ = _run(capsys, FIXTURES / "leakage_train.jsonl", "--test", test)
    assert code == 1
    assert f"invalid_json (error): 1 row(s) in {test}, 1 shown" in out
    assert re.search(r'^\s+2\s+Unterminated string starting at \(column 10\)\s+\{"text": "broken$', out, re.M)


def test_cli_labels_option_makes_stray_labels_errors(capsys):
    assert _run(capsys, FIXTURES / "unknown_label.jsonl")[0] == 0
    code, out, _ = _run(capsys, FIXTURES / "unknown_label.jsonl", "--labels", "0,1")
    assert code == 1 and re.search(r"^unknown_label\s+error\s+1 ", out, re.M)


def test_cli_redacts_a_copy(capsys, tmp_path):
    out_file = tmp_path / "redacted.jsonl"
    code, out, _ = _run(capsys, FIXTURES / "pii.jsonl", "--redact", out_file)
    assert code == 0 and f"wrote {out_file}: 5 value(s) redacted" in out
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert rows[1]["text"] == "area man emails complaint to [EMAIL]"
    assert rows[6]["text"] == "library card 4111 1111 1111 1112 fails the check"
    code, out, _ = _run(capsys, out_file)
    assert re.search(r"^pii\s+info\s+-", out, re.M)


@pytest.mark.parametrize("argv, message", [
    (["data", "check", "nope.jsonl"], "harness: data file nope.jsonl not found; check the path in the spec "
                                      "(relative to the project root)"),
    (["data", "check", str(FIXTURES / "columns.jsonl")],
     f"harness: data file {FIXTURES / 'columns.jsonl'}: no row is in a known format (keys seen: question, "
     f"right_answer, topic); map the columns, e.g. --columns input=question,output=answer (CLI) "
     f"or load(path, columns={{...}})"),
    (["data", "check", str(FIXTURES / "clean.jsonl"), "--task", "poetry"],
     "harness: harness data check: argument --task: invalid choice: 'poetry' (choose from "),
    (["data", "check", str(FIXTURES / "clean.jsonl"), "--columns", "question"],
     "harness: column mapping 'question' needs role=column, e.g. input=question,output=right_answer"),
    (["data", "check", str(FIXTURES / "clean.jsonl"), "--val", "v.jsonl"],
     "harness: --val needs --test too: FILE is train, --val and --test are the held-out files"),
    (["data"], "harness: harness data: the following arguments are required: check; see `harness data --help`"),
    (["data", "check", str(FIXTURES / "clean.jsonl"), "--near-threshold", "1.5"],
     "harness: --near-threshold must be in (0, 1] (got 1.5); 0.7 is the default"),
    (["runs", "--store", "missing.duckdb"], "harness: store missing.duckdb does not exist; run `pytest experiments/` "
                                            "first or pass --store PATH"),
])
def test_cli_mistakes_are_one_line_without_a_traceback(capsys, argv, message):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith(message) and err.count("\n") == 1 and not out


def test_redaction_leaves_other_lines_byte_for_byte(tmp_path):
    source = tmp_path / "d.jsonl"
    source.write_text('{"text":"caf\\u00e9 owner","label":"0"}\n{"text": "mail bob@example.org", "label": "1"}\n')
    assert data.redact_file(source, tmp_path / "out.jsonl") == 1
    assert (tmp_path / "out.jsonl").read_text() == \
        '{"text":"caf\\u00e9 owner","label":"0"}\n{"text": "mail [EMAIL]", "label": "1"}\n'
