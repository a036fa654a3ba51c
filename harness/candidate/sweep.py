"""Hyperparameter sweeps: an Optuna study over the candidate's QLoRA settings.

The harness drives the study itself (trl's SFTTrainer takes no `model_init`, so
`Trainer.hyperparameter_search` cannot vary the LoRA rank): a TPE sampler proposes settings,
the pipeline trains and scores each on the validation split, and a pruner fed the validation
loss at every evaluation stops trials that trail. Through Optuna's public API only, so that
optuna-dashboard and any Optuna tool read the study as their users expect (docs/sweeps.md):

  - the objective is named after the key metric (`set_metric_names`), maximized;
  - intermediate values are the validation loss itself, lower is better (the pruner is shown
    the study as a minimization: `LossPruner`);
  - each trial's TPE is seeded from the sweep's seed and the trial's number, with
    `constant_liar`: workers that start together get different trials (one seed per process
    would have them propose the same ones), and one worker reruns the same sequence.

Storage is Optuna's, so studies resume and several workers can share one:
  - by default a journal file next to the DuckDB store (safe for several processes on one
    machine; a trial whose worker process died is marked failed by the next worker);
  - `postgresql://...` (any SQLAlchemy URL) for workers on several machines, with Optuna's
    heartbeat: a worker that stops beating has its trial marked failed.
Every finished trial is mirrored into the DuckDB store with what it produced (user
attributes carry it, so any worker can mirror any trial exactly once).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Callable

from harness.errors import SpecError
from harness.spec.experiment import QLoRA, Sweep
from harness.store import workers
from harness.store.db import best_of_trials
from harness.store.record import Trial

JOURNAL_NAME = "optuna-journal.log"
HEARTBEAT_SECONDS = 30  # a remote worker silent for GRACE_SECONDS has its trial failed
GRACE_SECONDS = 120
WAIT_SECONDS = 5  # how often a worker with nothing to start checks on others' running trials
PRUNE_STEP_ATTR = "pruned_at_step"
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class TrialResult:
    """What training and scoring one trial produced (kept as Optuna user attributes)."""

    value: float | None  # key metric on the validation split; None when pruned
    pruned: bool
    val_metrics: dict = field(default_factory=dict)
    curves: list[dict] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    adapter_path: str | None = None
    adapter_sha256: str | None = None


def study_name(experiment_name: str, sweep: Sweep, candidate: QLoRA, *hashes: str) -> str:
    """The experiment's name and a hash of everything that makes trials comparable: a changed
    search space, base config, model or data starts a new study; the same one resumes."""
    what = json.dumps([sweep.config(), candidate.config(), *hashes], sort_keys=True, default=str)
    return f"{experiment_name}-{hashlib.sha256(what.encode()).hexdigest()[:12]}"


def storage_url(store_path: str, storage: str | None) -> str:
    """The Optuna storage: an explicit URL, else a journal file beside the DuckDB store."""
    if storage:
        return storage
    if store_path == ":memory:":
        raise SpecError("a sweep needs a store on disk (its journal lives beside it) or --harness-sweep-storage URL")
    return str(Path(store_path).parent / JOURNAL_NAME)


def open_storage(url: str):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if "://" in url:
        return _open_rdb(url)
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(url, lock_obj=JournalFileOpenLock(url)))


def _open_rdb(url: str, attempts: int = 5):
    """Optuna's RDB storage with a heartbeat. Workers starting together race to create its
    tables; the loser sees a duplicate-key error and simply retries against the tables the
    winner made."""
    import warnings

    import optuna

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
                return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS,
                                                  grace_period=GRACE_SECONDS, engine_kwargs={"pool_pre_ping": True})
        except ImportError as e:
            raise SpecError(f"sweep storage {redacted(url)} needs a database driver: {e}; "
                            f"install finetune-harness[postgres]") from e
        except Exception as e:
            if attempt == attempts - 1:
                raise SpecError(f"sweep storage {redacted(url)} cannot be opened: "
                                f"{str(e).splitlines()[0]}") from e
            time.sleep(0.5 * (attempt + 1))


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        if ":" in credentials:
            return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
    return url


def _pruner(sweep: Sweep):
    import optuna

    if sweep.pruner in (None, "none"):
        return optuna.pruners.NopPruner()
    if sweep.pruner == "median":
        # Two full trials set the bar; every evaluation after that can stop a trailing trial.
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return sweep.pruner


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial `number`'s sampler: distinct per trial, the same on every rerun."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{number}".encode()).digest()[:4], "big")


def _sampler(sweep: Sweep):
    import optuna

    class PerTrialTPE(optuna.samplers.BaseSampler):
        """TPE, seeded afresh for each trial by `trial_seed`, with the constant liar (a running
        trial counts as a poor one, so parallel workers spread out instead of piling onto the
        same region). Everything else is TPE's own."""

        def __init__(self):
            self._tpe = self._seeded(sweep.seed)

        @staticmethod
        def _seeded(seed: int):
            # TPE starts from random proposals; Optuna's default of 10 would leave a small budget all random.
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, sweep.trials // 2)),
                                              constant_liar=True)

        def before_trial(self, study, trial):
            self._tpe = self._seeded(trial_seed(sweep.seed, trial.number))
            self._tpe.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self._tpe.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._tpe.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._tpe.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values):
            self._tpe.after_trial(study, trial, state, values)

        def reseed_rng(self):
            self._tpe.reseed_rng()

    return PerTrialTPE()


def load_study(name: str, storage, sweep: Sweep, metric: str | None = None):
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # constant_liar, set_metric_names
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                    sampler=_sampler(sweep), pruner=loss_pruner(_pruner(sweep)))
        if metric and study.metric_names != [metric]:
            study.set_metric_names([metric])
    return study


@lru_cache(maxsize=1)
def _loss_pruner_class():
    import copy

    import optuna
    from optuna.study import StudyDirection

    class LossView:
        """The study as a pruner should see it: its intermediate values are validation losses,
        which fall as a trial improves, so the direction is "minimize" (the objective, the key
        metric, is maximized). Trials written before intermediate values were the loss itself
        hold it negated; a loss is never negative, so those are read back as losses."""

        direction = StudyDirection.MINIMIZE
        directions = [StudyDirection.MINIMIZE]

        def __init__(self, study):
            self._study = study

        def __getattr__(self, name):
            return getattr(self._study, name)

        def get_trials(self, deepcopy: bool = True, states=None):
            return [_as_loss(t) for t in self._study.get_trials(deepcopy=deepcopy, states=states)]

    def _as_loss(trial):
        if not any(v < 0 for v in trial.intermediate_values.values()):
            return trial
        trial = copy.copy(trial)
        trial.intermediate_values = {step: -v for step, v in trial.intermediate_values.items()}
        return trial

    class LossPruner(optuna.pruners.BasePruner):
        """Any Optuna pruner, judging the validation losses as losses (see `LossView`)."""

        def __init__(self, inner):
            self.inner = inner

        def prune(self, study, trial) -> bool:
            return self.inner.prune(LossView(study), _as_loss(trial))

    return LossPruner


def loss_pruner(inner):
    """`inner` (any Optuna pruner) as a `LossPruner`; the class is built on first use, so that
    importing this module needs no optuna."""
    return _loss_pruner_class()(inner)


def fail_dead_trials(study) -> list[int]:
    """Mark failed the running trials whose worker on this host no longer exists.

    The journal file has no heartbeat, so this is how a killed worker's trial stops looking
    alive. Remote workers' trials are left to the RDB storage's heartbeat."""
    from optuna.trial import TrialState

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker", "")
        if workers.died(owner):
            # a study attribute, since a finished trial's own attributes are closed to others
            study.set_user_attr(_error_key(trial.number), f"worker {owner} died mid-trial")
            done = study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            if done.state == TrialState.FAIL:  # else another worker got there first, and it is failed either way
                failed.append(trial.number)
    return failed


def _error_key(number: int) -> str:
    return f"trial {number} error"


def _count(study, *states: str) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=tuple(TrialState[s] for s in states)))


def pruning_callback(trial, log: Callable[[str], None], name: str):
    """A TrainerCallback that reports each validation loss to the trial (as it is: the study's
    pruner, a `LossPruner`, reads it as a loss) and stops training when the pruner says so."""
    from transformers import TrainerCallback

    class Pruning(TrainerCallback):
        pruned_at = None

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if not metrics or "eval_loss" not in metrics or state.global_step == 0:
                return  # step 0 is the same base model for every trial: nothing to compare
            trial.report(metrics["eval_loss"], state.global_step)
            if trial.should_prune():
                self.pruned_at = state.global_step
                control.should_training_stop = True
                log(f"{name}: pruned at step {state.global_step} (val loss {metrics['eval_loss']:.4f} trails "
                    f"the other trials at this step)")

    return Pruning()


def _trial_row(study_name_: str, experiment: str, key_metric: str, trial, study_attrs: dict) -> dict:
    attrs = trial.user_attrs
    return {"study": study_name_, "experiment": experiment, "number": trial.number, "state": trial.state.name,
            "params": attrs.get("params", trial.params), "key_metric": key_metric,
            "value": trial.value if trial.state.name == "COMPLETE" else None,
            "val_metrics": attrs.get("val_metrics"), "curves": attrs.get("curves"), "steps": attrs.get("steps"),
            "adapter_path": attrs.get("adapter_path"), "adapter_sha256": attrs.get("adapter_sha256"),
            "seconds": attrs.get("seconds"), "worker": attrs.get("worker"),
            "started_at": _utc(trial.datetime_start), "finished_at": _utc(trial.datetime_complete),
            "error": attrs.get("error") or study_attrs.get(_error_key(trial.number))}


def _utc(when: datetime | None) -> datetime | None:
    """Optuna keeps naive local times; the store keeps naive UTC."""
    if when is None:
        return None
    return when.astimezone(timezone.utc).replace(tzinfo=None)


def mirror(store, study, experiment: str, key_metric: str) -> int:
    """Upsert every finished trial of the study into the DuckDB store; returns how many."""
    attrs = study.user_attrs
    rows = [_trial_row(study.study_name, experiment, key_metric, t, attrs) for t in study.get_trials(deepcopy=False)
            if t.state.name in FINISHED]
    store.record_trials(rows)
    return len(rows)


def run(sweep: Sweep, candidate: QLoRA, *, name: str, experiment: str, key_metric: str, storage, store,
        train_one: Callable[[object, QLoRA], TrialResult], log: Callable[[str], None] = print,
        trials: int | None = None) -> object:
    """Run trials until the study holds `trials` complete or pruned ones (joining any workers
    already at it); returns the study. `train_one(trial, spec)` trains and scores one setting."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the harness logs each trial itself
    budget = trials or sweep.trials
    study = load_study(name, storage, sweep, key_metric)
    mirror(store, study, experiment, key_metric)

    def objective(trial) -> float:
        trial.set_user_attr("worker", workers.worker_id())
        params = sweep.suggest(trial)
        try:
            spec = QLoRA(**{**candidate.config(), **params})
        except SpecError as e:
            raise SpecError(f"{experiment}: sweep trial #{trial.number} proposed {params}: {e}") from e
        trial.set_user_attr("params", params)
        done = _count(study, "COMPLETE", "PRUNED")
        log(f"{experiment}: sweep trial #{trial.number} ({done + 1} of {budget}): {describe(params)}")
        started = time.perf_counter()
        try:
            result = train_one(trial, spec)
        except Exception as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
            trial.set_user_attr("seconds", time.perf_counter() - started)
            raise
        for key, value in (("val_metrics", result.val_metrics), ("curves", result.curves), ("steps", result.steps),
                           ("seconds", result.seconds or time.perf_counter() - started),
                           ("adapter_path", result.adapter_path), ("adapter_sha256", result.adapter_sha256)):
            trial.set_user_attr(key, value)
        if result.pruned:
            raise optuna.TrialPruned()
        return result.value

    def after(study_, trial) -> None:
        mirror_one = _trial_row(study_.study_name, experiment, key_metric, trial, study_.user_attrs)
        store.record_trials([mirror_one])
        if trial.state == TrialState.COMPLETE:
            log(f"{experiment}: sweep trial #{trial.number} complete: {key_metric} {trial.value:.4f} on val "
                f"(best so far #{study_.best_trial.number}, {study_.best_value:.4f})")
        elif trial.state == TrialState.PRUNED:
            log(f"{experiment}: sweep trial #{trial.number} pruned after {trial.user_attrs.get('steps')} steps")

    while True:
        for number in fail_dead_trials(study):
            log(f"{experiment}: sweep trial #{number} was left running by a worker that died; marked failed")
        done, running = _count(study, "COMPLETE", "PRUNED"), _count(study, "RUNNING")
        if done >= budget:
            break
        if done + running >= budget:  # others are finishing the budget; wait in case one of them dies
            time.sleep(WAIT_SECONDS)
            if _is_rdb(storage):
                optuna.storages.fail_stale_trials(study)
            continue
        try:
            study.optimize(objective, n_trials=1, callbacks=[after], catch=())
        except Exception:
            mirror(store, study, experiment, key_metric)  # the failed trial is recorded before the error surfaces
            raise
    mirror(store, study, experiment, key_metric)
    return study


def _is_rdb(storage) -> bool:
    import optuna

    return isinstance(storage, optuna.storages.RDBStorage)


def best_trial(store, study: str) -> Trial | None:
    """The stored trial with the best validation value (the earliest among equals)."""
    return best_of_trials(store.trials(study=study))


def describe(params: dict, sep: str = ", ") -> str:
    """A trial's settings in one line: r=16, learning_rate=0.000256, epochs=2."""
    return sep.join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
