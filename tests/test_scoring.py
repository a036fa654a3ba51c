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


# --- prompts shared by several continuations ---------------------------------------------------------------

# Shared-prompt and whole-row scoring are the same float32 sums run in different batch shapes
# (heads alone, then continuations after copies of their cache), so they differ by rounding, which
# grows with the sum. Measured: at most 7.6e-6 nats on the rows below (log-likelihoods up to 108
# nats: one float32 step there, 2**-17) and 6.9e-5 nats on the MMLU items (-631 nats over 72
# tokens): 2.3e-7 of the value at most, ~2 float32 epsilons. Allowed: 1e-6 of it (8 epsilons), and
# 1e-5 nats near zero.
SHARED_REL, SHARED_ABS = 1e-6, 1e-5
PROBE_SAVING = 1  # forces sharing wherever a batch repeats a head, however little it saves


def _shared_rows(tokenizer) -> tuple[list[str], list[str]]:
    """Groups of 4, 1, 3, 2, 5 and 2 rows; heads of 22 to 91 tokens (two after the long chat
    prefix, which the prefix cache takes); continuations of 0, 1, 2, 6 and 13 tokens, and one that
    merges with its prompt's last token (so its own tokens are scored)."""
    chat = [scoring.render(tokenizer, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": x}])
            for x in ["area man", "the cat sat on the mat and more"]]
    options = [" paris", " the cat sat on the mat", " 1", " no", " stocks fall on rate fears again and again"]
    groups = [("Question: what is the capital of france?\nAnswer:", options[:4]),
              ("Question: senate passes budget bill, report: nation tired? why\nAnswer:", options[:1]),
              ("Question: local dog elected mayor\nAnswer:", options[2:5]),
              (chat[0], [" 1", ""]),
              (chat[1], options),
              ("Question: where is the mat? the c", ["at sat", " dog"])]
    pairs = [(prompt, c) for prompt, conts in groups for c in conts]
    return [p for p, _ in pairs], [c for _, c in pairs]


@pytest.mark.parametrize("batch_size, min_saving", [(16, None), (3, PROBE_SAVING), (5, PROBE_SAVING)])
def test_shared_prompts_give_the_whole_rows_scores(tiny, monkeypatch, batch_size, min_saving):
    """Uneven groups, split across batches or not, in input order; the same counts, fallback included."""
    model, tokenizer = tiny
    prompts, conts = _shared_rows(tokenizer)
    if min_saving:
        monkeypatch.setattr(scoring, "SHARED_HEAD_MIN_SAVING", min_saving)
    shared_batches = []
    run_shared = scoring._score_after_shared_heads

    def spy(*args):
        shared_batches.extend(args[3])
        return run_shared(*args)

    monkeypatch.setattr(scoring, "_score_after_shared_heads", spy)
    calls = []
    shared, shared_counts = scoring.score_continuations(model, tokenizer, prompts, conts, batch_size=batch_size,
                                                        progress=lambda done, total: calls.append((done, total)))
    whole, whole_counts = scoring.score_continuations(model, tokenizer, prompts, conts, batch_size=batch_size,
                                                      share_prompts=False)
    assert shared_batches  # otherwise this compares the whole-row path with itself
    assert shared_counts == whole_counts
    assert shared == pytest.approx(whole, rel=SHARED_REL, abs=SHARED_ABS)
    assert shared_counts[-2] == len(tokenizer("at sat", add_special_tokens=False)["input_ids"])  # the fallback
    assert (shared[9], shared_counts[9]) == (0.0, 0)  # the empty continuation
    assert calls == sorted(calls) and calls[-1] == (len(prompts), len(prompts))


def test_rows_after_one_shared_boundary_token_run_whole_as_before(tiny):
    """The forgetting probe's documents share only the boundary token: nothing to save, the same numbers."""
    from harness.judge import forgetting

    model, tokenizer = tiny
    texts = list(forgetting.load_probe("wikipedia").texts[:4])
    start = [forgetting.boundary(tokenizer)] * len(texts)
    assert (scoring.score_continuations(model, tokenizer, start, texts, batch_size=2)
            == scoring.score_continuations(model, tokenizer, start, texts, batch_size=2, share_prompts=False))


def test_suite_answers_are_the_same_with_shared_prompts(tiny):
    from harness.judge import capability

    model, tokenizer = tiny
    suite = capability.load_suite("mmlu")
    indices = suite.screen_questions[:16]
    prompts, conts = capability.items(suite, indices)
    shared, _ = scoring.score_continuations(model, tokenizer, prompts, conts)
    whole, _ = scoring.score_continuations(model, tokenizer, prompts, conts, share_prompts=False)
    assert capability.answers(suite, indices, shared) == capability.answers(suite, indices, whole)
    assert shared == pytest.approx(whole, rel=SHARED_REL, abs=SHARED_ABS)
