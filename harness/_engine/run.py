"""The run of an experiment, one call per stage:

    prepare -> baselines, picked on val -> candidate -> final scoring on test -> gates -> record

`run_experiment` returns a `Result` (what user tests in the spec file see) and writes the
whole run to the store in one transaction; a run that fails is recorded as failed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness._engine import baselines, evaluate
from harness._engine.candidate import search, train_candidate
from harness._engine.evaluate import Approach
from harness._engine.events import Event, Events
from harness._engine.gating import Regression, judge, plan_power
from harness._engine.prepare import prepare
from harness._engine.record import record_run, run_facts
from harness.errors import HarnessError, SpecError
from harness.judge.outcomes import GateResult
from harness.spec.experiment import Experiment
from harness.store import RunRecord, Store


@dataclass
class Result:
    """Everything one run of an experiment produced; the `result` fixture returns this."""

    run_id: str
    experiment: str
    task: str
    metric: str
    baselines: dict[str, Approach]
    best_baseline: str
    candidate: Approach | None
    gates: dict[str, GateResult]
    checks: list
    curves: list[dict]
    split_sizes: dict[str, int]
    seconds: float
    events: list[Event] = field(default_factory=list)  # what the engine reported, in order (_engine/events.py)


def run_experiment(experiment: Experiment, store: Store, *, root: str | Path = ".",
                   log: Callable[[str], None] = print, work_dir: str | Path | None = None,
                   sweep: bool = False, sweep_storage: str | None = None,
                   on_event: Callable[[Event], None] | None = None) -> Result:
    """Run one experiment end to end and record it. Raises HarnessError for a user's mistake.

    sweep: run the experiment's Sweep first (its best trial becomes the candidate); without
    it a stored best trial of the same study is reused. log gets each progress line;
    on_event each Event as it happens (Result.events keeps them all)."""
    started = time.perf_counter()
    run_id = store.start_run(experiment.name, spec_file=experiment.spec_file, config=experiment.config())
    record, events = RunRecord(), Events(experiment.name, log, on_event)
    try:
        return _run(experiment, store, run_id, record, Path(root), events, work_dir, started, sweep, sweep_storage)
    except HarnessError as e:
        store.fail_run(run_id, str(e), record)
        raise
    except BaseException as e:  # a crash or Ctrl-C: the run is marked failed, nothing half-written
        store.fail_run(run_id, f"{type(e).__name__}: {e}", record)
        raise


def run_sweep(experiment: Experiment, store: Store, *, root: str | Path = ".", log: Callable[[str], None] = print,
              work_dir: str | Path | None = None, storage: str | None = None, trials: int | None = None,
              on_event: Callable[[Event], None] | None = None):
    """Only the experiment's sweep (as a worker of its study): no baselines, no test split, no run."""
    if experiment.sweep is None:
        raise SpecError(f"{experiment.name}: the spec declares no sweep; add sweep=Sweep(...) to the Experiment")
    events = Events(experiment.name, log, on_event)
    p = prepare(experiment, store, Path(root), RunRecord(), events)
    return search(experiment, store, p, Path(root), events, work_dir, storage, trials)


def _run(experiment: Experiment, store: Store, run_id: str, record: RunRecord, root: Path,
         events: Events, work_dir, started: float, sweep: bool, sweep_storage: str | None) -> Result:
    p = prepare(experiment, store, root, record, events)
    suite = Regression.declared(experiment, root)
    record.run_fields |= run_facts(experiment, p, root)

    # selection: train and validation only; the test split stays sealed
    prompt_baselines = baselines.declare(experiment, p, root, events)
    best, picked_on = baselines.pick_best(prompt_baselines, p.scoring, p.splits, events)
    planned = plan_power(experiment, p, best, picked_on, events, store)  # stops an underpowered experiment here
    if suite:  # scored before training, which wraps the base model in the adapter
        suite.score_base(p.scoring, p.models.base_id, p.models.base, events)
    contenders, candidate = list(prompt_baselines.contenders), None
    if experiment.candidate is not None:
        candidate = train_candidate(experiment, store, p, root, events, work_dir=work_dir, search_first=sweep,
                                    storage=sweep_storage)
        contenders.append(candidate.contender)
        if suite:
            suite.score_candidate(p.scoring, candidate.contender.model_id, candidate.contender.load_model)

    # final scoring: the test split is opened once, for what was already chosen
    test_rows = p.test.open("final scoring")
    prompt_baselines.embed_ahead(test_rows)
    evaluate.score_on_test(p.scoring, contenders, test_rows, events)

    verdicts = judge(experiment, p, best, picked_on, candidate, suite, planned, store=store, record=record)
    record_run(record, p, test_rows, contenders, best, candidate, suite, verdicts)
    store.finish_run(run_id, record)
    return Result(run_id, experiment.name, p.task, p.scoring.key_metric.name,
                  {a.name: a for a in prompt_baselines.approaches()}, best.name,
                  candidate.approach if candidate else None, verdicts, p.checks,
                  candidate.curves if candidate else [],
                  {"train": len(p.splits.train), "val": len(p.splits.val), "test": len(p.test)},
                  time.perf_counter() - started, events.events)
