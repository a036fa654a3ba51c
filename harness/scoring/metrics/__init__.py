"""Metrics: local `evaluate` modules shipped with the harness, and a thin wrapper around them.

    from harness.scoring import metrics
    rouge = metrics.load("rouge")
    result = rouge.score(predictions, references)   # MetricResult(name, value, extra, per_example)

Each shipped metric is an `evaluate` module in its own folder here (``<name>/<name>.py``),
loaded by path with ``evaluate.load(<folder>)``, so nothing is fetched from the Hub. Every
shipped module's ``compute`` returns its aggregates (headline first) and a per-example
list under ``"per_example"``:

    exact_match  normalised string equality                  per_example 0/1
    accuracy     label equality (whitespace-stripped)         per_example 0/1
    macro_f1     macro-averaged F1 over labels                per_example 0/1 correctness
                 (macro F1 is not a mean of per-example scores: not a key metric)
    rouge        rougeL (headline), rouge1, rouge2 F-measure  per_example ROUGE-L F1
    bertscore    f1 (headline), precision, recall             per_example F1
    json_valid   parses as JSON (optional schema)             per_example 0/1
    regex_match  fully matches pattern=...                    per_example 0/1
    perplexity   of the references under the answering model  per_example perplexity
                 (from log-likelihoods the pipeline computes; lower is better: not a key metric)

``load(name_or_path, **config)`` resolves a shipped name, else a path to a user's own
evaluate module (a folder holding a script of the same name, or a .py file), else tries
``evaluate.load(name)`` (the Hub: works online, or offline for a module already cached).
``config`` is passed to every ``compute`` call (e.g. ``load("regex_match", pattern=r"\\d+")``).

Importing this package is cheap: `evaluate` (and torch, for bertscore) load on first use.
"""
from __future__ import annotations

import inspect
import math
import numbers
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import SpecError

__all__ = ["KEY_METRICS", "SHIPPED", "Metric", "MetricResult", "load"]

_HERE = Path(__file__).resolve().parent

#: Metrics shipped in this package (a folder ``<name>/<name>.py`` each).
SHIPPED: tuple[str, ...] = ("accuracy", "bertscore", "exact_match", "json_valid", "macro_f1", "perplexity",
                             "regex_match", "rouge")

#: Names usable as an experiment's key metric: their value is the mean of their per-example
#: scores, which the paired statistics need. Maps the name to its headline aggregate.
KEY_METRICS: dict[str, str] = {
    "exact_match": "exact_match",
    "accuracy": "accuracy",
    "rouge": "rougeL",
    "bertscore": "f1",
    "json_valid": "json_valid",
    "regex_match": "regex_match",
}

_MODULES: dict[str, Any] = {}  # resolved script path or hub name -> loaded evaluate module
_LOCK = threading.RLock()


@dataclass
class MetricResult:
    """One metric over one set of predictions."""

    name: str
    value: float                                           # headline aggregate (accuracy, rougeL, bertscore f1, ...)
    extra: dict[str, float] = field(default_factory=dict)  # other aggregates (rouge1, rouge2, precision, recall, ...)
    per_example: list[float] = field(default_factory=list)  # [] when the module gives no "per_example"


class Metric:
    """A loaded evaluate module plus its configuration.

    name: the shipped name, the stem of a user's module path, or the hub name.
    path: the module script (None for a hub module).
    shipped: True for the harness's own modules.
    config: keyword arguments passed to every compute call.
    """

    def __init__(self, name: str, module: Any, config: dict[str, Any], path: str | None = None,
                 shipped: bool = False):
        self.name, self.module, self.config, self.path, self.shipped = name, module, dict(config), path, shipped
        self._check_config()

    def __repr__(self) -> str:
        cfg = "".join(f", {k}={v!r}" for k, v in self.config.items())
        return f"Metric({self.name!r}{cfg})"

    def _check_config(self) -> None:
        compute = getattr(self.module, "_compute", None)
        if compute is not None and self.config:
            params = inspect.signature(compute).parameters
            if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
                options = [n for n in params if n not in ("predictions", "references")]
                unknown = sorted(set(self.config) - set(options))
                if unknown:
                    raise SpecError(f"metric {self.name!r} has no option {', '.join(map(repr, unknown))}; "
                                    f"its options are: {', '.join(options) or 'none'}")
        check = getattr(self.module, "check_config", None)
        if callable(check):
            try:
                check(**self.config)
            except (ValueError, TypeError, ImportError, OSError) as e:
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise SpecError(msg if msg.startswith(self.name) else f"metric {self.name!r}: {msg}") from e

    def score(self, predictions: list[str], references: list[str], **kwargs) -> MetricResult:
        """Score predictions against references; kwargs override the load-time config for this call."""
        predictions, references = list(predictions), list(references)
        if len(predictions) != len(references):
            raise ValueError(f"metric {self.name!r}: {len(predictions)} predictions but {len(references)} references")
        with _LOCK:  # an evaluate module holds its inputs between add and compute: one call at a time
            out = self.module.compute(predictions=predictions, references=references, **{**self.config, **kwargs})
        return self._result(out, len(predictions))

    def _result(self, out: Any, n: int) -> MetricResult:
        if not isinstance(out, dict):
            raise TypeError(f"metric {self.name!r}: compute returned {type(out).__name__}, expected a dict")
        per_example = out.get("per_example")
        if per_example is None:
            per_example = []
        else:
            per_example = [float(x) for x in per_example]
            if len(per_example) != n:
                raise ValueError(f"metric {self.name!r}: {len(per_example)} per-example scores for {n} predictions")
        numeric = {k: float(v) for k, v in out.items() if k != "per_example" and _is_number(v)}
        if not numeric:
            if n == 0:
                return MetricResult(self.name, math.nan, {}, per_example)
            raise ValueError(f"metric {self.name!r}: compute returned no numeric aggregate (got keys "
                             f"{', '.join(map(str, out))})")
        headline = KEY_METRICS.get(self.name) if self.shipped else None
        if headline not in numeric:
            headline = next(iter(numeric))
        value = numeric.pop(headline)
        return MetricResult(self.name, value, numeric, per_example)


def _is_number(v: Any) -> bool:
    """A scalar aggregate: int/float, numpy scalars, 0-d arrays/tensors; not bool, not complex."""
    if isinstance(v, (bool, complex)):
        return False
    return isinstance(v, numbers.Real) or (hasattr(v, "item") and getattr(v, "ndim", None) == 0)


def shipped_path(name: str) -> Path:
    """The folder of a shipped metric."""
    return _HERE / name


def _unknown(name: str) -> SpecError:
    return SpecError(f"unknown metric {name!r}: shipped metrics are {', '.join(SHIPPED)}; "
                     f"or give a path to an evaluate module")


def _script_for(path: Path) -> Path | None:
    """The evaluate script for a folder (``<dir>/<dir>.py``) or a .py file; None if absent."""
    if path.is_dir():
        script = path / f"{path.name}.py"
        return script if script.is_file() else None
    if path.is_file() and path.suffix == ".py":
        return path
    return None


def _evaluate_load(target: str):
    import evaluate

    return evaluate.load(target, keep_in_memory=True)


def _load_script(script: Path, name: str):
    key = str(script.resolve())
    with _LOCK:
        module = _MODULES.get(key)
        if module is None:
            # A folder is loaded as the folder (evaluate's own convention); evaluate copies the script
            # into its modules cache (HF_MODULES_CACHE) and imports it from there. No network for a path.
            target = str(script.parent) if script.stem == script.parent.name else str(script)
            try:
                module = _MODULES[key] = _evaluate_load(target)
            except ImportError as e:  # a library the module imports is missing
                raise SpecError(f"metric {name!r} ({script}): {str(e).splitlines()[0]}") from e
    return module


def _load_hub(name: str):
    with _LOCK:
        module = _MODULES.get(name)
        if module is None:
            import evaluate

            # evaluate reads only HF_EVALUATE_OFFLINE: under HF_HUB_OFFLINE alone it still tries the
            # network (and pings s3 download counters). Honour HF_HUB_OFFLINE too.
            from huggingface_hub import constants

            if constants.HF_HUB_OFFLINE:
                evaluate.config.HF_EVALUATE_OFFLINE = True
            try:
                module = _MODULES[name] = _evaluate_load(name)
            except Exception as e:
                raise _unknown(name) from e
    return module


def load(name_or_path: str | os.PathLike, **config) -> Metric:
    """Load a metric: a shipped name, a path to an evaluate module (folder or .py), or a Hub name.

    config is passed to every compute call (e.g. pattern= for regex_match, model_type= for bertscore).
    Raises SpecError (one line) for an unknown metric, a missing path, or a bad option.
    Loaded modules are cached per process; Metric objects are cheap.
    """
    raw = os.fspath(name_or_path)
    if raw in SHIPPED:
        script = shipped_path(raw) / f"{raw}.py"
        return Metric(raw, _load_script(script, raw), config, path=str(script), shipped=True)
    path = Path(raw).expanduser()
    if path.exists():
        script = _script_for(path)
        if script is None:
            raise SpecError(f"metric path {raw!r} is not an evaluate module: give a .py file, or a folder "
                            f"holding a script of the same name ({path.name}/{path.name}.py)")
        name = script.stem
        return Metric(name, _load_script(script, name), config, path=str(script))
    if raw.endswith(".py") or os.sep in raw or (os.altsep and os.altsep in raw) or raw.startswith("."):
        if raw.count("/") == 1 and not raw.startswith((".", "/", "~")) and not raw.endswith(".py"):
            return Metric(raw, _load_hub(raw), config)  # "owner/metric" on the Hub
        raise SpecError(f"metric path {raw!r} does not exist (relative paths are resolved from {Path.cwd()})")
    if not raw:
        raise _unknown(raw)
    return Metric(raw, _load_hub(raw), config)
