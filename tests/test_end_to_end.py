"""End to end on the embedded SmolLM2-135M-Instruct: conversion, QLoRA, gates, store, report.

The slowest tests in the suite (about two minutes together on 2 CPU cores); everything
else runs on the tiny model.
"""
import json
import os
import shutil
from pathlib import Path

import pytest

from harness import models
from harness.store import Store

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_embedded_model_converts_once_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    # A conversion killed half-way leaves only a temporary folder: never mistaken for a checkpoint.
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "smollm2-135m-instruct-deadbeef.tmp-x").mkdir()
    first = models.resolve("smollm2-135m-instruct")
    target = Path(first.path)
    assert (target / "model.safetensors").is_file() and (target / "config.json").is_file()
    assert not list(target.parent.glob(target.name + ".tmp-*"))
    stamp = (target / "model.safetensors").stat().st_mtime_ns
    again = models.resolve("smollm2-135m-instruct")
    assert again == first and (target / "model.safetensors").stat().st_mtime_ns == stamp  # reused
    config = json.loads((target / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config


def test_sarcasm_slice_end_to_end(heavy_modules, pytester):
    """A small slice of the shipped example through the real pytest plugin."""
    pytester.makeconftest('pytest_plugins = ["harness.plugin"]')
    rows = (ROOT / "experiments" / "data" / "sarcasm.jsonl").read_text().splitlines()[:160]
    (pytester.path / "sarcasm.jsonl").write_text("\n".join(rows) + "\n")
    shutil.copy(ROOT / "baselines" / "sarcasm" / "system.md", pytester.path / "system.md")
    pytester.makepyfile(test_small="""
from harness import Experiment, QLoRA, baselines

experiment = Experiment(
    name="sarcasm_small",
    data="sarcasm.jsonl",
    metric="accuracy",
    split=(64, 32, 64),
    baselines=[baselines.zero_shot("system.md"), baselines.few_shot("system.md", k=4)],
    underpowered="warn", candidate=QLoRA(r=8, alpha=16, learning_rate=2e-4, epochs=1),
    regression=None, forgetting=None,  # the MMLU suite on SmolLM2 is covered by `pytest experiments/`; minutes here
)
""")
    result = pytester.runpytest("-v", "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert "test_small.py::sarcasm_small::data_quality PASSED" in out
    assert "test_small.py::sarcasm_small::overfit" in out
    assert "harness verdicts" in out
    store = Store(pytester.path / ".harness" / "harness.duckdb")
    [run] = store.runs("sarcasm_small")
    assert run.status == "complete", run.error
    assert run.model_sha256 and len(run.test_sha256) == 64
    approaches = {a.name: a for a in store.approaches(run.run_id)}
    assert set(approaches) == {"zero_shot", "few_shot_k4", "candidate"}
    # few-shot prompts are longer than zero-shot ones; the candidate's is shortest of all
    assert approaches["few_shot_k4"].prompt_tokens > approaches["zero_shot"].prompt_tokens
    curves = store.curves(run.run_id)
    assert [c.step for c in curves if c.split == "val"][0] == 0
    assert {c.split for c in curves} == {"train", "val"}
    preds = store.rows("predictions", run.run_id, split="test")
    assert len(preds) == 3 * 64 and all(p["prediction"] in ("0", "1") for p in preds)
    assert os.path.isfile(approaches["candidate"].adapter_path + "/adapter_model.safetensors")
    assert (pytester.path / "reports" / "sarcasm_small.html").is_file()
