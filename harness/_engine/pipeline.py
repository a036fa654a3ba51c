"""The one place that wires an experiment together:

    spec -> data -> baselines / candidate -> predictions -> metrics -> gates -> store

`run_experiment` returns a `Result` (what user tests in the spec file see) and writes the
whole run to the store in one transaction; a run that fails is recorded as failed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness import data as data_mod
from harness.data.sealed import SealedSplit
from harness.errors import DataError, HarnessError, ModelError, SpecError
from harness.judge import gates, regression, stats
from harness.judge.outcomes import FAIL, SKIP, GateResult
from harness.prompting import calibration, prompts, retrieval, shots
from harness.scoring import batched as scoring
from harness.scoring import cache, metrics
from harness.scoring.scored import Scored
from harness.scoring.separation import separation
from harness.spec.baselines import expand as expand_baselines
from harness.spec.experiment import Experiment
from harness.store import RunRecord, Store

TRAIN_SCORE_ROWS = 200  # rows of train scored for the overfit gate's train-vs-test gap
AGREEMENT_ROWS = 64  # test rows each approach also answers by greedy generation (classification)


@dataclass
class Approach:
    """One way of solving the task (a prompt baseline or the fine-tuned candidate) and how it did."""

    name: str
    kind: str  # baseline | candidate
    config: dict
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> metric -> value
    predictions: dict[str, list[str]] = field(default_factory=dict)     # split -> outputs
    scores: dict[str, list[float]] = field(default_factory=dict)        # split -> per-example key metric
    prompt_tokens: float = 0.0
    generated_tokens: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    train_seconds: float | None = None
    latencies: dict[str, list[float]] = field(default_factory=dict, repr=False)
    prompt_token_counts: dict[str, list[int]] = field(default_factory=dict, repr=False)
    generated_token_counts: dict[str, list[int]] = field(default_factory=dict, repr=False)
    # split -> the last user message as sent, where the prompt added to the row's input (retrieved passages)
    inputs: dict[str, list[str]] = field(default_factory=dict, repr=False)


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


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(root: Path, experiment: Experiment) -> dict:
    import importlib.metadata as md

    versions = {}
    for lib in ("harness", "torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "evaluate", "duckdb"):
        try:
            versions[lib] = md.version(lib)
        except md.PackageNotFoundError:
            pass
    import torch

    hardware = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                "device": "cuda" if torch.cuda.is_available() else "cpu"}
    if torch.cuda.is_available():
        hardware["gpu"] = torch.cuda.get_device_name(0)
    return {"git_commit": _git_commit(root), "versions": versions, "hardware": hardware,
            "seeds": {"split": experiment.seed, "train": experiment.candidate.seed if experiment.candidate else None,
                      "bootstrap": experiment.seed}}


def _load_data(experiment: Experiment, root: Path):
    """(all samples, splits, checks, sha256, path) for a single file or a dict of split files."""
    paths = experiment.data.values() if isinstance(experiment.data, dict) else [experiment.data]
    for path in paths:
        if not (root / path).is_file():
            raise DataError(f"{experiment.name}: data file {path} not found; check the path in the spec "
                            f"(paths are relative to the project root, {root})")
    if isinstance(experiment.data, dict):
        loaded = {k: data_mod.load(root / v, max_rows=experiment.max_rows, columns=experiment.columns)
                  for k, v in experiment.data.items()}
        checks = [c for d in loaded.values() for c in d.checks]
        samples = [s for d in loaded.values() for s in d.samples]
        splits = data_mod.Splits(loaded["train"].samples, loaded["val"].samples if "val" in loaded else [],
                                 loaded["test"].samples, data_mod.content_hash(loaded["test"].samples))
        sha = hashlib.sha256("".join(d.sha256 for d in loaded.values()).encode()).hexdigest()
        return samples, splits, checks, sha, str(experiment.data), loaded["train"]
    dataset = data_mod.load(root / experiment.data, max_rows=experiment.max_rows, columns=experiment.columns)
    return dataset.samples, None, dataset.checks, dataset.sha256, str(experiment.data), dataset


def _key_metric(experiment: Experiment, task: str):
    name = experiment.metric
    if name not in metrics.KEY_METRICS:
        raise SpecError(f"Experiment {experiment.name!r}: metric {name!r} cannot be a key metric (it must be a mean "
                        f"of per-example scores); use one of {', '.join(sorted(metrics.KEY_METRICS))}")
    extra = list(experiment.metrics) or (["macro_f1"] if task == "classification" else ["exact_match"])
    return metrics.load(name), [metrics.load(m) for m in extra if m != name]


class _Scorer:
    """Scores prompts with one model, through the output cache: label likelihoods for
    classification, generation otherwise. The model is loaded only if something is missing."""

    def __init__(self, store: Store, tokenizer, task: str, labels: list[str], max_new_tokens: int,
                 batch_size: int, log: Callable[[str], None]):
        self.store, self.tokenizer, self.task, self.labels = store, tokenizer, task, labels
        self.max_new_tokens, self.batch_size, self.log = max_new_tokens, batch_size, log

    def __call__(self, model_id: str, get_model: Callable[[], object], message_lists: list[list[dict]],
                 what: str) -> Scored:
        """The task's own scoring: label likelihoods for classification, generation otherwise."""
        if self.task == "classification":
            return self.raw(model_id, get_model, self._render(message_lists), self.labels, what, template=True)
        return self.generate(model_id, get_model, message_lists, self.max_new_tokens, what)

    def raw(self, model_id: str, get_model: Callable[[], object], texts: list[str], labels: list[str],
            what: str, template: bool = False) -> Scored:
        """Label scoring of prompts as given (e.g. a multiple-choice suite, template=False, or
        chat-rendered prompts); `template` only keeps the two apart in the cache."""
        def score(model, prompts):
            self.tokenizer.padding_side = "left"
            return scoring.score_labels(model, self.tokenizer, prompts, labels, batch_size=self.batch_size,
                                        progress=self._progress(what, len(prompts)))

        decoding = {"labels": labels} if template else {"labels": labels, "template": "none"}
        return self._cached(model_id, get_model, score, texts, decoding, what)

    def generate(self, model_id: str, get_model: Callable[[], object], message_lists: list[list[dict]],
                 max_new_tokens: int, what: str) -> Scored:
        """Greedy generation, batched; also what label scoring's agreement check compares with."""
        def score(model, prompts):
            self.tokenizer.padding_side = "left"
            return scoring.generate(model, self.tokenizer, prompts, max_new_tokens=max_new_tokens,
                                    batch_size=self.batch_size, progress=self._progress(what, len(prompts)))

        return self._cached(model_id, get_model, score, self._render(message_lists),
                            {"greedy": True, "max_new_tokens": max_new_tokens}, what)

    def references(self, model_id: str, get_model: Callable[[], object], message_lists: list[list[dict]],
                   references: list[str], what: str) -> tuple[list[float], list[int]]:
        """Each reference answer's log-likelihood after its prompt and its token count, cached.
        (The cache row keeps the log-likelihood among its label scores and the count as tokens.)"""
        pairs = list(zip(self._render(message_lists), references))
        keys = [f"{prompt}\x1f{ref}" for prompt, ref in pairs]
        keyed = dict(zip(keys, pairs))

        def score(model, wanted):
            self.tokenizer.padding_side = "left"
            todo = [keyed[k] for k in wanted]
            loglik, counts = scoring.score_continuations(model, self.tokenizer, [a for a, _ in todo],
                                                         [b for _, b in todo], batch_size=self.batch_size,
                                                         progress=self._progress(what, len(todo)))
            return Scored([""] * len(todo), [0.0] * len(todo), counts,
                                  label_logprobs=[{"reference": ll} for ll in loglik], generated_tokens=counts)

        scored = self._cached(model_id, get_model, score, keys, {"reference_loglik": True}, what)
        return [lp["reference"] for lp in scored.label_logprobs], scored.generated_tokens

    def _render(self, message_lists: list[list[dict]]) -> list[str]:
        return [scoring.render(self.tokenizer, m) for m in message_lists]

    def _cached(self, model_id: str, get_model: Callable[[], object], score: Callable, prompts: list[str],
                decoding: dict, what: str) -> Scored:
        """Outputs from the cache where there, the model (loaded only then) for the rest."""
        scored, computed = cache.cached_score(self.store, model_id, get_model, score, prompts, decoding)
        if computed < len(prompts):
            self.log(f"{what}: {len(prompts) - computed} of {len(prompts)} outputs from the cache")
        return scored

    def _progress(self, what: str, total: int):
        step = max(1, total // 4)

        def progress(done, total):
            if done == total or done % step < self.batch_size:
                self.log(f"{what}: {done}/{total}")

        return progress


class _Models:
    """The pristine base model and the candidate, loaded lazily.

    peft attaches adapters in place, to the very model it is given, so training and
    adapter loading each get their own fresh copy: the base that scores the prompt
    baselines never carries an adapter.
    """

    def __init__(self, resolved, trust_remote_code: bool, allow_pickle: bool = False):
        self.resolved, self.trust_remote_code, self.allow_pickle = resolved, trust_remote_code, allow_pickle
        self._base = None
        self.candidate = None

    def _load(self):
        from harness import models

        return models.load_model(self.resolved, quantize=True, trust_remote_code=self.trust_remote_code,
                                 allow_pickle=self.allow_pickle)

    def base(self):
        if self._base is None:
            self._base = self._load()
        return self._base

    def for_training(self):
        """A copy to attach the adapter to; the scoring copy is released first to bound memory."""
        self._release_base()
        return self._load()

    def load_adapter(self, adapter_path: str):
        from peft import PeftModel

        if self.candidate is None:
            self._release_base()
            self.candidate = PeftModel.from_pretrained(self._load(), adapter_path).eval()
        return self.candidate

    def release(self) -> None:
        """Drop every loaded copy (between sweep trials, so the next one has the memory)."""
        self.candidate = None
        self._release_base()

    def _release_base(self) -> None:
        import gc

        import torch

        self._base = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _named(metric: str, extra: dict) -> dict:
    """Side aggregates keyed so they cannot clash: rouge1 stays, bertscore's precision is bertscore_precision."""
    return {k if k.lower().startswith(metric[:5]) else f"{metric}_{k}": v for k, v in extra.items()}


def run_experiment(experiment: Experiment, store: Store, *, root: str | Path = ".",
                   log: Callable[[str], None] = print, work_dir: str | Path | None = None,
                   sweep: bool = False, sweep_storage: str | None = None) -> Result:
    """Run one experiment end to end and record it. Raises HarnessError for a user's mistake.

    sweep: run the experiment's Sweep first (its best trial becomes the candidate); without
    it a stored best trial of the same study is reused."""
    root = Path(root)
    started = time.perf_counter()
    run_id = store.start_run(experiment.name, spec_file=experiment.spec_file, config=experiment.config())
    record = RunRecord()
    try:
        result = _run(experiment, store, run_id, record, root, log, work_dir, started, sweep, sweep_storage)
    except HarnessError as e:
        store.fail_run(run_id, str(e), record)
        raise
    except BaseException as e:  # a crash or Ctrl-C: the run is marked failed, nothing half-written
        store.fail_run(run_id, f"{type(e).__name__}: {e}", record)
        raise
    return result


def run_sweep(experiment: Experiment, store: Store, *, root: str | Path = ".", log: Callable[[str], None] = print,
              work_dir: str | Path | None = None, storage: str | None = None, trials: int | None = None):
    """Only the experiment's sweep (as a worker of its study): no baselines, no test split, no run."""
    if experiment.sweep is None:
        raise SpecError(f"{experiment.name}: the spec declares no sweep; add sweep=Sweep(...) to the Experiment")
    p = _prepare(experiment, store, Path(root), RunRecord(), log)
    return _sweep(experiment, store, p, Path(root), work_dir, storage, log, trials)


@dataclass
class _Prepared:
    """What every path through an experiment needs first: checked data, splits, model, scorer."""

    splits: data_mod.Splits
    checks: list
    quality: GateResult
    data_sha: str
    data_path: str
    task: str
    labels: list[str]
    test: SealedSplit
    key: object
    extra: list
    resolved: object
    tokenizer: object
    scorer: _Scorer
    loaded: _Models
    base_id: str


def _prepare(experiment: Experiment, store: Store, root: Path, record: RunRecord, log: Callable[[str], None]):
    from harness import models

    name = experiment.name
    samples, splits, checks, data_sha, data_path, _ = _load_data(experiment, root)
    record.run_fields.update({"data_path": data_path, "data_sha256": data_sha})  # kept even if the run fails
    task = experiment.task or data_mod.infer_task(samples)
    if not isinstance(experiment.data, dict):
        checks = checks + data_mod.quality_checks(data_mod.Dataset(data_path, "", samples, data_sha), task)
    if splits is None and not any(c.level == "error" for c in checks):
        splits = data_mod.split(samples, experiment.split, seed=experiment.seed, stratify=task == "classification")
    if splits is not None:
        checks = checks + data_mod.leakage_checks(splits)
    record.checks = [{"name": c.name, "level": c.level, "message": c.message, "lines": c.lines[:1000]}
                     for c in checks]
    quality = gates.data_quality(checks)
    if quality.outcome == FAIL:
        raise DataError(f"{name}: data file {data_path}: {quality.message}")
    labels = data_mod.labels(splits.train) if task == "classification" else []
    if task == "classification":
        unseen = sorted({s.answer.strip() for s in splits.test + splits.val} - set(labels))
        if unseen:
            raise DataError(f"{name}: labels {unseen} appear in val/test but never in train; add train rows for them")
    test = SealedSplit(splits.test, splits.test_sha256)
    key, extra = _key_metric(experiment, task)
    log(f"{name}: {task}, {len(splits.train)} train / {len(splits.val)} val / {len(test)} test rows; "
        f"key metric {key.name}")
    resolved = models.resolve(experiment.model)
    tokenizer = models.load_tokenizer(resolved, trust_remote_code=experiment.trust_remote_code)
    max_new = 16
    if task == "generation":
        longest = max(len(tokenizer(s.answer, add_special_tokens=False)["input_ids"]) for s in splits.train + splits.val)
        max_new = longest + 8  # room for a slightly longer answer than any seen, no more
    scorer = _Scorer(store, tokenizer, task, labels, max_new, experiment.eval_batch_size, log)
    return _Prepared(splits, checks, quality, data_sha, data_path, task, labels, test, key, extra, resolved,
                     tokenizer, scorer, _Models(resolved, experiment.trust_remote_code, experiment.allow_pickle),
                     f"{resolved.sha256}:nf4")


def _candidate_rows(experiment: Experiment, spec, root: Path, splits):
    """(messages for a sample, train rows, val rows) of a QLoRA candidate."""
    from harness.candidate import train as train_mod

    system = Path(root / spec.system_prompt).read_text(encoding="utf-8").strip() if spec.system_prompt else None
    messages = lambda s: prompts.candidate_messages(s, system)
    to_rows = lambda rows: [train_mod.conversation(messages(s), s.answer) for s in rows]
    return messages, to_rows(splits.train), to_rows(splits.val)


def _work_dir(store: Store, root: Path, work_dir) -> Path:
    if work_dir is not None:
        return Path(work_dir)
    return Path(store.path).parent if store.path != ":memory:" else root / ".harness"


def _sweep(experiment: Experiment, store: Store, p: _Prepared, root: Path, work_dir, storage: str | None,
           log: Callable[[str], None], trials: int | None = None):
    """Run the experiment's study (joining other workers); each trial trains on train and is
    scored on val, through the same adapter and output caches as the candidate."""
    import shutil

    from harness.candidate import sweep as sweep_mod

    name = experiment.name
    if not p.splits.val:
        raise SpecError(f"{name}: a sweep picks its winner on the validation split, and this experiment has none; "
                        f"give split=(train, val, test) with val > 0 or a 'val' file")
    study = _study_name(experiment, p)
    url = sweep_mod.storage_url(store.path, storage)
    log(f"{name}: sweep study {study!r} in {sweep_mod._redacted(url)}")

    def train_one(trial, spec) -> "sweep_mod.TrialResult":
        messages, train_rows, val_rows = _candidate_rows(experiment, spec, root, p.splits)
        out_dir = _work_dir(store, root, work_dir) / "sweeps" / study / f"trial-{trial.number}"
        shutil.rmtree(out_dir, ignore_errors=True)  # a crashed earlier attempt of this trial number
        pruning = sweep_mod.pruning_callback(trial, log, f"{name}: trial #{trial.number}")
        model, trained = _adapter(store, p, spec, train_rows, val_rows, lambda key: out_dir,
                                  name, f"{name}: trial #{trial.number}", log, callbacks=[pruning],
                                  keep=lambda: pruning.pruned_at is None)
        if pruning.pruned_at is not None:
            model = None
            p.loaded.release()
            shutil.rmtree(out_dir, ignore_errors=True)  # a pruned adapter is never used
            return sweep_mod.TrialResult(None, True, curves=trained.curves, steps=trained.steps,
                                         seconds=trained.seconds)
        model_id = f"{p.base_id}+{trained.adapter_sha256}"
        get_model = (lambda: model) if model is not None else (lambda: p.loaded.load_adapter(trained.adapter_path))
        approach = Approach(f"trial-{trial.number}", "candidate", {})
        _score_split(p.scorer, approach, "val", p.splits.val, model_id, get_model, messages, p.key, p.extra,
                     name, what=f"trial #{trial.number} val")
        model = get_model = None  # drop the trained copy before the next trial loads its own
        p.loaded.release()
        return sweep_mod.TrialResult(approach.metrics["val"][p.key.name], False, val_metrics=approach.metrics["val"],
                                     curves=trained.curves, steps=trained.steps, seconds=trained.seconds,
                                     adapter_path=trained.adapter_path, adapter_sha256=trained.adapter_sha256)

    return sweep_mod.run(experiment.sweep, experiment.candidate, name=study, experiment=name, key_metric=p.key.name,
                         storage=sweep_mod.open_storage(url), store=store, train_one=train_one, log=log, trials=trials)


def _adapter(store: Store, p: _Prepared, spec, train_rows: list[dict], val_rows: list[dict],
             out_dir: Callable[[str], Path], name: str, who: str, log: Callable[[str], None], callbacks: list = (),
             keep: Callable[[], bool] = lambda: True):
    """(the trained peft model, or None when reused; Trained): the cached adapter for this base,
    config and data if its files are intact, else trained now into out_dir(adapter key) and
    cached unless `keep()` says otherwise (a pruned sweep trial)."""
    from harness.candidate import train as train_mod

    key = cache.adapter_key(p.resolved.sha256, spec.config(), train_rows, val_rows)
    hit = store.cached_adapter(key)
    if cache.usable_adapter(hit):
        log(f"{who} adapter reused from the cache ({hit['adapter_path']}); same base, config and data")
        return None, train_mod.Trained(hit["adapter_path"], hit["adapter_sha256"], **hit["result"])
    _check_memory(name, p.resolved, spec, p.tokenizer, train_rows, log)
    model, trained = train_mod.train(p.loaded.for_training(), p.tokenizer, spec, train_rows, val_rows, out_dir(key),
                                     log=log, name=who, callbacks=callbacks)
    if keep():
        store.cache_adapter(key, trained.adapter_path, trained.adapter_sha256, trained.summary())
    return model, trained


def _study_name(experiment: Experiment, p: _Prepared) -> str:
    from harness.candidate import sweep as sweep_mod

    return sweep_mod.study_name(experiment.name, experiment.sweep, experiment.candidate, p.resolved.sha256,
                                p.data_sha, json.dumps([list(experiment.split), experiment.seed]))


def _run(experiment: Experiment, store: Store, run_id: str, record: RunRecord, root: Path,
         log: Callable[[str], None], work_dir, started: float, sweep: bool = False,
         sweep_storage: str | None = None) -> Result:
    name = experiment.name
    p = _prepare(experiment, store, root, record, log)
    splits, checks, quality, data_sha, data_path = p.splits, p.checks, p.quality, p.data_sha, p.data_path
    task, test, key, extra, resolved, scorer = p.task, p.test, p.key, p.extra, p.resolved, p.scorer
    suite = regression.load_suite(experiment.regression, root=root) \
        if experiment.regression and experiment.candidate else None
    record.run_fields |= {"task": task, "key_metric": key.name, "model": experiment.model,
                         "model_sha256": resolved.sha256, "data_path": data_path, "data_sha256": data_sha,
                         "test_sha256": test.sha256, "provenance": provenance(root, experiment)}
    loaded, base_id = p.loaded, p.base_id

    # --- selection: train and validation only; the test split stays sealed -------------------
    # Each approach: (Approach, model id, model loader, messages for a sample). A calibrated
    # twin is not scored itself: it re-ranks its baseline's label scores (twins, by baseline name).
    approaches: list[tuple[Approach, str, Callable, Callable]] = []
    twins: dict[str, list] = {}
    declared = expand_baselines(experiment.baselines, root, task=task, max_baselines=experiment.max_baselines,
                                where=name)
    nearest, embedder = None, None
    retrievers: dict[str, retrieval.Retriever] = {}  # knowledge source -> its index, built once per run
    if any((b.strategy == "nearest" and b.k) or b.knowledge for b in declared):
        from harness.models import cache_dir
        from harness.prompting.embed import Embedder

        embedder = Embedder()  # one model, and one memory of embedded texts, for both
        if any(b.strategy == "nearest" and b.k for b in declared):
            nearest = shots.NearestShots(splits.train, embedder)
    for baseline in declared:
        system = baseline.system_prompt(root)
        config = {**baseline.config(), "system_prompt": system, "calibrated": None}
        if baseline.knowledge:
            if baseline.knowledge not in retrievers:
                knowledge = retrieval.load_knowledge(baseline.knowledge, root)
                index = retrieval.build_index(knowledge, embedder, embedder.model_id, cache_dir() / "retrieval",
                                              log=lambda m: log(f"{name}: {m}"))
                retrievers[baseline.knowledge] = retrieval.Retriever(index, embedder)
            retriever = retrievers[baseline.knowledge]
            # Every row's passage ids would outgrow the config; its prompts are stored with its predictions.
            config |= {"knowledge_sha256": retriever.index.knowledge.sha256,
                       "retrieval": retriever.summary(baseline.top_k)}
            context_for = lambda s, retriever=retriever, k=baseline.top_k: retriever(s, k)
            _, fixed = shots.chooser(baseline.strategy, splits.train, baseline.k, baseline.seed)
            config["shots"] = [[s.input_text, s.answer] for s in fixed]
            build = lambda s, context, system=system, fixed=fixed: prompts.retrieval_messages(s, system, context, fixed)
            per_input = True
        else:
            context_for, fixed = shots.chooser(baseline.strategy, splits.train, baseline.k, baseline.seed, nearest)
            config["shots"] = [[s.input_text, s.answer] for s in fixed] if fixed is not None else "per input"
            build = lambda s, context, system=system: prompts.baseline_messages(s, system, context)
            per_input = fixed is None
        approach = Approach(baseline.name, "baseline", config)
        messages = lambda s, build=build, context_for=context_for: build(s, context_for(s))
        approaches.append((approach, base_id, loaded.base, messages))
        for method, twin_name in zip(baseline.calibrate, baseline.scored_as[1:]):
            twin = Approach(twin_name, "baseline", {**config, "calibrated": method})
            twins.setdefault(baseline.name, []).append(
                _ContextualTwin(twin, build, context_for, per_input=per_input) if method == "contextual"
                else _BatchTwin(twin))
    pick_split = "val" if splits.val else "train"  # never test: no winner's curse
    pick_rows = splits.val or splits.train[:TRAIN_SCORE_ROWS]
    if embedder is not None:
        embedder([s.input_text for s in pick_rows])  # in batches, before prompts ask for one at a time
    for approach, model_id, get_model, messages in approaches:
        _score_with_twin(scorer, twins, approach, pick_split, pick_rows, model_id, get_model, messages, key, extra,
                         name)
    best = max(_with_twins(approaches, twins),
               key=lambda a: _selection_key(a, pick_split, key.name, [m.name for m in extra]))
    log(f"{name}: best baseline on {pick_split}: {best.name} ({key.name} {best.metrics[pick_split][key.name]:.3f})")

    suite_prompts = [regression.prompt(q) for q in suite.rows] if suite else []
    if suite:  # scored before training, which wraps the base model in the adapter
        base_suite = regression.from_predictions(suite, scorer.raw(
            base_id, loaded.base, suite_prompts, regression.CONTINUATIONS, f"{name}: regression suite, base").predictions)

    candidate, curves, train_score, trained = None, [], None, None
    if experiment.candidate is not None:
        spec, sweep_info = _chosen_candidate(experiment, store, p, root, work_dir, sweep, sweep_storage, log)
        messages, train_rows, val_rows = _candidate_rows(experiment, spec, root, splits)
        # named by what is trained, not by the run: a run killed mid-training and started
        # again finds its checkpoints there and resumes (harness.candidate.train)
        model, trained = _adapter(store, p, spec, train_rows, val_rows,
                                  lambda key: _work_dir(store, root, work_dir) / "train" / key[:16],
                                  name, f"{name}: candidate", log)
        if model is not None:
            loaded.candidate = model
        curves = trained.curves
        candidate = Approach("candidate", "candidate", {**spec.config(), "trainable_params": trained.trainable_params,
                                                        "total_params": trained.total_params, "steps": trained.steps,
                                                        "device": trained.device, "sweep": sweep_info},
                             train_seconds=trained.seconds)
        candidate_id = f"{base_id}+{trained.adapter_sha256}"
        get_candidate = lambda: loaded.load_adapter(trained.adapter_path)
        approaches.append((candidate, candidate_id, get_candidate, messages))
        if splits.val:
            _score_split(scorer, candidate, "val", splits.val, candidate_id, get_candidate, messages, key, extra, name)
        seen = splits.train[:TRAIN_SCORE_ROWS]
        _score_split(scorer, candidate, "train", seen, candidate_id, get_candidate, messages, key, extra,
                     name, what="train (overfit check)")
        train_score = candidate.metrics["train"][key.name]
        if suite:
            candidate_suite = regression.from_predictions(suite, scorer.raw(
                candidate_id, get_candidate, suite_prompts, regression.CONTINUATIONS,
                f"{name}: regression suite, candidate").predictions)

    # --- final scoring: the test split is opened once, for what was already chosen ----------
    test_rows = test.open("final scoring")
    if embedder is not None:
        embedder([s.input_text for s in test_rows])
    for approach, model_id, get_model, messages in approaches:
        _score_with_twin(scorer, twins, approach, "test", test_rows, model_id, get_model, messages, key, extra, name)
        for scored_approach in _with_twins([(approach,)], twins):
            _latency(scored_approach)
            log(f"{name}: {scored_approach.name} {key.name} " + ", ".join(
                f"{s} {v[key.name]:.3f}" for s, v in scored_approach.metrics.items()))

    if task == "classification":
        for approach, model_id, get_model, messages in approaches:
            _agreement(scorer, approach, test_rows[:AGREEMENT_ROWS], model_id, get_model, messages, p.labels, name,
                       log)

    verdicts = {"data_quality": quality}
    if candidate is not None:
        verdicts["five_percent_rule"] = gates.five_percent_rule(
            key.name, candidate.scores["test"], best.name, best.scores["test"], threshold=experiment.threshold,
            relative=experiment.relative, confidence=experiment.confidence,
            allow_inconclusive=experiment.allows_inconclusive("five_percent_rule"), picked_on=pick_split,
            seed=experiment.seed)
        if suite:
            verdicts["regression"] = regression.regression_gate(
                base_suite, candidate_suite, delta=experiment.regression_delta, confidence=experiment.confidence,
                seed=experiment.seed, allow_inconclusive=experiment.allows_inconclusive("regression"))
            for approach_name, scores in (("base", base_suite), ("candidate", candidate_suite)):
                record.metrics.append({"approach": approach_name, "split": "regression",
                                       "metric": f"{suite.name}_accuracy", "value": scores.accuracy})
        verdicts["overfit"] = gates.overfit(curves, train_score=train_score,
                                            test_score=candidate.metrics["test"][key.name], metric=key.name)
    else:
        verdicts["five_percent_rule"] = GateResult("five_percent_rule", SKIP,
                                                      "no candidate declared; baselines only")

    rows_of = {"val": splits.val, "test": test_rows, "train": splits.train}
    for approach in _with_twins(approaches, twins):
        adapter = (trained.adapter_path, trained.adapter_sha256) if approach.kind == "candidate" else (None, None)
        record.approaches.append(_approach_row(approach, *adapter))
        for split, values in approach.metrics.items():
            record.metrics += [{"approach": approach.name, "split": split, "metric": m, "value": v}
                               for m, v in values.items()]
        for split, preds in approach.predictions.items():
            record.predictions += [{"approach": approach.name, "split": split, "idx": i, "example_key": s.key,
                                    "input": approach.inputs[split][i] if split in approach.inputs
                                    else s.input_text, "reference": s.answer, "prediction": p,
                                    "score": approach.scores[split][i] if approach.scores[split] else None}
                                   for i, (s, p) in enumerate(zip(rows_of[split], preds))]
    record.curves = [{"approach": "candidate", **c} for c in curves]
    record.gates = [v.row() for v in verdicts.values()]
    store.finish_run(run_id, record)
    baselines = {a.name: a for a in _with_twins(approaches, twins) if a.kind == "baseline"}
    return Result(run_id, name, task, key.name, baselines, best.name, candidate, verdicts, checks, curves,
                  {"train": len(splits.train), "val": len(splits.val), "test": len(test)},
                  time.perf_counter() - started)


def _chosen_candidate(experiment: Experiment, store: Store, p: _Prepared, root: Path, work_dir, sweep: bool,
                      sweep_storage: str | None, log: Callable[[str], None]):
    """(QLoRA spec, sweep lineage or None): the declared spec, or the best trial of its sweep."""
    from harness.candidate import sweep as sweep_mod
    from harness.spec.experiment import QLoRA

    if experiment.sweep is None:
        return experiment.candidate, None
    if sweep:
        _sweep(experiment, store, p, root, work_dir, sweep_storage, log)
    study = _study_name(experiment, p)
    best = sweep_mod.best_trial(store, study)
    if best is None:
        log(f"{experiment.name}: no complete trial of sweep study {study!r} in the store; the candidate is the "
            f"QLoRA spec as declared (run `pytest --sweep` or `harness sweep` to search)")
        return experiment.candidate, None
    spec = QLoRA(**{**experiment.candidate.config(), **best["params"]})
    log(f"{experiment.name}: candidate = best sweep trial #{best['number']} of {study!r} ({p.key.name} "
        f"{best['value']:.4f} on val): {sweep_mod.describe(best['params'])}")
    return spec, {"study": study, "trial": best["number"], "params": best["params"], "value": best["value"]}


def _check_memory(name: str, resolved, spec, tokenizer, train_rows: list[dict], log: Callable[[str], None]) -> None:
    """Fail before training, with the estimated need and what is free, when the step cannot fit."""
    from harness import models
    from harness.candidate import estimate

    dev = models.device()
    longest = max(len(tokenizer(tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=False),
                                add_special_tokens=False)["input_ids"]) for r in train_rows)
    seq_len = min(longest, spec.max_length)
    need = estimate.estimate(resolved.path, "qlora", spec.batch_size, seq_len, r=spec.r,
                             target_modules=spec.target_modules, compute_dtype="bf16" if dev == "cuda" else "fp32",
                             gradient_checkpointing=bool(spec.gradient_checkpointing if spec.gradient_checkpointing
                                                         is not None else dev == "cuda"),
                             lora_dropout=spec.dropout, device=dev)
    problem = estimate.check_fits(need, estimate.available_memory(dev), dev)
    if problem:
        raise ModelError(f"{name}: not training: {problem}")
    log(f"{name}: memory estimate for training {need.total / 2**30:.1f} GiB (batch {spec.batch_size} x {seq_len} "
        f"tokens) fits the {estimate.available_memory(dev) / 2**30:.1f} GiB free on {dev}")


def _score_split(scorer: _Scorer, approach: Approach, split: str, rows: list, model_id: str, get_model: Callable,
                 messages: Callable, key, extra, name: str, what: str | None = None) -> Scored:
    """Score one approach on one split: predictions, per-example key metric, every metric."""
    message_lists = [messages(s) for s in rows]
    scored = scorer(model_id, get_model, message_lists, f"{name}: {approach.name} {what or split}")
    if any(m.name == "perplexity" for m in extra):
        scored.reference_loglik, scored.reference_tokens = scorer.references(
            model_id, get_model, message_lists, [s.answer.strip() for s in rows],
            f"{name}: {approach.name} {what or split} reference perplexity")
    _record_split(approach, split, rows, scored, key, extra)
    sent = [m[-1]["content"] for m in message_lists]
    if sent != [s.input_text for s in rows]:  # e.g. retrieved passages above the input: store what was sent
        approach.inputs[split] = sent
    return scored


def _selection_key(approach: Approach, split: str, metric: str, others: list[str] = ("macro_f1",)) -> tuple:
    """Best key metric on the selection split. Ties are common (prompts that answer one class
    for every row all score its share; exact match is 0 for every prompt a small model cannot
    follow), so they go to the experiment's next metric there (macro-F1 by default for
    classification, which rewards telling the classes apart; e.g. ROUGE for generation), then to
    the shorter prompt, then to the first declared."""
    values = approach.metrics[split]
    second = next((values[m] for m in others if m != metric and m in values), 0.0)
    tokens = approach.prompt_token_counts.get(split) or [0]
    return values[metric], second if second == second else 0.0, -sum(tokens) / len(tokens)


def _score_with_twin(scorer: _Scorer, twins: dict, approach: Approach, split: str, rows: list, model_id: str,
                     get_model: Callable, messages: Callable, key, extra, name: str) -> None:
    """Score an approach on a split and, if it is a baseline with calibrated twins, the twins too."""
    scored = _score_split(scorer, approach, split, rows, model_id, get_model, messages, key, extra, name)
    for twin in twins.get(approach.name, []) if approach.kind == "baseline" else []:
        twin.score(scorer, split, rows, scored, model_id, get_model, key, extra, name)
        if split in approach.inputs:
            twin.approach.inputs[split] = approach.inputs[split]


def _with_twins(approaches: list[tuple], twins: dict) -> list[Approach]:
    """Every approach to report: each scored one, followed by its calibrated twins if it has any."""
    out = []
    for approach, *_ in approaches:
        out.append(approach)
        if approach.kind == "baseline":
            out += [twin.approach for twin in twins.get(approach.name, [])]
    return out


def _record_calibrated(approach: Approach, split: str, rows: list, scored: Scored, priors: list[dict],
                       paid: list[tuple[float, int]], key, extra) -> None:
    """A twin's outputs: its baseline's label scores re-ranked against a prior per row, with
    what measuring the prior cost that row (latency ms, prompt tokens) added to its own."""
    logprobs = [calibration.adjusted(lp, prior) for lp, prior in zip(scored.label_logprobs, priors)]
    _record_split(approach, split, rows, dataclasses.replace(
        scored, predictions=[max(lp, key=lp.get) for lp in logprobs], label_logprobs=logprobs,
        latencies_ms=[ms + extra_ms for ms, (extra_ms, _) in zip(scored.latencies_ms, paid)],
        prompt_tokens=[t + extra_t for t, (_, extra_t) in zip(scored.prompt_tokens, paid)]), key, extra)


class _BatchTwin:
    """A baseline's batch-calibrated copy (harness/prompting/calibration.py): the prior is the mean label
    probability over the first split it sees, the selection split (answers unused), and is
    then frozen, so test is corrected by what validation measured. No extra prompt."""

    def __init__(self, approach: Approach):
        self.approach, self.prior = approach, None

    def score(self, scorer: _Scorer, split: str, rows: list, scored: Scored, model_id: str,
              get_model: Callable, key, extra, name: str) -> None:
        if self.prior is None:
            self.prior = calibration.mean_probs(scored.label_logprobs)
            self.approach.config |= {"batch_prior": self.prior, "prior_from": f"{len(rows)} {split} inputs"}
        _record_calibrated(self.approach, split, rows, scored, [self.prior] * len(rows), [(0.0, 0)] * len(rows),
                           key, extra)


class _ContextualTwin:
    """A baseline's contextually calibrated copy (harness/prompting/calibration.py): the baseline's own
    label scores, re-ranked against p_cf, the label probabilities of content-free inputs under
    the same system prompt and context (few-shot examples or retrieved passages). Measured once
    per distinct context: once in all for fixed examples, once per input for nearest-neighbour
    examples and retrieved passages.

    build(sample, context) -> messages; context_for(sample) -> its examples or passages (each with a `key`)."""

    def __init__(self, approach: Approach, build: Callable, context_for: Callable, per_input: bool):
        self.approach, self.build, self.context_for, self.per_input = approach, build, context_for, per_input
        self.measured: dict[tuple, tuple[dict, float, int]] = {}  # context keys -> (p_cf, latency ms, tokens)

    def score(self, scorer: _Scorer, split: str, rows: list, scored: Scored, model_id: str,
              get_model: Callable, key, extra, name: str) -> None:
        examples = [self.context_for(s) for s in rows]
        sets = [tuple(e.key for e in shots) for shots in examples]
        todo = {k: shots for k, shots in zip(sets, examples) if k not in self.measured}
        if todo:
            inputs = [data_mod.Sample((("user", text),), "") for text in calibration.CONTENT_FREE]
            n = len(inputs)
            cf = scorer(model_id, get_model, [self.build(x, context) for context in todo.values() for x in inputs],
                        f"{name}: {self.approach.name} content-free inputs ({split})")
            for j, k in enumerate(todo):
                part = slice(j * n, (j + 1) * n)
                self.measured[k] = (calibration.mean_probs(cf.label_logprobs[part]),
                                    sum(cf.latencies_ms[part]), sum(cf.prompt_tokens[part]))
        # Fixed examples: p_cf is measured once and reused by every call. Per-input examples:
        # each call pays for its own content-free prompts, so they count in its latency and tokens.
        paid = [self.measured[k][1:] if self.per_input else (0.0, 0) for k in sets]
        _record_calibrated(self.approach, split, rows, scored, [self.measured[k][0] for k in sets], paid, key, extra)
        probs = [p for p, *_ in self.measured.values()]
        self.approach.config["content_free_probs"] = {label: sum(p[label] for p in probs) / len(probs)
                                                      for label in probs[0]}  # the mean, for per-input examples
        self.approach.config["content_free_prompts"] = len(calibration.CONTENT_FREE) * len(self.measured)
        self.approach.config["content_free_inputs"] = list(calibration.CONTENT_FREE)


def _record_split(approach: Approach, split: str, rows: list, scored: Scored, key, extra) -> None:
    """An approach's outputs on a split, with its per-example key metric and every metric."""
    refs = [s.answer.strip() for s in rows]
    preds = [p.strip() for p in scored.predictions]
    result = key.score(preds, refs)
    approach.metrics[split] = {key.name: result.value, **_named(key.name, result.extra)}
    if scored.label_logprobs:  # label scoring: how well the scores separate the classes at all
        approach.metrics[split] |= separation(scored.label_logprobs, refs)
    for m in extra:
        inputs = {"log_likelihoods": scored.reference_loglik, "token_counts": scored.reference_tokens} \
            if m.name == "perplexity" else {}
        r = m.score(preds, refs, **inputs)
        approach.metrics[split].update({m.name: r.value, **_named(m.name, r.extra)})
    approach.predictions[split] = scored.predictions
    approach.scores[split] = list(result.per_example)
    approach.latencies[split] = scored.latencies_ms
    approach.prompt_token_counts[split] = scored.prompt_tokens
    approach.generated_token_counts[split] = scored.generated_tokens or [0] * len(rows)


def _agreement(scorer: _Scorer, approach: Approach, rows: list, model_id: str, get_model: Callable,
               messages: Callable, labels: list[str], name: str, log: Callable[[str], None]) -> None:
    """How often label scoring picks what greedy generation says, on the rows where generation
    gives a valid label at all: a check that scoring labels measures the model's own answer."""
    if not rows:
        return
    longest = max(len(scorer.tokenizer(label, add_special_tokens=False)["input_ids"]) for label in labels)
    generated = scorer.generate(model_id, get_model, [messages(s) for s in rows], longest + 3,
                                f"{name}: {approach.name} greedy generation (agreement check)")
    said = [scoring.generated_label(text, labels) for text in generated.predictions]
    valid = [(label, scored.strip()) for label, scored in zip(said, approach.predictions["test"]) if label is not None]
    metrics = approach.metrics["test"]
    metrics["generation_valid_rate"] = len(valid) / len(rows)
    metrics["label_generation_agreement"] = (sum(a == b for a, b in valid) / len(valid)) if valid else math.nan
    metrics["agreement_rows"] = float(len(rows))
    log(f"{name}: {approach.name}: greedy generation gives a valid label on {len(valid)}/{len(rows)} test rows; "
        f"label scoring agrees on " + (f"{metrics['label_generation_agreement']:.0%}" if valid else "-") + " of them")


def _latency(approach: Approach) -> None:
    """Latency and prompt size per call, measured on the test split."""
    latencies, tokens = approach.latencies.get("test") or [], approach.prompt_token_counts.get("test") or []
    if latencies:
        approach.latency_p50_ms = stats.percentile(latencies, 50)
        approach.latency_p95_ms = stats.percentile(latencies, 95)
        approach.prompt_tokens = sum(tokens) / len(tokens)
        generated = approach.generated_token_counts.get("test") or [0]
        approach.generated_tokens = sum(generated) / len(generated)


def _approach_row(a: Approach, adapter_path: str | None = None, adapter_sha256: str | None = None) -> dict:
    return {"approach": a.name, "kind": a.kind, "config": a.config, "prompt_tokens": a.prompt_tokens,
            "generated_tokens": a.generated_tokens,
            "latency_p50_ms": a.latency_p50_ms, "latency_p95_ms": a.latency_p95_ms,
            "train_seconds": a.train_seconds, "adapter_path": adapter_path, "adapter_sha256": adapter_sha256}
