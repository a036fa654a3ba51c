"""What a run writes to the store: its facts and provenance, then the rows of every approach,
metric, prediction, curve and gate."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from harness import DISTRIBUTION, machine
from harness._engine.candidate import Candidate
from harness._engine.evaluate import Approach, Contender
from harness._engine.gating import Regression
from harness._engine.prepare import Prepared
from harness.judge.outcomes import GateResult
from harness.spec.experiment import Experiment
from harness.store import RunRecord

LIBRARIES = ("harness", "torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "evaluate", "duckdb")


def run_facts(experiment: Experiment, p: Prepared, root: Path) -> dict:
    """The run's own columns, known once the data is prepared (the data's path and hash are
    written by `prepare`, so that a run whose data is refused keeps them)."""
    return {"task": p.task, "key_metric": p.scoring.key_metric.name, "model": experiment.model,
            "model_sha256": p.models.resolved.sha256, "test_sha256": p.test.sha256,
            "provenance": provenance(root, experiment)}


def provenance(root: Path, experiment: Experiment) -> dict:
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(DISTRIBUTION if lib == "harness" else lib)
        except importlib.metadata.PackageNotFoundError:
            pass
    import torch

    hardware = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                "device": "cuda" if torch.cuda.is_available() else "cpu", "chosen": machine.chosen().to_dict()}
    if torch.cuda.is_available():
        hardware["gpu"] = torch.cuda.get_device_name(0)
    return {"git_commit": _git_commit(root), "versions": versions, "hardware": hardware,
            "seeds": {"split": experiment.seed, "train": experiment.candidate.seed if experiment.candidate else None,
                      "bootstrap": experiment.seed}}


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def record_run(record: RunRecord, p: Prepared, test_rows: list, contenders: list[Contender], best: Approach,
               candidate: Candidate | None, suite: Regression | None, verdicts: dict[str, GateResult]) -> None:
    """Fill the run's record with every row to write; the store writes it in one transaction."""
    record.run_fields["best_baseline"] = best.name
    for who, probe in suite.probe_scores.items() if suite else ():
        record.metrics.append({"approach": who, "split": "regression", "metric": f"{probe.probe}_nats_per_token",
                               "value": probe.nats_per_token})
    for who, scores in suite.suite_scores.items() if suite and suite.suite_judged else ():
        record.metrics.append({"approach": who, "split": "regression", "metric": f"{scores.suite}_accuracy",
                               "value": scores.accuracy})
    rows_of = {"val": p.splits.val, "test": test_rows, "train": p.splits.train}
    for approach in (a for contender in contenders for a in contender.approaches()):
        adapter = (candidate.trained.adapter_path, candidate.trained.adapter_sha256) \
            if approach.kind == "candidate" else (None, None)
        record.approaches.append(_approach_row(approach, *adapter))
        for split, values in approach.metrics.items():
            record.metrics += [{"approach": approach.name, "split": split, "metric": m, "value": v}
                               for m, v in values.items()]
        for split, preds in approach.predictions.items():
            record.predictions += [{"approach": approach.name, "split": split, "idx": i, "example_key": s.key,
                                    "input": approach.inputs[split][i] if split in approach.inputs
                                    else s.input_text, "reference": s.answer, "prediction": pred,
                                    "score": approach.scores[split][i] if approach.scores[split] else None}
                                   for i, (s, pred) in enumerate(zip(rows_of[split], preds))]
    record.curves = [{"approach": "candidate", **c} for c in candidate.curves] if candidate else []
    record.gates = [v.row() for v in verdicts.values()]


def _approach_row(a: Approach, adapter_path: str | None = None, adapter_sha256: str | None = None) -> dict:
    return {"approach": a.name, "kind": a.kind, "config": {**a.config, **a.calibration},
            "prompt_tokens": a.prompt_tokens, "generated_tokens": a.generated_tokens,
            "latency_p50_ms": a.latency_p50_ms, "latency_p95_ms": a.latency_p95_ms,
            "train_seconds": a.train_seconds, "adapter_path": adapter_path, "adapter_sha256": adapter_sha256}
