"""What the report reads from the store: every experiment's runs, and the detail of the run it shows.

The store decodes its JSON columns; nothing here issues SQL or decodes anything again.
"""
from __future__ import annotations

from harness.store import Store


def load_experiments(store: Store) -> dict[str, dict]:
    """Every experiment's runs with their metrics, gates and approaches; the shown run's detail.

    experiment -> {runs (oldest first), shown (the latest complete run, or None), sweep}.
    """
    metrics = store.rows_by_run("metrics")
    gates = store.rows_by_run("gates")
    approaches = store.rows_by_run("approaches")
    out: dict[str, dict] = {}
    for run in store.runs():
        rid = run["run_id"]
        run["metrics"] = metrics.get(rid, [])
        run["gates"] = gates.get(rid, [])
        run["approaches"] = approaches.get(rid, [])
        out.setdefault(run["experiment"], {"runs": []})["runs"].append(run)
    for name, experiment in out.items():
        complete = [r for r in experiment["runs"] if r["status"] == "complete"]
        shown = complete[-1] if complete else None
        experiment["shown"] = shown
        if shown is not None:
            rid = shown["run_id"]
            shown["checks"] = store.rows("checks", rid)
            shown["curves"] = store.rows("curves", rid)
            shown["predictions"] = store.rows("predictions", rid, split="test")
        experiment["sweep"] = _load_sweep(store, name, shown) if shown is not None else None
        latest = experiment["runs"][-1]
        if latest is not shown and latest["status"] == "failed":
            latest["checks"] = store.rows("checks", latest["run_id"])
    return out


def _load_sweep(store: Store, experiment: str, run: dict) -> dict | None:
    """The sweep trials to show beside a run: the study its candidate came from, else the
    experiment's most recent study (by its last finished trial), else None."""
    origin = _sweep_origin(run)
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
        when = str(t.get("finished_at") or t.get("started_at") or "")
        last_finished[t["study"]] = max(last_finished.get(t["study"], ""), when)
    study = max(last_finished, key=lambda s: (last_finished[s], s))
    return {"study": study, "trials": [t for t in trials if t["study"] == study], "from_run": False,
            "named": named, "run_trial": None}


def _sweep_origin(run: dict) -> dict:
    """The `sweep` entry ({study, trial, params}) of the run's candidate config; {} if it has none."""
    for a in run["approaches"]:
        if a["kind"] == "candidate" and (a["config"] or {}).get("sweep"):
            return a["config"]["sweep"]
    return {}
