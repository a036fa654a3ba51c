"""The first stage of every run: the data read, checked and split, the base model and its
tokenizer, and how approaches will be scored."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import data, machine, models
from harness._engine import events as kinds
from harness._engine.evaluate import Scoring
from harness._engine.events import Events
from harness._engine.scorer import Models, Scorer
from harness.data.sealed import SealedSplit
from harness.errors import DataError, SpecError
from harness.judge import gates, looks
from harness.judge.outcomes import FAIL, GateResult
from harness.scoring import metrics
from harness.spec.experiment import Experiment
from harness.store import RunRecord, Store, ledger


@dataclass
class Prepared:
    """What every path through an experiment needs first: checked data, splits, model, scoring."""

    splits: data.Splits
    checks: list
    quality: GateResult
    data_sha: str
    data_path: str
    task: str
    labels: list[str]
    test: SealedSplit
    scoring: Scoring
    models: Models


def prepare(experiment: Experiment, store: Store, root: Path, record: RunRecord,
            events: Events) -> Prepared:
    """Read, check and split the data (a DataError for data that cannot be used), then load the
    tokenizer; the model itself is loaded only when an output is not in the cache."""
    name = experiment.name
    stage = data.prepare(experiment.data, root=root, split=experiment.split, seed=experiment.seed,
                         task=experiment.task, max_rows=experiment.max_rows, columns=experiment.columns, name=name,
                         judged=_judged_elsewhere(experiment, store, root))
    data_path, data_sha, task, splits, labels = stage.path, stage.sha256, stage.task, stage.splits, stage.labels
    record.run_fields.update({"data_path": data_path, "data_sha256": data_sha})  # kept even if the run fails
    if stage.split_error:
        raise DataError(stage.split_error)
    checks = stage.checks
    record.checks = [{"name": c.name, "level": c.level, "message": c.message, "lines": c.lines[:1000]}
                     for c in checks]
    quality = gates.data_quality(checks)
    if quality.outcome == FAIL:
        raise DataError(f"{name}: data file {data_path}: {quality.message}")
    if stage.refusal:
        raise DataError(stage.refusal)
    test = SealedSplit(splits.test, splits.test_sha256)
    key_metric, other_metrics = _metrics_for(experiment, task)
    events.emit(kinds.DATA_PREPARED, f"{name}: {task}, {len(splits.train)} train / {len(splits.val)} val / "
                f"{len(test)} test rows; key metric {key_metric.name}", task=task, train=len(splits.train),
                val=len(splits.val), test=len(test), key_metric=key_metric.name)
    resolved = models.resolve(experiment.model)
    chosen = machine.chosen()
    events.emit(kinds.MACHINE_CHOSEN, f"{name}: {chosen.text()}", **chosen.to_dict())
    tokenizer = models.load_tokenizer(resolved, trust_remote_code=experiment.trust_remote_code)
    max_new = 16
    if task == "generation":
        answers = [s.answer for s in splits.train + splits.val]
        longest = max(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
        max_new = longest + 8  # room for a slightly longer answer than any seen, no more
    scorer = Scorer(store, tokenizer, task, labels, max_new, experiment.eval_batch_size, events)
    return Prepared(splits, checks, quality, data_sha, data_path, task, labels, test,
                    Scoring(scorer, key_metric, other_metrics, name),
                    Models(resolved, tokenizer, experiment.trust_remote_code, experiment.allow_pickle))


def test_draw(experiment: Experiment, data_sha: str) -> str:
    """The identity of this run's test split draw, recorded with its look (`looks.draw_id`)."""
    return looks.draw_id(data_sha, {"split": list(experiment.split), "seed": experiment.seed,
                                    "max_rows": experiment.max_rows, "columns": experiment.columns,
                                    "fresh_test": experiment.fresh_test})


def _judged_elsewhere(experiment: Experiment, store: Store, root: Path) -> frozenset[str]:
    """For `fresh_test`: the row keys judged on test at looks of other draws (the same draw run
    again keeps out the same rows, so it draws the same fresh split). Empty otherwise."""
    if not experiment.fresh_test:
        return frozenset()
    source = data.given_splits(experiment.data, experiment.name, root)
    if isinstance(source, dict):
        raise SpecError(f"Experiment {experiment.name!r}: fresh_test draws the test split from one data file, but "
                        f"{experiment.data} holds splits; give a new test split instead, or a single data file")
    if isinstance(source, (str, Path)) and not (root / source).exists():
        return frozenset()  # prepare reports the missing file against the spec
    return ledger.judged_keys(store, experiment.name, other_than=test_draw(experiment, data.sha256_of(source, root)))


def _metrics_for(experiment: Experiment, task: str) -> tuple[metrics.Metric, list[metrics.Metric]]:
    """(the key metric, the other metrics): the experiment's, or macro-F1 / exact match by default."""
    name = experiment.metric
    if name not in metrics.KEY_METRICS:
        raise SpecError(f"Experiment {experiment.name!r}: metric {name!r} cannot be a key metric (it must be a mean "
                        f"of per-example scores); use one of {', '.join(sorted(metrics.KEY_METRICS))}")
    others = list(experiment.metrics) or (["macro_f1"] if task == "classification" else ["exact_match"])
    return metrics.load(name), [metrics.load(m) for m in others if m != name]
