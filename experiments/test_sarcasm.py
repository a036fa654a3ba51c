"""Does a QLoRA fine-tune of SmolLM2-135M beat prompting it at spotting sarcastic headlines?

    pytest experiments/test_sarcasm.py            # gate the declared (or stored best swept) candidate
    pytest experiments/test_sarcasm.py --harness-sweep    # search QLoRA settings first, then gate the winner

The candidate must beat the best prompt baseline (picked on validation) by 5% relative
accuracy on the sealed test split, with the whole 95% paired-bootstrap interval above 5%.

Measured on 2 CPU cores: against the strongest prompt (8 nearest-neighbour examples, batch
calibrated: 0.645 on test, where always answering "0" scores 0.534) the fine-tune scores 0.710,
+10.1% with a 95% interval of +2.8%..+17.6%: INCONCLUSIVE. Against the weak prompts alone
(0.466: "1" for every headline) it looked like +50%.

The 800-row test split was chosen after a 400-row split came out INCONCLUSIVE, and with the
same seed it contains those 400 rows: its verdict is a second look at them (docs/statistics.md),
which the harness does not yet correct for. Settling it needs a fresh test split.
"""
from harness import Experiment, QLoRA, Sweep, baselines

experiment = Experiment(
    name="sarcasm",
    data="experiments/data/sarcasm.jsonl",
    model="smollm2-135m-instruct",
    metric="accuracy",
    task="classification",
    # rows: train / val (picks the best baseline) / test (sealed). 800 test rows, because against
    # the strongest prompt the uplift is about +14% and 400 rows left its interval straddling 5%
    # ("about 559 test rows would settle it"); 950 train rows instead of 480 gained nothing.
    split=(480, 120, 800),
    # Zero- and few-shot prompts alone answer "1" to every headline (0.466 on test), so
    # the candidate faces the strongest of: three prompt wordings (every file in the folder),
    # balanced and nearest-neighbour examples, and calibrated twins of the label-scored ones.
    # 11 approaches, 5 scoring passes over 120 val + 800 test rows.
    baselines=[
        baselines.zero_shot("baselines/sarcasm/", calibrate=True),  # 3 wordings x (plain, calibrated)
        # contextual (3 content-free prompts) and batch calibration (none: the prior is the mean
        # over the val inputs)
        baselines.few_shot("baselines/sarcasm/system.md", k=8, strategy="balanced", calibrate=("contextual", "batch")),
        # Per-input examples share no cached prefix, so each row pays for its whole prompt, and
        # contextual calibration would cost 3 more prompts per row; batch calibration costs none.
        baselines.few_shot("baselines/sarcasm/system.md", k=8, strategy="nearest", calibrate="batch"),
    ],
    max_baselines=11,
    candidate=QLoRA(r=16, alpha=32, learning_rate=2e-4, epochs=2),
    # `pytest experiments/ --harness-sweep` searches these first (about 20 minutes on 2 CPU cores) and
    # gates the best trial on validation; later runs without --harness-sweep reuse that stored winner.
    # Two evaluations per epoch give the pruner a checkpoint to stop a trailing trial at.
    sweep=Sweep(r=[8, 16, 32], learning_rate=(5e-5, 1e-3), epochs=[1, 2], evals_per_epoch=2, trials=6),
    threshold=0.05,
    # Before training the run states its power: against the best prompt's validation score,
    # 800 test rows have well under 80% power to show the 5% bar even if the true uplift were
    # +10% (that takes about 3,600 rows, more than this 1,479-row slice holds beside train and
    # val). The spec trains anyway, to measure the uplift; the statement is logged and stored.
    underpowered="warn",
    # So an INCONCLUSIVE here is expected. It is an xfail in pytest (CI goes on, the finding
    # shows), the badge says Inconclusive, the recommendation "collect more data", and export
    # refuses it without --force; a FAIL still fails CI. With a bigger test split, drop the line.
    # The regression gate needs no such allowance: its forgetting probe (perplexity on 250 held
    # Wikipedia passages may rise at most 5%) is powered to settle it, as the run states before
    # training, and its MMLU suite SKIPs, saying why: SmolLM2-135M answers it at chance, so it
    # has no accuracy there to lose. Measured (2026-12-02): the probe FAILs, perplexity x1.076
    # (95% CI x1.069..x1.084), so this experiment's verdict is Keep prompting and CI fails on it.
    allow_inconclusive=("five_percent_rule",),
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


def test_the_best_prompt_does_the_task(result):
    """A fine-tune measured against a prompt stuck at the class prior proves little."""
    best = result.baselines[result.best_baseline].metrics["val"]
    assert best["accuracy"] >= best["majority_class_rate"] + 0.1
