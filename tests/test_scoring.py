import pytest

from harness.models import ResolvedModel, load_model, load_tokenizer
from harness.scoring import batched as scoring

SYSTEM = "you label news headlines. answer with the label only: 1 or 0. " * 3  # long enough to be cached


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    resolved = ResolvedModel("tiny", str(tiny_model_dir), "x")
    tokenizer = load_tokenizer(resolved)
    tokenizer.padding_side = "left"
    return load_model(resolved, quantize=False), tokenizer


def _prompts(tokenizer, n=12):
    inputs = [f"area man {'cat ' * (i % 4)}{i}" for i in range(n)]
    return [scoring.render(tokenizer, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": x}])
            for x in inputs]


def _assert_same(a, b, tol=1e-4):
    assert a.predictions == b.predictions
    for x, y in zip(a.label_logprobs, b.label_logprobs):
        assert x.keys() == y.keys()
        assert all(abs(x[k] - y[k]) < tol for k in x)


def test_batched_label_scores_equal_one_at_a_time(tiny):
    model, tokenizer = tiny
    prompts = _prompts(tokenizer)
    batched = scoring.score_labels(model, tokenizer, prompts, ["0", "1"], batch_size=5)
    single = scoring.score_labels(model, tokenizer, prompts, ["0", "1"], batch_size=1, use_prefix_cache=False)
    _assert_same(batched, single)


def test_prefix_cache_changes_nothing(tiny):
    model, tokenizer = tiny
    prompts = _prompts(tokenizer)
    cached = scoring.score_labels(model, tokenizer, prompts, ["0", "1"], batch_size=4)
    plain = scoring.score_labels(model, tokenizer, prompts, ["0", "1"], batch_size=4, use_prefix_cache=False)
    _assert_same(cached, plain)


def test_multi_token_labels_batched_equal_one_at_a_time(tiny):
    model, tokenizer = tiny
    prompts = _prompts(tokenizer, 7)
    labels = ["positive", "negative", "yes no"]
    batched = scoring.score_labels(model, tokenizer, prompts, labels, batch_size=3)
    single = scoring.score_labels(model, tokenizer, prompts, labels, batch_size=1, use_prefix_cache=False)
    _assert_same(batched, single)
    assert set(batched.predictions) <= set(labels)


def test_label_logprob_matches_a_plain_forward(tiny):
    import torch

    model, tokenizer = tiny
    prompt = _prompts(tokenizer, 1)[0]
    scored = scoring.score_labels(model, tokenizer, [prompt], ["0", "1"])
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logprobs = model(input_ids=ids).logits[0, -1].log_softmax(-1)
    one = tokenizer("1", add_special_tokens=False)["input_ids"][0]
    assert abs(scored.label_logprobs[0]["1"] - logprobs[one].item()) < 1e-4


def test_batched_generation_equals_one_at_a_time(tiny):
    model, tokenizer = tiny
    prompts = _prompts(tokenizer, 6)
    batched = scoring.generate(model, tokenizer, prompts, max_new_tokens=6, batch_size=3)
    single = scoring.generate(model, tokenizer, prompts, max_new_tokens=6, batch_size=1)
    assert batched.predictions == single.predictions
    assert len(batched.latencies_ms) == 6 and all(t > 0 for t in batched.latencies_ms)


def test_generation_produces_text(tiny):
    model, tokenizer = tiny
    out = scoring.generate(model, tokenizer, _prompts(tokenizer, 4), max_new_tokens=4)
    assert any(p for p in out.predictions)  # otherwise the equality test above proves nothing
    assert all(0 < n <= 4 for n in out.generated_tokens)


def test_continuation_log_likelihoods_match_a_plain_forward_per_example(tiny):
    """Batched, left-padded, prefix-cached reference scoring equals summing log-probs of each
    reference's tokens from one unpadded forward per example."""
    import torch

    model, tokenizer = tiny
    prompts = _prompts(tokenizer, 6)
    references = ["1", "0", "the cat sat on the mat", "", "area man wins nothing again", "senate passes"]
    loglik, counts = scoring.score_continuations(model, tokenizer, prompts, references, batch_size=4)
    for prompt, reference, ll, n in zip(prompts, references, loglik, counts):
        head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full = tokenizer(prompt + reference, add_special_tokens=False)["input_ids"]
        tail = full[len(head):]
        assert n == len(tail)
        with torch.no_grad():
            logprobs = model(input_ids=torch.tensor([full])).logits[0].log_softmax(-1)
        expected = sum(logprobs[len(head) - 1 + k, t].item() for k, t in enumerate(tail))
        assert ll == pytest.approx(expected, abs=1e-3)
    assert counts[3] == 0 and loglik[3] == 0.0
