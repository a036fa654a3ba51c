"""The history table: every run of an experiment, newest first, with what changed since the one before.

A change is read from what the store recorded: config keys, data and test-split hashes, the
model and its weights, and the git commit in the provenance.
"""
from __future__ import annotations

import json
from typing import Any

from harness.report.format import shorten
from harness.report.summary import run_summary, verdict
from harness.store.record import Run, StoredRun

MAX_CONFIG_CHANGES = 8   # config keys listed per run; the rest are counted


def history(runs: list[StoredRun], shown: StoredRun | None) -> list[dict]:
    """One row per run (runs oldest first, rows newest first): its verdict, its summary if it
    completed, its error if it failed, and what changed since the run before it."""
    rows = []
    for i, stored in enumerate(runs):
        run = stored.run
        s = run_summary(stored) if run.status == "complete" else None
        rows.append({"run_id": run.run_id, "started_at": run.started_at, "status": run.status,
                     "summary": s, "verdict": verdict(stored), "shown": stored is shown,
                     "error": run.error, "changes": changes(run, [r.run for r in runs[:i]])})
    return list(reversed(rows))


def changes(run: Run, earlier: list[Run]) -> list[str]:
    """What changed since the previous run: config keys, data, model, test split, code."""
    if not earlier:
        return ["first run"]
    prev = earlier[-1]
    changes = []
    a, b = _flatten(prev.config), _flatten(run.config)
    keys = sorted(set(a) | set(b))
    diff = [k for k in keys if a.get(k) != b.get(k)]
    for k in diff[:MAX_CONFIG_CHANGES]:
        changes.append(f"config {k}: {shorten(a.get(k, '(absent)'))} → {shorten(b.get(k, '(absent)'))}")
    if len(diff) > MAX_CONFIG_CHANGES:
        changes.append(f"… and {len(diff) - MAX_CONFIG_CHANGES} more config keys")

    def last(field):  # the field as of the most recent earlier run that recorded it
        for r in reversed(earlier):
            if getattr(r, field):
                return getattr(r, field)
        return None

    def prov_commit(r):
        return r.provenance.get("git_commit")

    for field, label in (("data_sha256", "data changed"), ("test_sha256", "test split changed"),
                         ("model", "model changed"), ("model_sha256", "model weights changed")):
        before, now = last(field), getattr(run, field)
        if before and now and before != now:
            if field == "model":
                label = f"model {before} → {now}"
            changes.append(label)
    commits = [c for c in (prov_commit(r) for r in earlier) if c]
    now_commit = prov_commit(run)
    if commits and now_commit and commits[-1] != now_commit:
        changes.append(f"code {commits[-1][:8]} → {now_commit[:8]}")
    return changes or ["nothing recorded changed"]


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A nested config as dotted keys (candidate.learning_rate) to JSON text, to compare key by key."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix or "(config)": json.dumps(value, sort_keys=True, default=str)}
