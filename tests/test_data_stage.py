"""`prepare` is the data stage an experiment runs, step for step; `harness data check` runs it with the
spec's default split."""
import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import data
from harness.cli import main
from harness.errors import DataError
from harness.spec.experiment import Experiment

FIXTURES = Path(__file__).parent / "fixtures" / "data"
SPLIT = (0.8, 0.1, 0.1)


def _by_hand(source, root: Path, split: tuple, seed: int, task=None, columns=None):
    """The steps as harness/_engine/prepare.py chains them today (`_load_data`, then `prepare`)."""
    if isinstance(source, dict):
        loaded = {k: data.load(root / v, columns=columns) for k, v in source.items()}
        checks = [c for d in loaded.values() for c in d.checks]
        samples = [s for d in loaded.values() for s in d.samples]
        splits = data.Splits(loaded["train"].samples, loaded["val"].samples if "val" in loaded else [],
                             loaded["test"].samples, data.content_hash(loaded["test"].samples))
        sha = hashlib.sha256("".join(d.sha256 for d in loaded.values()).encode()).hexdigest()
    else:
        dataset = data.load(root / source, columns=columns)
        samples, splits, checks, sha = dataset.samples, None, dataset.checks, dataset.sha256
    task = task or data.infer_task(samples)
    if not isinstance(source, dict):
        checks = checks + data.quality_checks(data.Dataset(str(source), "", samples, sha), task)
    if splits is None and not any(c.level == "error" for c in checks):
        splits = data.split(samples, split, seed=seed, stratify=task == "classification")
    if splits is not None:
        checks = checks + data.leakage_checks(splits)
    labels = data.labels(splits.train) if task == "classification" and splits is not None else []
    return task, checks, splits, sha, labels


def _plain(checks):
    return [dataclasses.replace(c, seconds=0.0) for c in checks]


def _parts(splits):
    return None if splits is None else ([s.line for s in splits.train], [s.line for s in splits.val],
                                        [s.line for s in splits.test], splits.test_sha256)


READABLE = sorted(p.name for p in FIXTURES.iterdir() if p.name != "columns.jsonl")


@pytest.mark.parametrize("fixture", READABLE)
@pytest.mark.parametrize("seed", [0, 7])
def test_prepare_gives_the_checks_and_splits_of_the_steps_by_hand(fixture, seed):
    task, checks, splits, sha, labels = _by_hand(fixture, FIXTURES, SPLIT, seed)
    stage = data.prepare(fixture, root=FIXTURES, split=SPLIT, seed=seed, name="e")
    assert (stage.task, stage.kind, stage.sha256, stage.path, stage.labels) == (task, task, sha, fixture, labels)
    assert _plain(stage.checks) == _plain(checks)
    assert _parts(stage.splits) == _parts(splits)
    assert stage.split_error is None and stage.unseen_labels == []


def test_prepare_reads_split_files_as_the_splits():
    source = {"train": "leakage_train.jsonl", "val": "clean.jsonl", "test": "leakage_test.jsonl"}
    task, checks, splits, sha, labels = _by_hand(source, FIXTURES, SPLIT, 0)
    stage = data.prepare(source, root=FIXTURES, split=SPLIT, seed=0, name="e")
    assert (stage.task, stage.sha256, stage.path, stage.labels) == (task, sha, str(source), labels)
    assert _plain(stage.checks) == _plain(checks) and stage.quality == []
    assert [c.name for c in stage.leakage] == ["leakage", "near_leakage"] and stage.leakage[0].level == "error"
    assert _parts(stage.splits) == _parts(splits)
    assert list(stage.datasets) == ["train", "val", "test"]


def test_prepare_takes_the_task_a_column_mapping_and_counts_as_a_spec_does():
    columns = {"input": "question", "output": "right_answer"}
    task, checks, splits, _, _ = _by_hand("columns.jsonl", FIXTURES, (3, 1, 2), 0, task="generation", columns=columns)
    stage = data.prepare("columns.jsonl", root=FIXTURES, split=(3, 1, 2), seed=0, task="generation", columns=columns)
    assert stage.task == task == "generation" and _plain(stage.checks) == _plain(checks)
    assert _parts(stage.splits) == _parts(splits) and stage.splits.sizes() == {"train": 3, "val": 1, "test": 2}


def test_a_kind_sets_the_size_guide_and_the_task():
    stage = data.prepare(FIXTURES / "clean.jsonl", split=SPLIT, seed=0, kind="extraction")
    assert (stage.task, stage.kind) == ("generation", "extraction")
    [size] = [c for c in stage.quality if c.name == "size"]
    assert "recommended as a minimum for extraction" in size.message
    assert data.prepare(FIXTURES / "clean.jsonl", split=SPLIT, seed=0, allowed_labels=["0", "1"]).task \
        == "classification"


def test_a_missing_file_of_a_spec_is_reported_before_any_file_is_read(tmp_path):
    source = {"train": "clean.jsonl", "test": "gone.jsonl"}
    with pytest.raises(DataError) as e:
        data.prepare(source, root=FIXTURES, split=SPLIT, seed=0, name="sarcasm")
    assert str(e.value) == (f"sarcasm: data file gone.jsonl not found; check the path in the spec "
                            f"(paths are relative to the project root, {FIXTURES})")
    with pytest.raises(DataError, match=r"^data file gone\.jsonl not found; check the path in the spec "
                                        r"\(relative to the project root\)$"):
        data.prepare("gone.jsonl", split=SPLIT, seed=0)


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows))
    return path


def test_labels_seen_only_in_val_or_test_are_the_refusal(tmp_path):
    _write(tmp_path / "train.jsonl", [(f"train headline {i}", "01"[i % 2]) for i in range(120)])
    _write(tmp_path / "test.jsonl", [("test headline a", "0"), ("test headline b", "2")])
    stage = data.prepare({"train": "train.jsonl", "test": "test.jsonl"}, root=tmp_path, split=SPLIT, seed=0,
                         name="e")
    assert (stage.labels, stage.unseen_labels) == (["0", "1"], ["2"])
    assert stage.refusal == "e: labels ['2'] appear in val/test but never in train; add train rows for them"


def test_a_split_that_fails_is_the_refusal_with_the_splits_own_error(tmp_path):
    _write(tmp_path / "one.jsonl", [("the only headline", "0")])
    with pytest.raises(DataError) as e:
        data.split(data.load(tmp_path / "one.jsonl").samples, SPLIT, seed=0, stratify=False)
    stage = data.prepare("one.jsonl", root=tmp_path, split=SPLIT, seed=0, name="e")
    assert stage.splits is None and stage.leakage == []
    assert stage.split_error == stage.refusal == str(e.value)


def test_an_error_level_check_stops_before_the_split():
    stage = data.prepare("header_row.jsonl", root=FIXTURES, split=SPLIT, seed=0)
    assert [c.name for c in stage.checks if c.level == "error"] == ["header_row"]
    assert stage.splits is None and stage.split_error is None and stage.refusal is None


# `harness data check`


def _leakage_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("leakage:"))


def test_data_check_splits_as_a_spec_that_gives_no_split(capsys, monkeypatch):
    [split_field] = [f for f in dataclasses.fields(Experiment) if f.name == "split"]
    assert main(["data", "check", str(FIXTURES / "clean.jsonl")]) == 0
    out = capsys.readouterr().out
    assert split_field.default == SPLIT and "own split of FILE (80/10/10, seed 0)" in _leakage_line(out)
    checked = data.prepare(FIXTURES / "clean.jsonl", split=SPLIT, seed=0).leakage[0].message
    assert re.search(rf"^leakage\s+info\s+-\s+[\d.]+\s+{re.escape(checked)}$", out, re.M)

    monkeypatch.setattr(split_field, "default", (0.5, 0.25, 0.25))  # the spec's default is the one read
    assert main(["data", "check", str(FIXTURES / "clean.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "own split of FILE (50/25/25, seed 0)" in _leakage_line(out)
    checked = data.prepare(FIXTURES / "clean.jsonl", split=(0.5, 0.25, 0.25), seed=0).leakage[0].message
    assert checked != data.prepare(FIXTURES / "clean.jsonl", split=SPLIT, seed=0).leakage[0].message
    assert re.search(rf"^leakage\s+info\s+-\s+[\d.]+\s+{re.escape(checked)}$", out, re.M)


def test_data_check_says_why_it_did_not_split(capsys, tmp_path):
    assert main(["data", "check", str(FIXTURES / "header_row.jsonl")]) == 1
    assert _leakage_line(capsys.readouterr().out) == \
        "leakage: skipped: an error-level check failed, and an experiment stops before splitting"


def test_data_check_fails_on_labels_an_experiment_would_stop_on(capsys, tmp_path):
    train = _write(tmp_path / "train.jsonl", [(f"train headline {i}", "01"[i % 2]) for i in range(120)])
    test = _write(tmp_path / "test.jsonl", [("test headline a", "0"), ("test headline b", "2")])
    assert main(["data", "check", str(train), "--test", str(test)]) == 1
    out = capsys.readouterr().out
    assert "\nlabels ['2'] appear in val/test but never in train; add train rows for them\n" in out
    assert out.rstrip().splitlines()[-1].startswith("FAIL: an experiment would stop on its labels (0 error(s)")


def test_importing_sample_leaves_numpy_unloaded():
    code = "import sys; from harness.data import Sample; print('numpy' in sys.modules, 'torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout \
        == "False False\n"
