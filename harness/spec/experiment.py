"""The declarative spec: `Experiment`, `QLoRA`. Pure data, no side effects.

A spec file in experiments/ builds these at import time; the pytest plugin collects
them and `harness._engine.pipeline` runs them. Validation happens here, so a wrong field is
refused when the spec is imported, with the list of valid fields.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.errors import SpecError
from harness.spec.baselines import Baseline
from harness.spec.sources import describe, is_datasets, split_name

TASKS = ("classification", "generation")
# key metrics whose zero is not "no skill": a ratio over them depends on an arbitrary offset
ARBITRARY_ZERO_METRICS = ("bertscore",)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _refuse_unknown(kind: str, given: dict, valid: list[str], hint: dict[str, str] | None = None) -> None:
    for key in given:
        if key in valid:
            continue
        suggestion = (hint or {}).get(key) or next(iter(difflib.get_close_matches(key, valid, n=1)), None)
        tip = f"; did you mean {suggestion}?" if suggestion else ""
        raise SpecError(f"{kind} has no field '{key}'{tip} valid fields: {', '.join(valid)}")


@dataclass(frozen=True)
class QLoRA:
    """A QLoRA candidate: 4-bit NF4 base (double quantization) + LoRA adapters, trained with trl.

    Defaults follow common practice for small instruct models (QLoRA paper, trl/peft docs):
    r=16 with alpha=2r, dropout 0.05, lr 2e-4, all linear layers targeted.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    learning_rate: float = 2e-4
    epochs: float = 3
    target_modules: str | tuple[str, ...] = "all-linear"
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 512
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"
    evals_per_epoch: int = 1
    early_stopping_patience: int | None = None  # stop after this many evaluations without a lower val loss
    gradient_checkpointing: bool | None = None  # None: on for CUDA, off on CPU where it only costs time
    system_prompt: str | None = None  # file whose text replaces the data's system message
    seed: int = 0

    def __init__(self, **kwargs: Any):
        valid = [f.name for f in fields(QLoRA)]
        _refuse_unknown("QLoRA", kwargs, valid, {"rank": "r", "lora_rank": "r", "lr": "learning_rate",
                                                  "lora_alpha": "alpha", "num_train_epochs": "epochs"})
        for f in fields(QLoRA):
            object.__setattr__(self, f.name, kwargs.get(f.name, f.default))
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        checks = [
            (isinstance(self.r, int) and self.r > 0, f"r must be a positive integer (got {self.r!r})"),
            (self.alpha > 0, f"alpha must be positive (got {self.alpha!r})"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1) (got {self.dropout!r})"),
            (0 < self.learning_rate < 1, f"learning_rate must be in (0, 1) (got {self.learning_rate!r})"),
            (self.epochs > 0, f"epochs must be positive (got {self.epochs!r})"),
            (self.batch_size > 0, f"batch_size must be positive (got {self.batch_size!r})"),
            (self.max_length >= 16, f"max_length must be at least 16 (got {self.max_length!r})"),
            (0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1) (got {self.warmup_ratio!r})"),
            (self.evals_per_epoch >= 1, f"evals_per_epoch must be at least 1 (got {self.evals_per_epoch!r})"),
            (self.early_stopping_patience is None or (isinstance(self.early_stopping_patience, int)
                                                      and self.early_stopping_patience >= 1),
             f"early_stopping_patience must be None or a positive integer (got {self.early_stopping_patience!r})"),
        ]
        for ok, message in checks:
            if not ok:
                raise SpecError(f"QLoRA: {message}")

    def config(self) -> dict:
        return asdict(self)


_SEARCHABLE = ("r", "alpha", "dropout", "learning_rate", "epochs", "batch_size", "gradient_accumulation_steps",
               "warmup_ratio", "weight_decay", "lr_scheduler", "max_length", "evals_per_epoch",
               "early_stopping_patience")
_LOG_SCALE = ("learning_rate", "weight_decay")
_TIED_ALPHA = re.compile(r"^(\d+(?:\.\d+)?)r$")  # "2r": alpha = 2 x rank


class Sweep:
    """A hyperparameter search over the candidate's QLoRA fields (an Optuna study, harness/candidate/sweep.py).

        Sweep(r=[4, 8, 16, 32], learning_rate=(1e-5, 5e-4), epochs=(1, 5), trials=12)

    A list is a set of choices; a (low, high) tuple is a range (integers when both ends are
    integers; log scale for learning_rate and weight_decay). Fields not named keep the
    candidate's value; a plain value sets a field for every trial (evals_per_epoch=2 gives
    the pruner more evaluations to act on). alpha is held fixed by default: with LoRA's alpha/r scaling the best
    learning rate barely moves with rank; alpha="2r" ties it to the rank, a list or range
    searches it. `space` is the define-by-run form: a function of an Optuna trial returning
    a dict of QLoRA fields, for anything the keyword form cannot say.

    The objective is the key metric on the validation split (never test). A pruner ("median",
    or None, or any optuna pruner) stops a trial whose validation loss trails the others at
    the same step. `trials` counts complete and pruned trials; failed ones are retried.
    """

    def __init__(self, *, trials: int = 12, seed: int = 0, pruner: Any = "median", space: Any = None,
                 alpha: Any = None, **params: Any):
        _refuse_unknown("Sweep", params, list(_SEARCHABLE), {"rank": "r", "lr": "learning_rate",
                                                             "num_train_epochs": "epochs"})
        if not isinstance(trials, int) or trials < 1:
            raise SpecError(f"Sweep: trials must be a positive integer (got {trials!r})")
        if space is not None and not callable(space):
            raise SpecError(f"Sweep: space must be a function of an optuna Trial returning a dict (got {space!r})")
        if isinstance(pruner, str) and pruner not in ("median", "none"):
            raise SpecError(f"Sweep: pruner must be 'median', None or an optuna pruner (got {pruner!r})")
        if alpha is not None:
            if isinstance(alpha, str) and not _TIED_ALPHA.match(alpha):
                raise SpecError(f"Sweep: alpha must be a number, a list, a (low, high) range or tied to the rank "
                                f"like \"2r\" (got {alpha!r})")
            if not isinstance(alpha, str):
                params["alpha"] = alpha
        for name, values in params.items():
            if isinstance(values, list):
                if not values:
                    raise SpecError(f"Sweep: {name} has an empty list of choices")
            elif isinstance(values, tuple):
                if len(values) != 2 or not all(isinstance(v, (int, float)) for v in values) or values[0] >= values[1]:
                    raise SpecError(f"Sweep: {name} range must be (low, high) with low < high (got {values!r})")
                if name in _LOG_SCALE and values[0] <= 0:
                    raise SpecError(f"Sweep: {name} is searched on a log scale, so its range must be above 0 "
                                    f"(got {values!r})")
            elif not isinstance(values, (int, float, str)):
                raise SpecError(f"Sweep: {name} must be a value, a list of choices or a (low, high) range "
                                f"(got {values!r})")
        if not params and space is None:
            raise SpecError("Sweep: nothing to search; give ranges or choices, e.g. Sweep(r=[8, 16], "
                            "learning_rate=(1e-5, 5e-4)), or space=a function of an optuna trial")
        self.trials, self.seed, self.pruner, self.space = trials, seed, pruner, space
        self.alpha = alpha if isinstance(alpha, str) else None  # tied to rank; else it is in params
        self.params = params

    def suggest(self, trial) -> dict:
        """This trial's QLoRA fields, drawn through the Optuna trial (so the sampler learns)."""
        chosen = {}
        for name, values in self.params.items():
            if isinstance(values, list):
                chosen[name] = trial.suggest_categorical(name, values)
            elif isinstance(values, tuple):
                low, high = values
                if isinstance(low, int) and isinstance(high, int) and name not in _LOG_SCALE:
                    chosen[name] = trial.suggest_int(name, low, high)
                else:
                    chosen[name] = trial.suggest_float(name, low, high, log=name in _LOG_SCALE)
            else:
                chosen[name] = values
        if self.space is not None:
            extra = self.space(trial)
            if not isinstance(extra, dict):
                raise SpecError(f"Sweep: space must return a dict of QLoRA fields (got {type(extra).__name__})")
            _refuse_unknown("Sweep space result", extra, [f.name for f in fields(QLoRA)])
            chosen.update(extra)
        if self.alpha is not None:
            factor = float(_TIED_ALPHA.match(self.alpha).group(1))
            chosen["alpha"] = int(round(factor * chosen.get("r", 0))) or None
        return {k: v for k, v in chosen.items() if v is not None}

    def config(self) -> dict:
        """A JSON-able view; with the data and model hashes it names the study."""
        def plain(v):
            return {"choices": v} if isinstance(v, list) else {"range": list(v)} if isinstance(v, tuple) else v

        space = None
        if self.space is not None:
            import inspect

            try:
                space = inspect.getsource(self.space).strip()
            except (OSError, TypeError):
                space = getattr(self.space, "__qualname__", repr(self.space))
        pruner = self.pruner if isinstance(self.pruner, str) or self.pruner is None else type(self.pruner).__name__
        return {"params": {k: plain(v) for k, v in self.params.items()}, "alpha": self.alpha, "space": space,
                "trials": self.trials, "seed": self.seed, "pruner": pruner}

    def __repr__(self) -> str:
        return f"Sweep({self.config()})"


_DATASETS_CLASSES = ("Dataset", "DatasetDict", "IterableDataset", "IterableDatasetDict")


def _plain_data(value):
    """The data field as JSON: paths as strings, a datasets object as what it was (rows, fingerprint)."""
    if isinstance(value, dict) and not is_datasets(value):  # a DatasetDict is a dict too
        return {k: _plain_data(v) for k, v in value.items()}
    return describe(value)


@dataclass(frozen=True)
class Experiment:
    """One question: does `candidate` beat the best of `baselines` on `data`, by `threshold`?

    name: identifier used in pytest node ids, the store and report file names.
    data: one file (JSONL, CSV, TSV or Parquet) or `save_to_disk` folder, split by the harness; or the
        splits, {"train": ..., "val": ..., "test": ...} ("validation", "valid" or "dev" for val); or
        a `datasets.Dataset` (split by the harness) or `DatasetDict` (its splits). Formats:
        docs/data-checks.md.
    model: "smollm2-135m-instruct" (embedded, offline), a Hugging Face id, or a local directory.
    metric: the key metric the gates compare ("accuracy", "exact_match", "rouge", ...).
    task: "classification" or "generation"; inferred from the data when left out.
    split: fractions (train, val, test) or row counts; seeded and stratified for classification.
    columns: for plain JSONL/CSV files, which columns hold the input and the output, e.g.
        {"input": "question", "output": "right_answer"} ("a+b" joins columns).
    threshold: the 5% rule's minimum uplift over the best baseline (0.05 = 5%).
    relative: uplift relative to the baseline (True) or in absolute metric points (False). A
        metric with an arbitrary zero (raw BERTScore) must be judged in points.
    allow_inconclusive: let INCONCLUSIVE pass: True for every gate, or a tuple of gate names.
    forgetting: held general text the regression gate scores on base and candidate, per token
        ("wikipedia": 250 held Wikipedia passages; or a path to a JSONL of {"text"} rows; None:
        no forgetting probe). Cheap: one forward pass per document and model.
    forgetting_margin: the candidate's perplexity on that text may rise at most this much
        (0.05: 5%, a geometric mean over documents). See docs/statistics.md.
    regression: capability suite the regression gate scores on base and candidate by option
        likelihood ("mmlu": the shipped 1,140-question MMLU slice; or a path to a JSONL in the
        same format; None: no suite). It SKIPs, saying so, where the base answers at chance.
    regression_delta: the candidate may lose at most this much suite accuracy (0.02 = 2 points).
    gpu_hour_price, calls: price per device-hour and call volume for the cost view (the command
        line's --harness-gpu-hour-price / --harness-calls win over these).
    knowledge_task: the task needs facts the model may lack (the recommendation weighs retrieval).
    trust_remote_code: run Python code shipped with the model (only for a source you trust).
    allow_pickle: accept pickled (.bin) weights; by default only safetensors load.
    sweep: a Sweep over the candidate's settings; run with `pytest --harness-sweep` or `harness sweep`,
        and its best trial becomes the candidate (also later, without --harness-sweep).
    max_baselines: the most prompt baselines one run scores, counted after prompt folders are
        expanded and calibrated twins added; more is refused before any model is loaded.
    seed: draws the split (and seeds what the spec does not seed otherwise).
    underpowered: what happens when, before training, the test split has less than 80% power
        to show the bar if the true uplift is twice it: "fail" (the default: no compute is spent
        on a question the split cannot settle) or "warn" (train anyway; the statement is logged
        and stored with the verdict). See docs/statistics.md.
    bootstrap_seed, resamples: the gates' bootstrap, kept apart from `seed` so that trying
        another bootstrap draw never means another test split; the Monte Carlo error of the
        interval ends is reported with every verdict.
    looks: how many judgements of the five-percent rule the team plans on these test rows,
        declared before the first (default 1). The store keeps a ledger of looks: a run whose
        test rows overlap rows already judged is look k, every look is judged at one-sided
        2.5% / looks (Bonferroni), and a look beyond the budget recorded at the first look of
        those rows is INCONCLUSIVE. Raising it later buys nothing. See docs/statistics.md.
    fresh_test: draw the test split only from rows the ledger has never judged for this
        experiment (they may still go to train and val), so the new split starts afresh at
        look 1; for a single data file with rows added since the last look.
    """

    name: str
    data: str | dict
    model: str = "smollm2-135m-instruct"
    metric: str = "accuracy"
    baselines: tuple[Baseline, ...] = ()
    max_baselines: int = 12  # each costs a scoring pass over val and test (twins: 3 prompts more)
    candidate: QLoRA | None = None
    sweep: Sweep | None = None
    task: str | None = None
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    threshold: float = 0.05
    relative: bool = True
    allow_inconclusive: bool | tuple[str, ...] = False
    forgetting: str | None = "wikipedia"
    forgetting_margin: float = 0.05
    regression: str | None = "mmlu"
    regression_delta: float = 0.02
    gpu_hour_price: float | None = None
    calls: int | None = None
    knowledge_task: bool = False
    metrics: tuple[str, ...] = ()
    max_rows: int | None = None
    columns: dict | None = None
    seed: int = 0
    bootstrap_seed: int = 0
    resamples: int = 20_000
    underpowered: str = "fail"
    confidence: float = 0.95
    looks: int = 1
    fresh_test: bool = False
    eval_batch_size: int = 16
    trust_remote_code: bool = False
    allow_pickle: bool = False
    spec_file: str | None = field(default=None, compare=False)

    def __init__(self, name: str | None = None, **kwargs: Any):
        valid = [f.name for f in fields(Experiment)]
        kwargs = dict(kwargs, name=name)
        _refuse_unknown("Experiment", kwargs, valid, {"lora_rank": "QLoRA(r=...)", "rank": "QLoRA(r=...)",
                                                       "dataset": "data", "base_model": "model"})
        for f in fields(Experiment):
            default = f.default if f.default_factory is MISSING else f.default_factory()
            object.__setattr__(self, f.name, kwargs.get(f.name, default))
        object.__setattr__(self, "baselines", tuple(self.baselines))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "split", tuple(self.split))
        self._validate()

    def _validate(self) -> None:
        where = f"Experiment {self.name!r}" if isinstance(self.name, str) else "Experiment"
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise SpecError(f"{where}: name must be 1-64 letters, digits, '_', '-' or '.', starting with a "
                            f"letter or digit (got {self.name!r})")
        if not isinstance(self.data, (str, Path, dict)) and not is_datasets(self.data, *_DATASETS_CLASSES):
            raise SpecError(f"{where}: data must be a path (JSONL, CSV, TSV, Parquet or a save_to_disk folder), a dict "
                            f"of split paths, or a datasets Dataset/DatasetDict (got {type(self.data).__name__})")
        if isinstance(self.data, dict) and not is_datasets(self.data):
            canonical = [split_name(k) for k in self.data]
            if None in canonical or len(set(canonical)) != len(canonical) or not {"train", "test"} <= set(canonical):
                raise SpecError(f"{where}: data dict needs keys 'train' and 'test' and optionally one validation split "
                                f"('val', 'validation', 'valid' or 'dev'), got {sorted(map(str, self.data))}")
            object.__setattr__(self, "data", {split_name(k): v for k, v in self.data.items()})
        if self.task is not None and self.task not in TASKS:
            raise SpecError(f"{where}: task must be one of {', '.join(TASKS)} (got {self.task!r})")
        if not self.baselines:
            raise SpecError(f"{where}: needs at least one baseline, e.g. baselines=[baselines.zero_shot(...)]")
        for b in self.baselines:
            if not isinstance(b, Baseline):
                raise SpecError(f"{where}: baselines must be made with harness.spec.baselines.zero_shot/few_shot/retrieval "
                                f"(got {type(b).__name__})")
        if not isinstance(self.max_baselines, int) or isinstance(self.max_baselines, bool) or self.max_baselines < 1:
            raise SpecError(f"{where}: max_baselines must be a positive integer (got {self.max_baselines!r})")
        names = [b.name for b in self.baselines]
        if len(set(names)) != len(names):
            raise SpecError(f"{where}: baseline names must be unique (got {names}); pass name=... to tell them apart")
        if self.candidate is not None and not isinstance(self.candidate, QLoRA):
            raise SpecError(f"{where}: candidate must be a QLoRA(...) (got {type(self.candidate).__name__})")
        if self.sweep is not None:
            if not isinstance(self.sweep, Sweep):
                raise SpecError(f"{where}: sweep must be a Sweep(...) (got {type(self.sweep).__name__})")
            if self.candidate is None:
                raise SpecError(f"{where}: a sweep searches the candidate's settings; add candidate=QLoRA(...)")
        if len(self.split) != 3 or any(s < 0 for s in self.split):
            raise SpecError(f"{where}: split must be three non-negative numbers (train, val, test), got {self.split}")
        if not all(isinstance(s, int) for s in self.split) and abs(sum(self.split) - 1) > 1e-6:
            raise SpecError(f"{where}: split fractions must add up to 1 (got {self.split}); or give row counts")
        if not 0 <= self.threshold < 10:
            raise SpecError(f"{where}: threshold must be a fraction like 0.05 for 5% (got {self.threshold!r})")
        if not 0 < self.forgetting_margin < 10:
            raise SpecError(f"{where}: forgetting_margin is the perplexity rise allowed, e.g. 0.05 for 5% "
                            f"(got {self.forgetting_margin!r})")
        if not 0 <= self.regression_delta < 1:
            raise SpecError(f"{where}: regression_delta must be in [0, 1), e.g. 0.02 for 2 points "
                            f"(got {self.regression_delta!r})")
        if self.gpu_hour_price is not None and not self.gpu_hour_price > 0:
            raise SpecError(f"{where}: gpu_hour_price must be positive, e.g. 2.5 (got {self.gpu_hour_price!r})")
        if self.calls is not None and (not isinstance(self.calls, int) or self.calls < 0):
            raise SpecError(f"{where}: calls must be a non-negative integer volume (got {self.calls!r})")
        if not isinstance(self.allow_inconclusive, bool):
            object.__setattr__(self, "allow_inconclusive", tuple(self.allow_inconclusive))
        if not isinstance(self.resamples, int) or isinstance(self.resamples, bool) or self.resamples < 1000:
            raise SpecError(f"{where}: resamples must be an integer of at least 1000 (got {self.resamples!r}); the "
                            f"default 20000 keeps the Monte Carlo error of the interval small")
        if self.underpowered not in ("fail", "warn"):
            raise SpecError(f"{where}: underpowered must be \"fail\" or \"warn\" (got {self.underpowered!r})")
        if self.relative and self.metric in ARBITRARY_ZERO_METRICS:
            raise SpecError(f"{where}: metric {self.metric!r} has an arbitrary zero (unrelated texts already score "
                            f"far above 0), so a relative uplift over it means nothing; set relative=False and a "
                            f"threshold in points, e.g. threshold=0.01")
        if not 0.5 < self.confidence < 1:
            raise SpecError(f"{where}: confidence must be in (0.5, 1) (got {self.confidence!r})")
        if not isinstance(self.looks, int) or isinstance(self.looks, bool) or self.looks < 1:
            raise SpecError(f"{where}: looks must be a positive integer, the judgements planned on the test rows "
                            f"(got {self.looks!r}); e.g. looks=3")
        if not isinstance(self.fresh_test, bool):
            raise SpecError(f"{where}: fresh_test must be True or False (got {self.fresh_test!r})")
        if self.fresh_test and isinstance(self.data, dict):  # a DatasetDict is a dict too
            raise SpecError(f"{where}: fresh_test draws the test split from one data file, but data names split "
                            f"files; give a new test file instead, or a single data file")

    @property
    def key_metric(self) -> str:
        return self.metric

    def allows_inconclusive(self, gate: str) -> bool:
        if isinstance(self.allow_inconclusive, bool):
            return self.allow_inconclusive
        return gate in self.allow_inconclusive

    def config(self) -> dict:
        """A JSON-able view, stored with every run so a verdict can be re-derived."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "baselines":
                value = [b.config() for b in value]
            elif f.name in ("candidate", "sweep"):
                value = value.config() if value else None
            elif f.name == "data":
                value = _plain_data(value)
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

