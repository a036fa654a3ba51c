"""What the report reads from the store: every experiment's runs, and the detail of the run it shows.

The store gives typed, upgraded records (harness/store/record.py); nothing here issues SQL or
decodes anything.
"""
from __future__ import annotations

from harness.store import Store
from harness.store.record import StoredRun


def load_experiments(store: Store) -> dict[str, dict]:
    """Every experiment's runs with their metrics, gates and approaches; the shown run's detail.

    experiment -> {runs (StoredRun, oldest first), shown (the latest complete run, with its
    detail, or None), sweep}.
    """
    grouped: dict[str, list[StoredRun]] = {}
    for stored in store.stored_runs():
        grouped.setdefault(stored.run.experiment, []).append(stored)
    out: dict[str, dict] = {}
    for name, runs in grouped.items():
        complete = [i for i, r in enumerate(runs) if r.run.status == "complete"]
        shown = None
        if complete:
            runs[complete[-1]] = shown = store.with_detail(runs[complete[-1]])
        if runs[-1] is not shown and runs[-1].run.status == "failed":
            runs[-1] = store.with_detail(runs[-1])  # its checks say why it failed
        out[name] = {"runs": runs, "shown": shown,
                     "sweep": _load_sweep(store, name, shown) if shown is not None else None}
    return out


def _load_sweep(store: Store, experiment: str, shown: StoredRun) -> dict | None:
    """The sweep trials to show beside a run: the study its candidate came from, else the
    experiment's most recent study (by its last finished trial), else None."""
    origin = (shown.candidate.config.get("sweep") if shown.candidate else None) or {}
    named = origin.get("study")
    if named is not None:
        trials = store.trials(study=named, experiment=experiment)
        if trials:
            return {"study": named, "trials": trials, "from_run": True, "named": named,
                    "run_trial": origin.get("trial")}
    trials = store.trials(experiment=experiment)
    if not trials:
        return None
    last_finished: dict[str, str] = {}
    for t in trials:
        when = str(t.finished_at or t.started_at or "")
        last_finished[t.study] = max(last_finished.get(t.study, ""), when)
    study = max(last_finished, key=lambda s: (last_finished[s], s))
    return {"study": study, "trials": [t for t in trials if t.study == study], "from_run": False,
            "named": named, "run_trial": None}
