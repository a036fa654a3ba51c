"""Prompt baselines: variants, few-shot strategies, contextual and batch calibration, the budget."""
import math
import re
from collections import Counter

import pytest

from harness import Experiment, baselines
from harness.data import Sample
from harness.data.sealed import SealedError, SealedSplit
from harness.errors import HarnessError, SpecError
from harness.prompting import calibration, shots


def _row(text: str, label: str = "0") -> Sample:
    return Sample((("user", text),), label)


def test_balanced_draws_equal_counts_per_label_and_only_from_train():
    train = [_row(f"plain {i}", "0") for i in range(30)] + [_row(f"satire {i}", "1") for i in range(6)]
    picked = shots.balanced_shots(train, k=6, seed=3)
    assert Counter(s.answer for s in picked) == {"0": 3, "1": 3}  # 5:1 in train, 1:1 in the prompt
    assert all(any(s is t for t in train) for s in picked)
    assert picked == shots.balanced_shots(train, k=6, seed=3)  # seeded
    assert picked != shots.balanced_shots(train, k=6, seed=4)
    with pytest.raises(SpecError, match=r"k=5 does not split evenly over the 2 labels \['0', '1'\]; "
                                        r"use a multiple of 2"):
        shots.balanced_shots(train, k=5, seed=0)
    with pytest.raises(SpecError, match=r"labels \['1'\] have fewer than 7 train rows"):
        shots.balanced_shots(train, k=14, seed=0)
    with pytest.raises(SealedError):  # the test split cannot be a source of examples
        shots.chooser("balanced", SealedSplit(train, "x"), 2, 0)


def _fake_embed(vectors: dict[str, list[float]]):
    import torch

    def embed(texts):
        return torch.nn.functional.normalize(torch.tensor([vectors[t] for t in texts], dtype=torch.float), dim=-1)

    return embed


def test_nearest_neighbours_are_the_most_similar_train_rows_most_similar_last():
    embed = _fake_embed({"apple pie": [1, 0, 0], "apple tart": [0.8, 0.2, 0], "car engine": [0, 1, 0],
                         "truck engine": [0, 0.9, 0.1], "blue sky": [0, 0, 1], "apple crumble": [1, 0.05, 0]})
    train = [_row(t) for t in ("car engine", "apple tart", "blue sky", "apple pie", "truck engine")]
    nearest = shots.NearestShots(train, embed)
    assert [s.input_text for s in nearest(_row("apple crumble"), 2)] == ["apple tart", "apple pie"]
    # the input itself, were it a train row, is never its own example
    assert [s.input_text for s in nearest(train[3], 1)] == ["apple tart"]
    choose, fixed = shots.chooser("nearest", train, 2, 0, nearest)
    assert fixed is None  # the examples differ per input
    assert choose(_row("apple crumble")) == [train[1], train[3]]
    # an index over anything but the train split is caught, whatever it returns
    elsewhere = shots.NearestShots([_row("apple pie")], embed)
    with pytest.raises(HarnessError, match="not a train row; examples may come from the train split only"):
        shots.chooser("nearest", train, 1, 0, elsewhere)[0](_row("apple crumble"))


def test_nearest_neighbours_with_the_shipped_minilm():
    from harness.prompting.embed import Embedder

    embed = Embedder()
    train = [_row(t) for t in ("senate passes the annual budget bill", "a kitten naps on a rug",
                               "stocks tumble as interest rates rise", "the cat sat on the mat")]
    picked = shots.NearestShots(train, embed)(_row("a sleepy cat lying on a carpet"), 2)
    assert {s.input_text for s in picked} == {"a kitten naps on a rug", "the cat sat on the mat"}
    vectors = embed(["a kitten naps on a rug", "a kitten naps on a rug"])
    assert vectors.shape == (2, 384) and abs(float(vectors[0].norm()) - 1) < 1e-5


def test_calibration_flips_a_prior_dominated_prediction():
    log = math.log
    # The prompt alone pushes the model to "1": content-free inputs get, over the label set,
    # 0.1/0.4 -> (0.2, 0.8), 0.2/0.2 -> (0.5, 0.5), 0.05/0.45 -> (0.1, 0.9).
    content_free = [{"0": log(0.1), "1": log(0.4)}, {"0": log(0.2), "1": log(0.2)},
                    {"0": log(0.05), "1": log(0.45)}]
    p_cf = calibration.mean_probs(content_free)
    assert p_cf["0"] == pytest.approx(0.8 / 3) and p_cf["1"] == pytest.approx(2.2 / 3)
    x = {"0": log(0.3), "1": log(0.7)}  # uncalibrated: "1"
    # log 0.3 - log(0.8/3) = +0.118 beats log 0.7 - log(2.2/3) = -0.047
    assert max(x, key=x.get) == "1" and calibration.predict(x, p_cf) == "0"
    # an input the model is surer of than the prior stays: log .8 - log .733 > log .2 - log .267
    assert calibration.predict({"0": log(0.2), "1": log(0.8)}, p_cf) == "1"
    assert calibration.CONTENT_FREE == ("N/A", "", "[MASK]")


def test_batch_calibration_divides_out_the_mean_prediction_of_real_inputs():
    log = math.log
    # every input leans to "1"; relative to that lean, the second one leans to "0"
    batch = [{"0": log(0.2), "1": log(0.8)}, {"0": log(0.4), "1": log(0.6)}, {"0": log(0.1), "1": log(0.9)}]
    prior = calibration.mean_probs(batch)
    assert prior == pytest.approx({"0": 0.7 / 3, "1": 2.3 / 3})
    assert [calibration.predict(lp, prior) for lp in batch] == ["1", "0", "1"]
    assert calibration.adjusted(batch[1], prior)["0"] == pytest.approx(log(0.4) - log(0.7 / 3))


def test_calibrate_takes_a_method_or_both_and_names_each_twin():
    assert baselines.zero_shot("a.md", calibrate=True).scored_as == ["zero_shot", "zero_shot+calibrated"]
    assert baselines.few_shot("a.md", k=2, strategy="nearest", calibrate="batch").scored_as == [
        "few_shot_k2_nearest", "few_shot_k2_nearest+batch_calibrated"]
    assert baselines.zero_shot("a.md", calibrate=("contextual", "batch")).calibrate == ("contextual", "batch")
    assert baselines.zero_shot("a.md").scored_as == ["zero_shot"]
    for bad in ("platt", ("batch", "batch"), (), 1):
        with pytest.raises(SpecError, match="calibrate must be True, False, 'contextual', 'batch' or both"):
            baselines.zero_shot("a.md", calibrate=bad)


def _prompt_folder(tmp_path, names=("a.md", "b.txt")):
    folder = tmp_path / "prompts"
    folder.mkdir()
    for n in names:
        (folder / n).write_text(f"prompt {n}: answer with the label only: 1 or 0.")
    (folder / "notes.json").write_text("{}")  # not a prompt
    return folder


def test_a_folder_is_one_baseline_per_prompt_file_and_the_names_say_what_each_is(tmp_path):
    _prompt_folder(tmp_path)
    declared = [baselines.zero_shot("prompts", calibrate=True),
                baselines.few_shot("prompts/a.md", k=4, strategy="balanced"),
                baselines.few_shot("prompts/a.md", k=4)]
    expanded = baselines.expand(declared, tmp_path, task="classification", max_baselines=12, where="x")
    assert [n for b in expanded for n in b.scored_as] == [
        "a/zero_shot", "a/zero_shot+calibrated", "b/zero_shot", "b/zero_shot+calibrated",
        "few_shot_k4_balanced", "few_shot_k4"]
    assert expanded[1].system_prompt_file.endswith("b.txt")
    assert expanded[1].system_prompt(tmp_path).startswith("prompt b.txt")


def test_a_baseline_budget_overflow_is_refused_with_the_count_and_the_fix(tmp_path):
    _prompt_folder(tmp_path, names=("a.md", "b.md", "c.md"))
    spec = Experiment(name="x", data="d.jsonl", max_baselines=6,
                      baselines=[baselines.zero_shot("prompts", calibrate=True),
                                 baselines.few_shot("prompts/a.md", k=2, strategy="nearest")])
    message = ("x: 7 baselines to score (zero_shot 6, few_shot_k2_nearest 1) exceed max_baselines=6; drop prompt "
               "variants, strategies or calibrations, or raise Experiment(max_baselines=...)")
    with pytest.raises(SpecError, match=re.escape(message)):
        baselines.expand(spec.baselines, tmp_path, task="classification", max_baselines=spec.max_baselines, where="x")
    with pytest.raises(SpecError, match="max_baselines must be a positive integer"):
        Experiment(name="x", data="d.jsonl", max_baselines=0, baselines=[baselines.zero_shot("a.md")])


def test_calibration_and_balance_need_labels(tmp_path):
    (tmp_path / "a.md").write_text("summarise")
    for b in (baselines.zero_shot("a.md", calibrate=True), baselines.few_shot("a.md", k=2, strategy="balanced")):
        with pytest.raises(SpecError, match="needs a classification task"):
            baselines.expand([b], tmp_path, task="generation", max_baselines=12, where="x")
    with pytest.raises(SpecError, match="strategy must be one of random, balanced, nearest"):
        baselines.few_shot("a.md", strategy="similar")


def _no_model():
    raise AssertionError("every output should come from the cache")


def test_a_run_stores_every_baseline_and_twin_and_picks_the_best_on_val(tmp_path, tiny_model_dir):
    from tiny import write_classification_jsonl

    from harness._engine import run_experiment
    from harness.models import load_tokenizer, resolve
    from harness.prompting import prompts
    from harness.scoring import batched as scoring
    from harness.scoring import cache
    from harness.store import Store

    write_classification_jsonl(tmp_path / "data.jsonl", n=40)
    _prompt_folder(tmp_path)
    spec = Experiment(name="grid", data="data.jsonl", model=str(tiny_model_dir), split=(24, 8, 8), regression=None, forgetting=None,
                      max_baselines=10,
                      baselines=[baselines.zero_shot("prompts", calibrate=("contextual", "batch")),
                                 baselines.few_shot("prompts/a.md", k=2, strategy="balanced", calibrate=True),
                                 baselines.few_shot("prompts/a.md", k=2, strategy="nearest", calibrate=True)])
    store = Store(tmp_path / "h.duckdb")
    result = run_experiment(spec, store, root=tmp_path, log=lambda _: None)
    names = ["a/zero_shot", "a/zero_shot+calibrated", "a/zero_shot+batch_calibrated",
             "b/zero_shot", "b/zero_shot+calibrated", "b/zero_shot+batch_calibrated",
             "few_shot_k2_balanced", "few_shot_k2_balanced+calibrated",
             "few_shot_k2_nearest", "few_shot_k2_nearest+calibrated"]
    assert list(result.baselines) == names
    run_id = result.run_id
    stored = {a.name: a for a in store.approaches(run_id)}
    assert sorted(stored) == sorted(names)
    metrics = {(m["approach"], m["split"]) for m in store.rows("metrics", run_id) if m["metric"] == "accuracy"}
    assert metrics == {(n, split) for n in names for split in ("val", "test")}
    for n in names:
        config = stored[n].config
        assert config["calibrated"] == ("contextual" if n.endswith("+calibrated") else "batch"
                                        if n.endswith("+batch_calibrated") else None)
        assert config["strategy"] in ("random", "balanced", "nearest") and "k" in config and "system_prompt" in config
        if config["calibrated"] == "contextual":
            assert config["content_free_inputs"] == ["N/A", "", "[MASK]"]
            assert sum(config["content_free_probs"].values()) == pytest.approx(1)
    balanced = stored["few_shot_k2_balanced+calibrated"].config
    assert sorted(answer for _, answer in balanced["shots"]) == ["0", "1"]
    assert balanced["content_free_prompts"] == 3  # one fixed prompt: measured once, reused on val and test
    assert stored["few_shot_k2_nearest"].config["shots"] == "per input"
    assert stored["few_shot_k2_nearest+calibrated"].config["content_free_prompts"] > 3  # one set per input
    # the twin re-ranks its baseline's own label scores (read back from the output cache,
    # which must hold them all: the loader refuses) by the formula, with its stored p_cf
    plain, twin = result.baselines["a/zero_shot"], result.baselines["a/zero_shot+calibrated"]
    assert plain.prompt_token_counts["test"] == twin.prompt_token_counts["test"]
    tokenizer = load_tokenizer(resolve(str(tiny_model_dir)))
    rows = store.rows("predictions", run_id, approach="a/zero_shot", split="test")
    system = plain.config["system_prompt"]
    rendered = [scoring.render(tokenizer, prompts.baseline_messages(_row(r["input"]), system, [])) for r in rows]
    scored, computed = cache.cached_score(store, f"{resolve(str(tiny_model_dir)).sha256}:nf4", _no_model,
                                          None, rendered, {"labels": ["0", "1"]})
    p_cf = stored["a/zero_shot+calibrated"].config["content_free_probs"]
    assert computed == 0 and twin.predictions["test"] == [calibration.predict(lp, p_cf) for lp in scored.label_logprobs]
    assert plain.predictions["test"] == [max(lp, key=lp.get) for lp in scored.label_logprobs]
    # the batch twin re-ranks the same label scores against the mean label probability over the
    # val inputs, measured there and frozen for test; it costs no prompt
    batch = result.baselines["a/zero_shot+batch_calibrated"]
    prior = stored["a/zero_shot+batch_calibrated"].config["batch_prior"]
    assert stored["a/zero_shot+batch_calibrated"].config["prior_from"] == "8 val inputs"
    assert batch.prompt_token_counts == plain.prompt_token_counts
    assert batch.predictions["test"] == [calibration.predict(lp, prior) for lp in scored.label_logprobs]
    val_rows = store.rows("predictions", run_id, approach="a/zero_shot", split="val")
    val_scored, _ = cache.cached_score(store, f"{resolve(str(tiny_model_dir)).sha256}:nf4", _no_model, None, [
        scoring.render(tokenizer, prompts.baseline_messages(_row(r["input"]), system, [])) for r in val_rows],
        {"labels": ["0", "1"]})
    assert prior == pytest.approx(calibration.mean_probs(val_scored.label_logprobs))
    # every label-scored approach says how well its scores separate the classes at all
    for n in names:
        for split in ("val", "test"):
            assert set(result.baselines[n].metrics[split]) >= {"label_auc", "best_threshold_accuracy",
                                                               "majority_class_rate"}
    val = {n: result.baselines[n].metrics["val"]["accuracy"] for n in names}
    assert val[result.best_baseline] == max(val.values())
    assert names.index(result.best_baseline) == min(i for i, n in enumerate(names) if val[n] == max(val.values()))

