"""Caching model work by what determines it, so an unchanged rerun recomputes nothing.

An output's key hashes the model (base weights hash, adapter hash), the exact rendered
prompt (template, system prompt, few-shot examples and input all live in it), the
decoding parameters and the label set. An adapter's key hashes the base weights, the
QLoRA config and the training and validation rows. Changing a threshold touches none of
these: the gates re-judge from cached outputs without training or generating.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from harness.files import adapter_sha256
from harness.scoring.scored import Scored

# Bump when a change in scoring or training code changes outputs for the same inputs.
CODE_VERSION = "2"  # 2: baselines scored after training ran on an adapter-carrying base (fixed)


def digest(*parts) -> str:
    h = hashlib.sha256(CODE_VERSION.encode())
    for part in parts:
        h.update(b"\x1f")
        h.update(part.encode() if isinstance(part, str) else json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


def cached_score(store, model_id: str, load_model: Callable[[], object], score: Callable[[object, list[str]],
                 Scored], prompts: list[str], decoding: dict) -> tuple[Scored, int]:
    """Score `prompts`, computing only those whose outputs are not cached yet; also says how many were computed."""
    keys = [digest(model_id, decoding, p) for p in prompts]
    hits = store.cached_outputs(keys) if store is not None else {}
    missing = [i for i, k in enumerate(keys) if k not in hits]
    if missing:
        fresh = score(load_model(), [prompts[i] for i in missing])
        rows = []
        for j, i in enumerate(missing):
            rows.append({"key": keys[i], "prediction": fresh.predictions[j],
                         "label_logprobs": json.dumps(fresh.label_logprobs[j]) if fresh.label_logprobs else None,
                         "latency_ms": fresh.latencies_ms[j], "prompt_tokens": fresh.prompt_tokens[j],
                         "generated_tokens": fresh.generated_tokens[j] if fresh.generated_tokens else None})
        if store is not None:
            store.cache_outputs(rows)
        hits.update({r["key"]: r for r in rows})
    entries = [hits[k] for k in keys]
    logprobs = [json.loads(e["label_logprobs"]) if e["label_logprobs"] else {} for e in entries]
    return Scored(
        predictions=[e["prediction"] for e in entries],
        latencies_ms=[e["latency_ms"] for e in entries],
        prompt_tokens=[e["prompt_tokens"] for e in entries],
        label_logprobs=logprobs if any(logprobs) else [],
        generated_tokens=[e["generated_tokens"] or 0 for e in entries],
    ), len(missing)


def adapter_key(base_sha256: str, config: dict, train_rows: list[dict], val_rows: list[dict]) -> str:
    return digest(base_sha256, config, train_rows, val_rows)


def usable_adapter(entry: dict | None) -> bool:
    """A cached adapter counts only if its files are still there, unchanged."""
    if not entry:
        return False
    path = Path(entry["adapter_path"])
    return any(path.glob("*.safetensors")) and adapter_sha256(path) == entry["adapter_sha256"]
