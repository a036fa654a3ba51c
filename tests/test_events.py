"""The engine's event list (harness/_engine/events.py): the recorder and its closed vocabulary."""
import ast
import dataclasses
from pathlib import Path

import pytest

from harness._engine import events
from harness._engine.events import KINDS, Event, Events

ENGINE = Path(__file__).resolve().parent.parent / "harness" / "_engine"


def test_the_recorder_keeps_each_event_and_prints_its_text_unchanged():
    printed, seen = [], []
    recorder = Events("toy", log=printed.append, on_event=seen.append)
    first = recorder.emit(events.BASELINE_PICKED, "toy: best baseline on val: zero_shot (accuracy 0.750)",
                          name="zero_shot", split="val", metric="accuracy", value=0.75)
    second = recorder.emit(events.CANDIDATE_TRAINED, who="toy: candidate", steps=6)  # a fact, not printed
    assert printed == ["toy: best baseline on val: zero_shot (accuracy 0.750)"]
    assert recorder.events == seen == [first, second]
    assert first == Event("baseline.picked", "toy", "toy: best baseline on val: zero_shot (accuracy 0.750)",
                          {"name": "zero_shot", "split": "val", "metric": "accuracy", "value": 0.75})
    assert (second.kind, second.experiment, second.text, second.fields) == (
        "candidate.trained", "toy", "", {"who": "toy: candidate", "steps": 6})
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.text = "reworded"


def test_a_text_callback_turns_each_line_into_an_event_of_its_kind():
    printed = []
    recorder = Events("toy", log=printed.append)
    say = recorder.text(events.TRAINING_PROGRESS, who="toy: candidate")
    assert say("toy: candidate: step 1/2 epoch 0.50 loss 2.0000") is None  # a plain log callable
    say("toy: candidate: step 2/2 epoch 1.00 loss 1.5000")
    assert printed == [e.text for e in recorder.events] == ["toy: candidate: step 1/2 epoch 0.50 loss 2.0000",
                                                            "toy: candidate: step 2/2 epoch 1.00 loss 1.5000"]
    assert {(e.kind, e.fields["who"]) for e in recorder.events} == {("training.progress", "toy: candidate")}


def test_an_unknown_kind_is_refused_everywhere_a_kind_is_named():
    recorder = Events("toy", log=lambda _: pytest.fail("nothing may be printed for an unknown kind"))
    with pytest.raises(ValueError, match="unknown event kind 'training.step'; the kinds are agreement.checked, "):
        recorder.emit("training.step", "toy: step 1/2")
    with pytest.raises(ValueError, match="unknown event kind"):
        recorder.text("train.progress")  # refused when the callback is made, before any line arrives
    with pytest.raises(ValueError, match="unknown event kind"):
        Event("baseline.chosen", "toy", "")
    with pytest.raises(ValueError, match="unknown event kind"):
        events.of([], "scoring.cache")  # a misspelt kind cannot make "no such event" true
    assert recorder.events == []


def test_of_picks_one_kind_in_order():
    recorder = Events("toy", log=lambda _: None)
    for done in (1, 2):
        recorder.emit(events.SCORING_PROGRESS, f"toy: zero_shot val: {done}/2", what="toy: zero_shot val",
                      done=done, total=2)
        recorder.emit(events.SCORING_CACHED, cached=0, total=2, what="x")
    assert [e.fields["done"] for e in events.of(recorder.events, "scoring.progress")] == [1, 2]
    assert events.of(recorder.events, "sweep.trial") == []


def test_the_vocabulary_is_the_constants_and_every_engine_call_names_one():
    """Each kind is defined once, as a constant; the engine names kinds only through them."""
    constants = [v for k, v in vars(events).items() if k.isupper() and k != "KINDS"]
    assert set(constants) == KINDS and len(constants) == len(KINDS)  # one constant per kind
    assert all(k == k.lower() and k.count(".") == 1 for k in KINDS)
    used = set()
    for path in ENGINE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            call = getattr(node, "func", None)
            if isinstance(node, ast.Call) and isinstance(call, ast.Attribute) and call.attr in ("emit", "text") \
                    and "events" in (getattr(call.value, "id", None), getattr(call.value, "attr", None)):
                kind = node.args[0]
                assert isinstance(kind, ast.Attribute) and kind.value.id == "kinds", \
                    f"{path.name}:{node.lineno}: name the kind by its constant in harness/_engine/events.py"
                used.add(getattr(events, kind.attr))
    assert used == KINDS  # every kind is reported somewhere, and nothing else is


def test_the_machine_and_the_choices_made_for_it_are_said(monkeypatch):
    """The run header names the CPU, its matmul flags and what was chosen; threads are only ever lowered."""
    import torch

    from harness import machine

    machine.chosen.cache_clear()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(machine, "usable_cores", lambda: 1)
    before = torch.get_num_threads()
    try:
        chosen = machine.chosen()
        assert chosen.threads == torch.get_num_threads() == 1 and chosen.cores == 1
        assert chosen.dtype == "float32" and chosen.device == "cpu"
        assert set(chosen.flags) <= set(machine.FLAGS)
        assert chosen.text().startswith(f"on {chosen.name} (1 core; ")
        assert "1 torch thread, float32 compute, bitsandbytes CPU NF4" in chosen.text()
    finally:
        torch.set_num_threads(before)
        machine.chosen.cache_clear()
