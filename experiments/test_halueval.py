"""Does a QLoRA fine-tune of SmolLM2-135M beat retrieval at answering multi-hop trivia questions?

    pytest experiments/test_halueval.py

A knowledge task (HotpotQA questions, as sliced in HaluEval): the answer is a fact the model may
not hold. The guides' answer is "retrieve before you fine-tune", so the candidate, fine-tuned
closed book on question -> answer, faces the strongest of the closed-book prompt and a retrieval
baseline that puts the 3 passages most similar to the question (out of all 350 rows' passages,
so it must find the right one) above it. Both picked on validation; test is sealed.
MiniLM finds a row's own passage first for 93% of the questions and among the 3 for 97%; the
answer appears verbatim in its passage for 338 of the 350 rows.
"""
from harness import Experiment, QLoRA, baselines

experiment = Experiment(
    name="halueval",
    data="experiments/data/halueval.jsonl",
    columns={"input": "question", "output": "right_answer"},
    model="smollm2-135m-instruct",
    task="generation",
    metric="exact_match",
    metrics=("rouge",),
    split=(200, 50, 100),  # rows: train / val (picks the best baseline) / test (sealed)
    baselines=[
        baselines.zero_shot("baselines/halueval/system.md"),  # closed book
        # Four examples first show SmolLM2-135M the answer format (without them it answers in
        # sentences, which exact match scores 0 even when the passage held the answer).
        baselines.few_shot("baselines/halueval/system.md", k=4),  # closed book
        baselines.retrieval("baselines/halueval/system.md", knowledge="experiments/data/halueval_passages.jsonl",
                            k=3, shots=4),
    ],
    max_baselines=3,
    # Runtime on 2 cores of an AMD EPYC (Zen 5), 2026-12-02: 637 s cold (docs/performance.md):
    # 2 epochs x 25 steps (200 rows / batch 8) x 4.4 s = 234 s of training; greedy generation
    # (answers of at most 4 words, so at most ~18 new tokens) of 150 val + test rows per baseline
    # and for the candidate, 350 s for the three baselines (retrieval prompts are ~3 x 90 tokens
    # longer: 190 s of it). Embedding the 350 passages takes ~25 s once; the index is cached.
    candidate=QLoRA(r=16, alpha=32, learning_rate=2e-4, epochs=2),
    knowledge_task=True,  # the recommendation weighs retrieval against fine-tuning
    # SmolLM2-135M scores near 0 exact match every way (it copies passages rather than taking the
    # answer from them). Below 10% on validation the rule is judged in points, against the bar
    # the relative rule has there (0.5 points; docs/statistics.md), and 100 test rows have little
    # power for a true gain of twice that: the run states so before training and, as this spec
    # says, trains anyway. An INCONCLUSIVE is an xfail (CI goes on, the finding shows, export
    # refuses it); with a larger model and more test rows, drop both lines.
    underpowered="warn",
    allow_inconclusive=("five_percent_rule",),
    # No regression gate here: the shipped forgetting probe is Wikipedia paragraphs, the very kind
    # of text this task reads in every prompt, so it would measure learning, not forgetting (and
    # the sarcasm experiment carries the gate). Point forgetting= at held text of another kind.
    regression=None,
    forgetting=None,
    gpu_hour_price=0.10,  # a 2-vCPU cloud machine, as in experiments/test_sarcasm.py
    calls=1_000_000,
)


def test_retrieval_was_a_baseline(result):
    """The retrieval baseline was scored on validation and test like any other."""
    retrieval = result.baselines["retrieval_k3_shots4"]
    assert {"val", "test"} <= set(retrieval.metrics)
    assert retrieval.config["retrieval"]["passages"] == 350
