import pytest

from harness import Experiment, QLoRA, baselines
from harness.errors import SpecError


def _experiment(**kw):
    args = dict(name="x", data="d.jsonl", baselines=[baselines.zero_shot("b.md")])
    args.update(kw)
    return Experiment(**args)


def test_defaults_follow_common_practice():
    q = QLoRA()
    assert (q.r, q.alpha, q.dropout, q.learning_rate, q.target_modules) == (16, 32, 0.05, 2e-4, "all-linear")
    e = _experiment()
    assert e.model == "smollm2-135m-instruct" and e.threshold == 0.05 and e.relative


def test_unknown_qlora_field_is_refused_with_the_valid_ones():
    with pytest.raises(SpecError) as err:
        QLoRA(lora_rank=8)
    message = str(err.value)
    assert message.startswith("QLoRA has no field 'lora_rank'; did you mean r?")
    assert "valid fields: r, alpha, dropout, learning_rate, epochs" in message


def test_unknown_experiment_field_points_at_qlora():
    with pytest.raises(SpecError, match=r"Experiment has no field 'lora_rank'; did you mean QLoRA\(r=...\)\?"):
        _experiment(lora_rank=8)


def test_close_misspelling_is_suggested():
    with pytest.raises(SpecError, match="did you mean threshold"):
        _experiment(treshold=0.1)


@pytest.mark.parametrize("bad, message", [
    (dict(name="x'); DROP TABLE runs;--"), "name must be 1-64 letters"),
    (dict(name="../../etc"), "name must be 1-64 letters"),
    (dict(name="a" * 300), "name must be 1-64 letters"),
    (dict(name="/etc/passwd"), "name must be 1-64 letters"),
    (dict(name="a\x00b"), "name must be 1-64 letters"),
    (dict(name=".hidden"), "name must be 1-64 letters"),
    (dict(task="regression"), "task must be one of classification, generation"),
    (dict(baselines=[]), "needs at least one baseline"),
    (dict(baselines=["prompt.md"]), "baselines must be made with harness.spec.baselines"),
    (dict(split=(0.5, 0.1, 0.1)), "split fractions must add up to 1"),
    (dict(candidate="qlora"), "candidate must be a QLoRA"),
    (dict(data={"train": "a.jsonl"}), "data dict needs keys 'train' and 'test'"),
])
def test_bad_specs_get_one_clear_line(bad, message):
    with pytest.raises(SpecError, match=message) as err:
        _experiment(**bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad, message", [
    (dict(r=0), "r must be a positive integer"),
    (dict(dropout=1.5), "dropout must be in"),
    (dict(learning_rate=5), "learning_rate must be in"),
    (dict(epochs=0), "epochs must be positive"),
])
def test_bad_qlora_values(bad, message):
    with pytest.raises(SpecError, match=message):
        QLoRA(**bad)


def test_duplicate_baseline_names_are_refused():
    with pytest.raises(SpecError, match="baseline names must be unique"):
        _experiment(baselines=[baselines.zero_shot("a.md"), baselines.zero_shot("b.md")])


def test_few_shot_names_itself_by_k():
    assert baselines.few_shot("a.md", k=4).name == "few_shot_k4"
    with pytest.raises(SpecError, match="k must be a positive integer"):
        baselines.few_shot("a.md", k=0)


def test_config_is_json_able():
    import json

    e = _experiment(candidate=QLoRA(r=8), baselines=[baselines.few_shot("a.md", k=2)])
    config = json.loads(json.dumps(e.config()))
    assert config["candidate"]["r"] == 8 and config["baselines"][0]["k"] == 2


def test_a_relative_rule_on_a_metric_with_an_arbitrary_zero_is_refused():
    with pytest.raises(SpecError, match=r"metric 'bertscore' has an arbitrary zero .* set relative=False"):
        Experiment(name="x", data="d.jsonl", metric="bertscore", baselines=[baselines.zero_shot("p.md")])
    fine = Experiment(name="x", data="d.jsonl", metric="bertscore", relative=False, threshold=0.01,
                      baselines=[baselines.zero_shot("p.md")])
    assert fine.config()["relative"] is False


def test_the_bootstrap_seed_and_resamples_are_the_specs_and_apart_from_the_split_seed():
    e = Experiment(name="x", data="d.jsonl", baselines=[baselines.zero_shot("p.md")], seed=3, bootstrap_seed=7)
    assert (e.seed, e.bootstrap_seed, e.resamples) == (3, 7, 20_000)
    with pytest.raises(SpecError, match="resamples must be an integer of at least 1000"):
        Experiment(name="x", data="d.jsonl", baselines=[baselines.zero_shot("p.md")], resamples=100)
