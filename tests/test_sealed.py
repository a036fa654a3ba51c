"""The test split is sealed: selection reads only train and val; test is opened once, last."""
import pytest
from tiny import write_classification_jsonl

from harness import Experiment, QLoRA, baselines
from harness._engine import run_experiment
from harness._engine.events import of
from harness.data.sealed import SealedError, SealedSplit
from harness.prompting import shots
from harness.store import Store


def test_a_sealed_split_refuses_every_read_until_opened():
    sealed = SealedSplit(["a", "b"], "hash")
    assert len(sealed) == 2
    for attempt in (lambda: list(sealed), lambda: sealed[0], lambda: "a" in sealed, lambda: ["x"] + sealed,
                    lambda: sealed + ["x"]):
        with pytest.raises(SealedError, match="sealed until final scoring"):
            attempt()
    with pytest.raises(SealedError):
        shots.random_shots(sealed, 1, seed=0)  # few-shot selection cannot draw from it
    assert sealed.open("final scoring") == ["a", "b"] and sealed.opened_for == "final scoring"


@pytest.fixture
def toy(tmp_path, tiny_model_dir):
    write_classification_jsonl(tmp_path / "data.jsonl", n=80)
    (tmp_path / "a.md").write_text("you label news headlines. answer with the label only: 1 or 0.")
    (tmp_path / "b.md").write_text("respond with only a 1 or 0")
    return tmp_path, tiny_model_dir


def _experiment(model_dir, **kw):
    return Experiment(name="toy", data="data.jsonl", model=str(model_dir), split=(48, 16, 16),
                      baselines=[baselines.zero_shot("a.md"), baselines.few_shot("b.md", k=4)],
                      underpowered="warn", candidate=QLoRA(r=4, alpha=8, learning_rate=3e-2, epochs=1, warmup_ratio=0.0),
                      regression=None, forgetting=None, **kw)


def test_selection_finishes_before_the_test_split_is_opened(toy, monkeypatch):
    root, model_dir = toy
    seen = []
    opened_after = []
    real_open = SealedSplit.open

    def spy(self, purpose):
        opened_after.append(list(seen))
        return real_open(self, purpose)

    monkeypatch.setattr(SealedSplit, "open", spy)
    store = Store(root / "h.duckdb")
    result = run_experiment(_experiment(model_dir), store, root=root, log=lambda _: None, on_event=seen.append)
    assert seen == result.events
    [before] = opened_after  # opened exactly once
    assert [e.fields["split"] for e in of(before, "baseline.picked")] == ["val"]
    assert [e.fields["steps"] for e in of(before, "candidate.trained")] == [6]  # training finished
    scored_before = [e.fields["what"] for e in of(before, "scoring.progress") + of(before, "scoring.cached")]
    assert scored_before and not any(what.endswith(" test") for what in scored_before)  # nothing scored on test
    assert not of(before, "approach.scored")
    after = of(seen[len(before):], "approach.scored")
    assert {e.fields["approach"] for e in after} == {"zero_shot", "few_shot_k4", "candidate"}
    assert all("test" in e.fields["scores"] for e in after)
    # few-shot examples come from train only
    shots = {tuple(s) for s in result.baselines["few_shot_k4"].config["shots"]}
    run = store.runs("toy")[0]
    held_out = {(p["input"], p["reference"]) for p in store.rows("predictions", run.run_id)
                if p["split"] in ("val", "test")}
    assert shots and not shots & held_out


def test_the_best_baseline_is_picked_on_val_even_if_test_disagrees(toy, monkeypatch):
    """Plant a baseline that is worse on val but better on test: it must not be picked."""
    root, model_dir = toy
    from harness._engine import evaluate

    real = evaluate.score_split
    rigged_splits = set()

    def rigged(scoring, contender, split, rows, *args, **kwargs):
        scored = real(scoring, contender, split, rows, *args, **kwargs)
        approach = contender.approach
        if approach.kind == "baseline":
            rigged_splits.add(split)
            favoured = approach.name == ("zero_shot" if split == "val" else "few_shot_k4")
            approach.metrics[split]["accuracy"] = 0.9 if favoured else 0.1
            approach.scores[split] = [1.0 if favoured else 0.0] * len(rows)
        return scored

    monkeypatch.setattr(evaluate, "score_split", rigged)
    store = Store(root / "h.duckdb")
    result = run_experiment(_experiment(model_dir), store, root=root, log=lambda _: None)
    assert rigged_splits == {"val", "test"}  # the rig was in the path of both the pick and the final scoring
    assert result.best_baseline == "zero_shot"
    assert result.gates["five_percent_rule"].details["baseline"] == "zero_shot"
    assert result.gates["five_percent_rule"].details["picked_on"] == "val"
    assert store.runs("toy")[0].best_baseline == "zero_shot"  # stored, so readers need not pick it again
