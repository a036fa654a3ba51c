"""The declarative spec: `Experiment`, `QLoRA`. Pure data, no side effects.

A spec file in experiments/ builds these at import time; the pytest plugin collects
them and `harness.pipeline` runs them. Validation happens here, so a wrong field is
refused when the spec is imported, with the list of valid fields.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.baselines import Baseline
from harness.errors import SpecError

TASKS = ("classification", "generation")
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


@dataclass(frozen=True)
class Experiment:
    """One question: does `candidate` beat the best of `baselines` on `data`, by `threshold`?

    name: identifier used in pytest node ids, the store and report file names.
    data: a JSONL file (split seeded by the harness), or {"train": ..., "val": ..., "test": ...}.
    model: "smollm2-135m-instruct" (embedded, offline), a Hugging Face id, or a local directory.
    metric: the key metric the gates compare ("accuracy", "exact_match", "rouge", ...).
    task: "classification" or "generation"; inferred from the data when left out.
    split: fractions (train, val, test) or row counts; seeded and stratified for classification.
    columns: for plain JSONL/CSV files, which columns hold the input and the output, e.g.
        {"input": "question", "output": "right_answer"} ("a+b" joins columns).
    threshold: the 5% rule's minimum uplift over the best baseline (0.05 = 5%).
    relative: uplift relative to the baseline (True) or in absolute metric points (False).
    allow_inconclusive: let INCONCLUSIVE pass: True for every gate, or a tuple of gate names.
    regression: general-ability suite scored on base and candidate ("mmlu": the shipped MMLU
        slice; or a path to a JSONL in the same format; None: no regression gate).
    regression_delta: the candidate may lose at most this much suite accuracy (0.02 = 2 points).
    gpu_hour_price, calls: price per device-hour and call volume for the cost view (the command
        line's --harness-gpu-hour-price / --harness-calls win over these).
    knowledge_task: the task needs facts the model may lack (the recommendation weighs retrieval).
    """

    name: str
    data: str | dict
    model: str = "smollm2-135m-instruct"
    metric: str = "accuracy"
    baselines: tuple[Baseline, ...] = ()
    candidate: QLoRA | None = None
    task: str | None = None
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    threshold: float = 0.05
    relative: bool = True
    allow_inconclusive: bool | tuple[str, ...] = False
    regression: str | None = "mmlu"
    regression_delta: float = 0.02
    gpu_hour_price: float | None = None
    calls: int | None = None
    knowledge_task: bool = False
    metrics: tuple[str, ...] = ()
    max_rows: int | None = None
    columns: dict | None = None
    seed: int = 0
    confidence: float = 0.95
    eval_batch_size: int = 16
    trust_remote_code: bool = False
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
        if not isinstance(self.data, (str, Path, dict)):
            raise SpecError(f"{where}: data must be a path or a dict of split paths (got {type(self.data).__name__})")
        if isinstance(self.data, dict):
            unknown = set(self.data) - {"train", "val", "test"}
            if unknown or "train" not in self.data or "test" not in self.data:
                raise SpecError(f"{where}: data dict needs keys 'train' and 'test' (and optionally 'val'), "
                                f"got {sorted(self.data)}")
        if self.task is not None and self.task not in TASKS:
            raise SpecError(f"{where}: task must be one of {', '.join(TASKS)} (got {self.task!r})")
        if not self.baselines:
            raise SpecError(f"{where}: needs at least one baseline, e.g. baselines=[baselines.zero_shot(...)]")
        for b in self.baselines:
            if not isinstance(b, Baseline):
                raise SpecError(f"{where}: baselines must be made with harness.baselines.zero_shot/few_shot "
                                f"(got {type(b).__name__})")
        names = [b.name for b in self.baselines]
        if len(set(names)) != len(names):
            raise SpecError(f"{where}: baseline names must be unique (got {names}); pass name=... to tell them apart")
        if self.candidate is not None and not isinstance(self.candidate, QLoRA):
            raise SpecError(f"{where}: candidate must be a QLoRA(...) (got {type(self.candidate).__name__})")
        if len(self.split) != 3 or any(s < 0 for s in self.split):
            raise SpecError(f"{where}: split must be three non-negative numbers (train, val, test), got {self.split}")
        if not all(isinstance(s, int) for s in self.split) and abs(sum(self.split) - 1) > 1e-6:
            raise SpecError(f"{where}: split fractions must add up to 1 (got {self.split}); or give row counts")
        if not 0 <= self.threshold < 10:
            raise SpecError(f"{where}: threshold must be a fraction like 0.05 for 5% (got {self.threshold!r})")
        if not 0 <= self.regression_delta < 1:
            raise SpecError(f"{where}: regression_delta must be in [0, 1), e.g. 0.02 for 2 points "
                            f"(got {self.regression_delta!r})")
        if self.gpu_hour_price is not None and not self.gpu_hour_price > 0:
            raise SpecError(f"{where}: gpu_hour_price must be positive, e.g. 2.5 (got {self.gpu_hour_price!r})")
        if self.calls is not None and (not isinstance(self.calls, int) or self.calls < 0):
            raise SpecError(f"{where}: calls must be a non-negative integer volume (got {self.calls!r})")
        if not isinstance(self.allow_inconclusive, bool):
            object.__setattr__(self, "allow_inconclusive", tuple(self.allow_inconclusive))
        if not 0.5 < self.confidence < 1:
            raise SpecError(f"{where}: confidence must be in (0.5, 1) (got {self.confidence!r})")

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
            elif f.name == "candidate":
                value = value.config() if value else None
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

