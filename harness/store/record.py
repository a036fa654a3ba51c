"""The typed record at the store boundary: what a run wrote, as its readers see it.

The report, the decider, pricing, export and the CLI read these and nothing else; the store
builds them from its rows after `upgrade` has brought rows written by an older harness to
today's shape, so no reader knows two shapes of one thing. Gates are `judge.outcomes.GateResult`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from harness.judge.outcomes import GateResult

# approach -> split -> metric -> value
MetricTable = dict[str, dict[str, dict[str, float]]]


def _from_row(cls, row: dict):
    return cls(**{f.name: row.get(f.name) for f in fields(cls) if f.name in row})


@dataclass(frozen=True)
class Run:
    """One row of `runs`: an experiment's run, its inputs' hashes and its status."""

    run_id: str
    experiment: str
    status: str                          # running | complete | failed
    started_at: datetime
    spec_file: str | None = None
    finished_at: datetime | None = None
    error: str | None = None
    task: str | None = None              # the scoring mode: classification | generation
    key_metric: str | None = None
    model: str | None = None
    model_sha256: str | None = None
    data_path: str | None = None
    data_sha256: str | None = None
    test_sha256: str | None = None
    config: dict = field(default_factory=dict)       # the spec as declared
    provenance: dict = field(default_factory=dict)   # git commit, versions, hardware, seeds
    worker: str | None = None
    best_baseline: str | None = None     # the baseline the engine gated the candidate against

    from_row = classmethod(_from_row)


@dataclass(frozen=True)
class ApproachRecord:
    """One approach of a run (a baseline, a calibrated twin or the candidate) and its costs."""

    run_id: str
    name: str
    kind: str                            # baseline | candidate
    config: dict = field(default_factory=dict)
    prompt_tokens: float | None = None
    generated_tokens: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    train_seconds: float | None = None
    adapter_path: str | None = None
    adapter_sha256: str | None = None

    @classmethod
    def from_row(cls, row: dict) -> ApproachRecord:
        return _from_row(cls, {**row, "name": row["approach"]})


@dataclass(frozen=True)
class CurvePoint:
    """One loss measurement of a training run."""

    approach: str
    step: int
    epoch: float | None
    split: str                           # train | val
    loss: float | None

    from_row = classmethod(_from_row)


@dataclass(frozen=True)
class Trial:
    """One finished trial of a hyperparameter sweep, as mirrored from its Optuna study."""

    study: str
    experiment: str
    number: int
    state: str                           # COMPLETE | PRUNED | FAIL
    params: dict = field(default_factory=dict)
    key_metric: str | None = None
    value: float | None = None           # the objective: the key metric on validation
    val_metrics: dict = field(default_factory=dict)
    curves: list = field(default_factory=list)        # [{step, epoch, split, loss}]
    steps: int | None = None
    adapter_path: str | None = None
    adapter_sha256: str | None = None
    seconds: float | None = None
    worker: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None

    from_row = classmethod(_from_row)


@dataclass(frozen=True)
class StoredRun:
    """A run with what its readers look at: metrics, gates, approaches; and, when asked for
    (`Store.with_detail`), its checks, loss curves and test predictions."""

    run: Run
    metrics: MetricTable
    gates: list[GateResult]
    approaches: list[ApproachRecord]
    checks: list[dict] = field(default_factory=list)          # {name, level, message, lines}
    curves: list[CurvePoint] = field(default_factory=list)
    predictions: list[dict] = field(default_factory=list)     # the test split's, in row order

    def gate(self, name: str) -> GateResult | None:
        return next((g for g in self.gates if g.gate == name), None)

    def approach(self, name: str | None) -> ApproachRecord | None:
        return next((a for a in self.approaches if a.name == name), None)

    @property
    def candidate(self) -> ApproachRecord | None:
        return next((a for a in self.approaches if a.kind == "candidate"), None)

    def score(self, approach: str | None, split: str = "test", metric: str | None = None) -> Any:
        """The approach's value of `metric` (the key metric by default) on `split`, or None."""
        metric = metric or self.run.key_metric
        if approach is None or metric is None:
            return None
        return self.metrics.get(approach, {}).get(split, {}).get(metric)
