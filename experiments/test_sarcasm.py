"""Does a QLoRA fine-tune of SmolLM2-135M beat prompting it at spotting sarcastic headlines?

    pytest experiments/test_sarcasm.py            # gate the declared (or stored best swept) candidate
    pytest experiments/test_sarcasm.py --sweep    # search QLoRA settings first, then gate the winner

The candidate must beat the best prompt baseline (picked on validation) by 5% relative
accuracy on the sealed test split, with the whole 95% paired-bootstrap interval above 5%.
"""
from harness import Experiment, QLoRA, Sweep, baselines

experiment = Experiment(
    name="sarcasm",
    data="experiments/data/sarcasm.jsonl",
    model="smollm2-135m-instruct",
    metric="accuracy",
    task="classification",
    split=(480, 120, 400),  # rows: train / val (picks the best baseline) / test (sealed)
    # Zero- and few-shot prompts alone answer "1" to every headline (0.463, the class prior), so
    # the candidate faces the strongest of: three prompt wordings (every file in the folder),
    # balanced and nearest-neighbour examples, each label-scored baseline also contextually
    # calibrated where that is cheap. 9 approaches, 5 scoring passes over 120 val + 400 test rows.
    baselines=[
        baselines.zero_shot("baselines/sarcasm/", calibrate=True),  # 3 wordings x (plain, calibrated)
        baselines.few_shot("baselines/sarcasm/system.md", k=8, strategy="balanced", calibrate=True),
        # Per-input examples share no cached prefix, so each row pays for its whole prompt:
        # k=4 adds about 4 x 26 = 104 tokens to a ~100-token prompt. Calibrating it would cost 3
        # more prompts per row (its content-free inputs need its own examples), so it is not.
        baselines.few_shot("baselines/sarcasm/system.md", k=4, strategy="nearest"),
    ],
    max_baselines=9,
    candidate=QLoRA(r=16, alpha=32, learning_rate=2e-4, epochs=2),
    # `pytest experiments/ --sweep` searches these first (about 20 minutes on 2 CPU cores) and
    # gates the best trial on validation; later runs without --sweep reuse that stored winner.
    # Two evaluations per epoch give the pruner a checkpoint to stop a trailing trial at.
    sweep=Sweep(r=[8, 16, 32], learning_rate=(5e-5, 1e-3), epochs=[1, 2], evals_per_epoch=2, trials=6),
    threshold=0.05,
    # SmolLM2-135M answers the MMLU slice at chance (0.26 vs 0.25 for always "A"), so 228
    # questions cannot resolve a 2-point loss: an INCONCLUSIVE regression is reported (summary,
    # report, recommendation) but does not fail CI. With a larger model, drop this line.
    allow_inconclusive=("regression",),
    # The cost view prices the device the run was measured on: here a 2-vCPU cloud machine
    # (about 0.10 an hour); on a GPU, pass --harness-gpu-hour-price with its price.
    gpu_hour_price=0.10,
    calls=1_000_000,
)


def test_candidate_answers_within_a_second(result):
    """Users add their own checks as plain asserts on the result."""
    assert result.candidate.latency_p95_ms < 1000


def test_best_baseline_was_picked_on_validation(result):
    best = result.baselines[result.best_baseline]
    assert all(best.metrics["val"]["accuracy"] >= b.metrics["val"]["accuracy"] for b in result.baselines.values())
