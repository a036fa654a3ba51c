"""bench/stages.py: a --harness-events log summed into stages, on a written log and on a real run's."""
import importlib.util
import json
from pathlib import Path

import pytest
from tiny import write_classification_jsonl

# the tiny experiment of tests/test_plugin.py, without its user test or the MMLU suite (to stay fast)
SPEC = """
from harness import Experiment, QLoRA, baselines

experiment = Experiment(
    name="toy",
    data="data.jsonl",
    model={model!r},
    metric="accuracy",
    split=(48, 16, 16),
    baselines=[baselines.zero_shot("system.md"), baselines.few_shot("system.md", k=2)],
    underpowered="warn", candidate=QLoRA(r=8, alpha=16, learning_rate=3e-2, epochs=4, batch_size=8, warmup_ratio=0.0),
    regression=None, forgetting=None,
)
"""

_spec = importlib.util.spec_from_file_location("stages", Path(__file__).parent.parent / "bench" / "stages.py")
stages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stages)


def _line(t, kind, experiment=None, **fields):
    return {"t": t, "experiment": experiment, "kind": kind, "text": "", "fields": fields}


def _scoring(t, what, experiment="toy"):
    return _line(t, "scoring.progress", experiment, what=f"{experiment}: {what}", done=1, total=1)


LOG = [
    _line(0.0, "plugin.session_started"),
    _line(2.0, "plugin.run_started", "toy"),                    # 2 s collecting: outside runs
    _line(5.0, "data.prepared", "toy"),                         # 3 s data and checks
    _scoring(9.0, "zero_shot val"),                             # 4 s zero_shot (its model load)
    _scoring(10.0, "few_shot_k2+batch_calibrated content-free inputs (val)"),
    _scoring(16.0, "few_shot_k2 val"),
    _line(16.5, "baseline.picked", "toy", name="few_shot_k2"),  # pick and power plan
    _line(17.0, "power.planned", "toy"),
    _scoring(22.0, "forgetting probe, base"),                   # 10 s regression gate
    _scoring(27.0, "capability suite screen, base"),
    _line(28.0, "memory.checked", "toy", who="toy: candidate"),
    _line(68.0, "training.progress", "toy", who="toy: candidate"),
    _line(69.0, "candidate.trained", "toy", who="toy: candidate"),  # 41 s training
    _scoring(71.0, "candidate val"),
    _scoring(72.0, "candidate train (overfit check)"),
    _scoring(80.0, "regression suite, candidate"),
    _scoring(81.0, "zero_shot test"),
    _scoring(83.0, "candidate test"),
    _line(83.5, "approach.scored", "toy", approach="candidate"),
    _scoring(86.0, "zero_shot greedy generation (agreement check)"),
    _line(86.5, "agreement.checked", "toy", approach="zero_shot"),
    _line(87.0, "mystery.kind", "toy"),                         # no rule: other
    _line(90.0, "plugin.run_finished", "toy", outcome="complete"),
    _line(91.0, "plugin.report_started"),
    _line(95.0, "plugin.report_finished"),
    _line(96.0, "plugin.session_finished"),
]


def test_each_gap_goes_to_the_stage_of_the_line_that_ends_it():
    found = stages.summarise(LOG)
    toy = found["experiments"]["toy"]
    assert toy == pytest.approx({
        "data and checks": 3.0, "baseline zero_shot": 4.0 + 1.0, "baseline few_shot_k2+batch_calibrated": 1.0,
        "baseline few_shot_k2": 6.0, "pick and power plan": 1.0, "regression gate": 10.0 + 8.0,
        "training": 42.0, "candidate scoring": 2.0 + 2.0 + 0.5, "overfit check": 1.0, "generation checks": 3.0,
        "other": 0.5, "gates and record": 3.0})
    assert sum(toy.values()) == pytest.approx(90.0 - 2.0)  # the run, start line to finish line
    assert found["total"] == pytest.approx({**toy, "pytest outside runs": 2.0 + 1.0 + 1.0, "report": 4.0})
    assert found["wall"] == 96.0 and sum(found["total"].values()) == pytest.approx(96.0)
    assert [line["kind"] for line in found["other"]] == ["mystery.kind"]


def test_the_printed_table_names_each_stage_its_share_and_what_no_rule_knows():
    text = stages.report(LOG, "log.jsonl")
    assert "toy: run 88.0 s" in text and "total: wall 96.0 s" in text
    assert "training" in text and " 42.0 " in text and "47.7%" in text  # 42 of the run's 88 s
    assert "other: 1 line no rule knows:" in text and "'mystery.kind' (toy)" in text
    assert 'lscpu "Model name: ' in text and "avx2 " in text and "avx512_bf16 " in text
    # stages in pipeline order, baselines where they run
    rows = text.split("total: wall")[1].split("\n\n")[0].splitlines()[2:]
    order = [row.split("  ")[1] for row in rows]
    assert order[:2] == ["data and checks", "baseline zero_shot"] and order[-2:] == ["pytest outside runs", "other"]


def test_a_sweep_trial_trains_in_the_sweep_and_a_failed_run_is_named():
    log = [_line(0.0, "plugin.run_started", "toy"),
           _line(1.0, "sweep.study", "toy", study="s"),
           _line(5.0, "training.progress", "toy", who="toy: trial #0"),
           _scoring(6.0, "trial #0 val"),
           _line(7.0, "candidate.chosen", "toy"),
           _line(9.0, "candidate.cached", "toy", who="toy: candidate"),
           _scoring(12.0, "forgetting probe, candidate"),
           _line(12.5, "regression.planned", "toy"),
           _line(13.0, "plugin.run_finished", "toy", outcome="ModelError")]
    assert stages.summarise(log)["experiments"]["toy"] == pytest.approx(
        {"sweep": 7.0, "training": 2.0, "regression gate": 3.5, "failed run's last stage": 0.5})


def test_workers_and_appended_sessions_are_separate_timelines():
    log = [_line(0.0, "plugin.session_started"), _line(10.0, "plugin.session_finished"),
           {**_line(0.0, "plugin.session_started"), "worker": "gw0"}, _line(0.0, "plugin.session_started"),
           {**_line(4.0, "plugin.session_finished"), "worker": "gw0"}, _line(3.0, "plugin.session_finished")]
    found = stages.summarise(log)
    assert found["timelines"] == 3 and found["wall"] == pytest.approx(10.0 + 3.0 + 4.0)


def test_a_run_writes_the_log_and_every_second_of_it_is_in_a_stage(heavy_modules, pytester, tiny_model_dir):
    pytester.makeconftest('pytest_plugins = ["harness.plugin"]')
    write_classification_jsonl(pytester.path / "data.jsonl", n=80)
    (pytester.path / "system.md").write_text("you label news headlines. answer with the label only: 1 or 0.")
    pytester.makepyfile(test_toy=SPEC.format(model=str(tiny_model_dir)))
    log = pytester.path / "events.jsonl"
    result = pytester.runpytest("-p", "no:cacheprovider", "--harness-events", str(log))
    assert result.ret in (0, 1)  # gates passed or failed: the tiny model's verdicts do not matter here

    lines = [json.loads(text) for text in log.read_text().splitlines()]
    kinds = [line["kind"] for line in lines]
    assert kinds[0] == "plugin.session_started" and kinds[-1] == "plugin.session_finished"
    assert kinds.count("plugin.run_started") == kinds.count("plugin.run_finished") == 1
    assert kinds.index("plugin.run_started") < kinds.index("data.prepared") < kinds.index("plugin.run_finished")
    assert kinds.index("plugin.run_finished") < kinds.index("plugin.report_started") < \
        kinds.index("plugin.report_finished")
    [finished] = [line for line in lines if line["kind"] == "plugin.run_finished"]
    assert finished["experiment"] == "toy" and finished["fields"] == {"outcome": "complete"}
    times = [line["t"] for line in lines]
    assert times == sorted(times) and times[-1] > times[0]
    engine = [line for line in lines if not line["kind"].startswith("plugin.")]
    assert {"data.prepared", "scoring.progress", "training.progress", "approach.scored"} <= {e["kind"] for e in engine}
    assert all(e["experiment"] == "toy" for e in engine)
    # the log holds what was printed, word for word, and printing is unchanged by it
    printed = [line.removeprefix("  [harness] ") for line in result.stdout.lines if line.startswith("  [harness] ")]
    assert [e["text"] for e in engine if e["text"]] == printed[1:]  # [0]: "running experiment 'toy' (...)"

    found = stages.summarise(lines)
    assert found["other"] == []  # every line of a real run has a rule
    assert found["wall"] == pytest.approx(times[-1] - times[0])
    assert sum(found["total"].values()) == pytest.approx(found["wall"])
    toy = found["experiments"]["toy"]
    assert sum(toy.values()) == pytest.approx(finished["t"] - lines[kinds.index("plugin.run_started")]["t"])
    assert {"data and checks", "baseline zero_shot", "baseline few_shot_k2", "pick and power plan", "training",
            "candidate scoring", "generation checks", "gates and record"} <= set(toy)
    assert "overfit check" not in toy  # the overfit gate reads the training curves: no train row is scored
    assert found["total"]["report"] > 0 and found["total"]["pytest outside runs"] > 0
