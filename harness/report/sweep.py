"""The hyperparameter sweep section: which configuration won, what the sweep cost, its trials drawn.

Its trials are the store's sweep_trials rows of one Optuna study (see read.py for which study);
the winner is marked by the same rule that picked the candidate (`best_of_trials` in the store).
"""
from __future__ import annotations

import json
from typing import Any

from markupsafe import Markup

from harness.report.format import finite_or_none, fmt_float, fmt_num, fmt_tokens, is_finite, shorten
from harness.report.svg import TRIAL_COLORS, line_chart, scatter_chart, wants_log_axis
from harness.store.db import best_of_trials
from harness.store.record import Trial

TRIAL_STATES = ("COMPLETE", "PRUNED", "FAIL")
_STATE_LABELS = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}
# searched across decades (1e-5 .. 1e-3): on a linear axis every trial but the largest would
# bunch against the left edge
LOG_X_PARAMS = {"learning_rate"}


def sweep_section(found: dict, run_key: str | None) -> dict:
    """The sweep section: which configuration won, what the sweep cost, and its trials drawn."""
    # the same pick as the one that made the candidate: higher is better for the sweep's objective,
    # ties go to the earlier trial
    winner = best_of_trials(found["trials"])
    trials = [_trial(t) for t in found["trials"]]
    best = next((t for t in trials if winner is not None and t["number"] == winner.number), None)
    params = _searched_params(trials)
    for t in trials:
        t["best"] = t is best
        t["this_run"] = found["from_run"] and t["number"] == found["run_trial"]
        t["param_texts"] = [_param_text(t["params"][p]) if p in t["params"] else "—" for p in params]
    metric = next((t["key_metric"] for t in trials if t["key_metric"]), None) or run_key or "key metric"
    return {
        "study": found["study"], "from_run": found["from_run"], "named": found["named"],
        "run_trial": found["run_trial"], "metric": metric, "count": len(trials),
        "states": {s: sum(1 for t in trials if t["state"] == s) for s in TRIAL_STATES},
        "steps": {s: sum(t["steps"] or 0 for t in trials if t["state"] == s) for s in TRIAL_STATES},
        "steps_total": sum(t["steps"] or 0 for t in trials),
        "seconds": sum(t["seconds"] or 0 for t in trials),
        "best": best, "best_params": ", ".join(f"{k}={_param_text(v)}" for k, v in best["params"].items())
        if best else None,
        "params": params, "rows": trials,
        # a setting every trial shared (a fixed value such as evals_per_epoch) has nothing to plot
        "scatters": [{"param": p, "svg": _sweep_scatter(p, trials, metric)} for p in params
                     if len({_param_text(t["params"].get(p)) for t in trials}) > 1],
        "curves_svg": _sweep_curves(trials),
    }


def _trial(trial: Trial) -> dict:
    """One stored trial as the section shows it: numbers finite or None."""
    state = str(trial.state or "?").upper()
    return {"number": trial.number, "state": state, "state_label": _STATE_LABELS.get(state, state.lower()),
            "params": trial.params, "key_metric": trial.key_metric, "value": finite_or_none(trial.value),
            "steps": finite_or_none(trial.steps), "seconds": finite_or_none(trial.seconds), "worker": trial.worker,
            "error": trial.error, "curves": trial.curves}


def _searched_params(trials: list[dict]) -> list[str]:
    """Every setting any trial set, in the order they first appear."""
    names: list[str] = []
    for t in trials:
        names += [k for k in t["params"] if k not in names]
    return names


def _param_text(value: Any) -> str:
    if isinstance(value, float):
        return fmt_float(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _trial_kind(trial: dict) -> str:
    if trial["best"]:
        return "best"
    return {"PRUNED": "pruned", "FAIL": "failed"}.get(trial["state"], "complete")


def _sweep_scatter(param: str, trials: list[dict], metric: str) -> Markup | None:
    """The validation score of each trial against one searched setting; failed trials have neither."""
    tried = [t for t in trials if param in t["params"] and t["state"] != "FAIL"]
    values = [t["params"][param] for t in tried]
    numeric = all(is_finite(v) for v in values)
    categories = [] if numeric else sorted({_param_text(v) for v in values})
    log_x = param in LOG_X_PARAMS and numeric and all(v > 0 for v in values)
    points = []
    for t, v in zip(tried, values):
        kind = _trial_kind(t)
        outcome = (f"pruned after {fmt_tokens(t['steps'])} steps" if kind == "pruned"
                   else f"{metric} {fmt_num(t['value'])}")
        points.append({"x": v if numeric else categories.index(_param_text(v)), "y": t["value"], "kind": kind,
                       "label": f"trial #{t['number']}: {param}={_param_text(v)}, {outcome}"})
    return scatter_chart(points, x_label=shorten(param, 40) + (" (log scale)" if log_x else ""),
                         y_label=f"{shorten(metric, 24)} on val", title=f"{metric} on val against {param}",
                         log_x=log_x, categories=categories)


def _sweep_curves(trials: list[dict]) -> Markup | None:
    """Every trial's validation loss on one chart; pruned and failed ones dashed, where they stopped."""
    series, kinds = [], set()
    for t in sorted(trials, key=lambda t: t["best"]):  # the best drawn last, on top
        points = sorted(((c["step"], c.get("loss")) for c in t["curves"]
                         if c.get("split") == "val" and is_finite(c.get("step"))), key=lambda p: p[0])
        if not points:
            continue
        kind = _trial_kind(t)
        kinds.add(kind)
        series.append({"label": f"trial #{t['number']} ({t['state_label']})", "points": points,
                       "color": TRIAL_COLORS[kind], "markers": True, "dashed": kind in ("pruned", "failed"),
                       "legend": False})
    if not series:
        return None
    best = next((t for t in trials if t["best"]), None)
    # one legend entry per kind of line, not per trial: a sweep's dozens of trials would not fit
    legend = [{"label": f"best (#{best['number']})" if kind == "best" else kind, "points": [],
               "color": TRIAL_COLORS[kind], "dashed": kind in ("pruned", "failed")}
              for kind in ("best", "complete", "pruned", "failed") if kind in kinds]
    losses = [y for s in series for _, y in s["points"] if is_finite(y)]
    log_y = wants_log_axis(losses)
    return line_chart(legend + series, x_label="training step",
                      y_label="validation loss (log scale)" if log_y else "validation loss",
                      title="validation loss of every trial", log_y=log_y, width=720, height=300)

