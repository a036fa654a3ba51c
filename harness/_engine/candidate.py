"""The fine-tuned candidate of a run: the declared QLoRA spec or its sweep's best trial, its
adapter (reused from the adapter cache or trained, after a memory check), and the sweep itself."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from filelock import FileLock

from harness import models
from harness._engine import evaluate
from harness._engine import events as kinds
from harness._engine.evaluate import Approach, Contender
from harness._engine.events import Events
from harness._engine.prepare import Prepared
from harness._engine.scorer import Models, merges_for_scoring
from harness.candidate import estimate, sweep, train
from harness.errors import ModelError, SpecError
from harness.prompting import prompts
from harness.scoring import cache
from harness.spec.experiment import Experiment, QLoRA
from harness.store import Store


@dataclass
class Candidate:
    """The candidate as a contender (already scored on val) and its adapter."""

    contender: Contender
    trained: train.Trained

    @property
    def approach(self) -> Approach:
        return self.contender.approach

    @property
    def curves(self) -> list[dict]:
        return self.trained.curves


@dataclass
class _Inputs:
    """What a QLoRA spec trains on: its system prompt's text, a sample's messages, the train and val rows."""

    system_prompt: str | None
    messages: Callable
    train_rows: list[dict]
    val_rows: list[dict]


def train_candidate(experiment: Experiment, store: Store, p: Prepared, root: Path, events: Events, *,
                    work_dir, search_first: bool, storage: str | None) -> Candidate:
    """The candidate trained (or its adapter reused) and scored on val. The overfit gate reads the
    training curves alone, so no train row is scored again. search_first: run the sweep before
    taking its best trial."""
    name = experiment.name
    spec, lineage = _chosen_spec(experiment, store, p, root, events, work_dir, search_first, storage)
    inputs = _inputs(spec, root, p.splits)
    # named by what is trained, not by the run: a run killed mid-training and started
    # again finds its checkpoints there and resumes (harness.candidate.train)
    model, trained = _adapter(store, p.models, spec, inputs,
                              lambda key: work_folder(store, root, work_dir) / "train" / key[:16],
                              name, f"{name}: candidate", events)
    # The model just trained scores as it is where scoring would not merge its adapter (CUDA);
    # on CPU it is dropped, and scoring loads the adapter merged (models.with_adapter): faster.
    if model is not None and not merges_for_scoring(model):
        p.models.candidate = model
    model = None
    config = {**spec.config(), "system_prompt": inputs.system_prompt, "system_prompt_file": spec.system_prompt,
              "trainable_params": trained.trainable_params, "total_params": trained.total_params,
              "steps": trained.steps, "device": trained.device, "sweep": lineage}
    contender = Contender(Approach("candidate", "candidate", config, train_seconds=trained.seconds),
                          p.models.adapter_id(trained.adapter_sha256),
                          lambda: p.models.load_adapter(trained.adapter_path), inputs.messages)
    if p.splits.val:
        evaluate.score_split(p.scoring, contender, "val", p.splits.val)
    return Candidate(contender, trained)


def search(experiment: Experiment, store: Store, p: Prepared, root: Path, events: Events, work_dir,
           storage: str | None, trials: int | None = None):
    """Run the experiment's study (joining other workers); each trial trains on train and is
    scored on val, through the same adapter and output caches as the candidate."""
    name = experiment.name
    if not p.splits.val:
        raise SpecError(f"{name}: a sweep picks its winner on the validation split, and this experiment has none; "
                        f"give split=(train, val, test) with val > 0 or a 'val' file")
    study = study_name(experiment, p)
    url = sweep.storage_url(store.path, storage)
    events.emit(kinds.SWEEP_STUDY, f"{name}: sweep study {study!r} in {sweep.redacted(url)}", study=study,
                storage=sweep.redacted(url))

    def train_one(trial, spec) -> sweep.TrialResult:
        inputs = _inputs(spec, root, p.splits)
        out_dir = work_folder(store, root, work_dir) / "sweeps" / study / f"trial-{trial.number}"
        shutil.rmtree(out_dir, ignore_errors=True)  # a crashed earlier attempt of this trial number
        said = events.text(kinds.SWEEP_PROGRESS, study=study, trial=trial.number)
        pruning = sweep.pruning_callback(trial, said, f"{name}: trial #{trial.number}")
        model, trained = _adapter(store, p.models, spec, inputs, lambda key: out_dir, name,
                                  f"{name}: trial #{trial.number}", events, callbacks=[pruning],
                                  keep=lambda: pruning.pruned_at is None)
        facts = {"trial": trial.number, "params": trial.user_attrs.get("params"), "steps": trained.steps}
        if pruning.pruned_at is not None:
            events.emit(kinds.SWEEP_TRIAL, outcome="pruned", value=None, pruned_at=pruning.pruned_at, **facts)
            model = None
            p.models.release()
            shutil.rmtree(out_dir, ignore_errors=True)  # a pruned adapter is never used
            return sweep.TrialResult(None, True, curves=trained.curves, steps=trained.steps, seconds=trained.seconds)
        load = (lambda: model) if model is not None else (lambda: p.models.load_adapter(trained.adapter_path))
        approach = Approach(f"trial-{trial.number}", "candidate", {})
        evaluate.score_split(p.scoring, Contender(approach, p.models.adapter_id(trained.adapter_sha256), load,
                                                  inputs.messages),
                             "val", p.splits.val, what=f"trial #{trial.number} val")
        model = load = None  # drop the trained copy before the next trial loads its own
        p.models.release()
        value = approach.metrics["val"][p.scoring.key_metric.name]
        events.emit(kinds.SWEEP_TRIAL, outcome="complete", value=value, pruned_at=None, **facts)
        return sweep.TrialResult(value, False,
                                 val_metrics=approach.metrics["val"], curves=trained.curves, steps=trained.steps,
                                 seconds=trained.seconds, adapter_path=trained.adapter_path,
                                 adapter_sha256=trained.adapter_sha256)

    return sweep.run(experiment.sweep, experiment.candidate, name=study, experiment=name,
                     key_metric=p.scoring.key_metric.name, storage=sweep.open_storage(url), store=store,
                     train_one=train_one, log=events.text(kinds.SWEEP_PROGRESS, study=study), trials=trials)


def study_name(experiment: Experiment, p: Prepared) -> str:
    return sweep.study_name(experiment.name, experiment.sweep, experiment.candidate, p.models.resolved.sha256,
                            p.data_sha, json.dumps([list(experiment.split), experiment.seed]))


def work_folder(store: Store, root: Path, work_dir) -> Path:
    """Where adapters are trained: the given folder, else beside the store (or root/.harness)."""
    if work_dir is not None:
        return Path(work_dir)
    return Path(store.path).parent if store.path != ":memory:" else root / ".harness"


def _chosen_spec(experiment: Experiment, store: Store, p: Prepared, root: Path, events: Events,
                 work_dir, search_first: bool, storage: str | None) -> tuple[QLoRA, dict | None]:
    """(QLoRA spec, sweep lineage or None): the declared spec, or the best trial of its sweep."""
    if experiment.sweep is None:
        return experiment.candidate, None
    if search_first:
        search(experiment, store, p, root, events, work_dir, storage)
    study = study_name(experiment, p)
    best = sweep.best_trial(store, study)
    if best is None:
        events.emit(kinds.CANDIDATE_CHOSEN, f"{experiment.name}: no complete trial of sweep study {study!r} in the "
                    f"store; the candidate is the QLoRA spec as declared (run `pytest --harness-sweep` or `harness sweep` to "
                    f"search)", source="declared", study=study, trial=None, value=None, params=None)
        return experiment.candidate, None
    spec = QLoRA(**{**experiment.candidate.config(), **best.params})
    events.emit(kinds.CANDIDATE_CHOSEN, f"{experiment.name}: candidate = best sweep trial #{best.number} of "
                f"{study!r} ({p.scoring.key_metric.name} {best.value:.4f} on val): {sweep.describe(best.params)}",
                source="sweep", study=study, trial=best.number, value=best.value, params=best.params)
    return spec, {"study": study, "trial": best.number, "params": best.params, "value": best.value}


def _inputs(spec: QLoRA, root: Path, splits) -> _Inputs:
    system = Path(root / spec.system_prompt).read_text(encoding="utf-8").strip() if spec.system_prompt else None
    messages = lambda s: prompts.candidate_messages(s, system)
    to_rows = lambda rows: [train.conversation(messages(s), s.answer) for s in rows]
    return _Inputs(system, messages, to_rows(splits.train), to_rows(splits.val))


def _adapter(store: Store, loaded: Models, spec: QLoRA, inputs: _Inputs, out_dir: Callable[[str], Path], name: str,
             who: str, events: Events, callbacks: list = (), keep: Callable[[], bool] = lambda: True):
    """(the trained peft model, or None when reused; Trained): the cached adapter for this base,
    config and data if its files are intact, else trained now into out_dir(adapter key) and
    cached unless `keep()` says otherwise (a pruned sweep trial)."""
    adapter_key = cache.adapter_key(loaded.resolved.sha256, spec.config(), inputs.train_rows, inputs.val_rows)
    folder = out_dir(adapter_key)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Two runs with the same base, config and data (pytest -n 4 over similar specs) would train
    # into the same folder and tear each other's files: one trains, the other waits and reuses it.
    with FileLock(str(folder) + ".lock"):
        hit = store.cached_adapter(adapter_key)
        if cache.usable_adapter(hit):
            events.emit(kinds.CANDIDATE_CACHED, f"{who} adapter reused from the cache ({hit['adapter_path']}); same "
                        f"base, config and data", who=who, adapter_path=hit["adapter_path"],
                        adapter_sha256=hit["adapter_sha256"])
            return None, train.Trained(hit["adapter_path"], hit["adapter_sha256"], **hit["result"])
        _check_memory(name, who, loaded, spec, inputs.train_rows, events)
        model, trained = train.train(loaded.for_training(), loaded.tokenizer, spec, inputs.train_rows,
                                     inputs.val_rows, folder, log=events.text(kinds.TRAINING_PROGRESS, who=who),
                                     name=who, callbacks=callbacks)
        events.emit(kinds.CANDIDATE_TRAINED, who=who, steps=trained.steps, seconds=trained.seconds,
                    device=trained.device, trainable_params=trained.trainable_params,
                    total_params=trained.total_params, adapter_sha256=trained.adapter_sha256)
        if keep():
            store.cache_adapter(adapter_key, trained.adapter_path, trained.adapter_sha256, trained.summary())
    return model, trained


def _check_memory(name: str, who: str, loaded: Models, spec: QLoRA, train_rows: list[dict], events: Events) -> None:
    """Fail before training, with the estimated need and what is free, when the step cannot fit."""
    tokenizer, dev = loaded.tokenizer, models.device()
    longest = max(len(tokenizer(tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=False),
                                add_special_tokens=False)["input_ids"]) for r in train_rows)
    seq_len = min(longest, spec.max_length)
    need = estimate.estimate(loaded.resolved.path, "qlora", spec.batch_size, seq_len, r=spec.r,
                             target_modules=spec.target_modules, compute_dtype="bf16" if dev == "cuda" else "fp32",
                             gradient_checkpointing=bool(spec.gradient_checkpointing if spec.gradient_checkpointing
                                                         is not None else dev == "cuda"),
                             lora_dropout=spec.dropout, device=dev)
    free = estimate.available_memory(dev)
    problem = estimate.check_fits(need, free, dev)
    if problem:
        raise ModelError(f"{name}: not training: {problem}")
    events.emit(kinds.MEMORY_CHECKED, f"{name}: memory estimate for training {need.total / 2**30:.1f} GiB (batch "
                f"{spec.batch_size} x {seq_len} tokens) fits the {free / 2**30:.1f} GiB free on {dev}", who=who,
                need_bytes=need.total, free_bytes=free, device=dev, batch_size=spec.batch_size, seq_len=seq_len)
