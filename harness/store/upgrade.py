"""Rows written by an older harness, brought to today's shape in one place.

The schema's migrations (db.py) add columns; the shapes inside JSON columns changed too, and
a column added later is NULL on the runs written before it. `upgrade_run` fills those in from
what the old run did record, so every reader sees one shape. Each step names the shape it
upgrades; none of them changes a value a newer run wrote.
"""
from __future__ import annotations

import math

from harness.judge.outcomes import FIVE_PERCENT_RULE

# Settings of the five-percent rule that old runs kept only in the run's config
_RULE_SETTINGS = ("threshold", "relative", "confidence", "metric")


def upgrade_run(run: dict, gates: list[dict], approaches: list[dict], metrics: list[dict]) -> None:
    """Upgrade one run's decoded rows in place (run, its gates, approaches and metrics)."""
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    run["config"] = config
    run["provenance"] = run.get("provenance") if isinstance(run.get("provenance"), dict) else {}
    for gate in gates:
        if not isinstance(gate.get("details"), dict):  # no details recorded (the earliest stores)
            gate["details"] = {}
    rule = next((g["details"] for g in gates if g["gate"] == FIVE_PERCENT_RULE), {})

    # the candidate's mean score was stored as "candidate" before "candidate_score"
    if "candidate_score" not in rule and isinstance(rule.get("candidate"), (int, float)):
        rule["candidate_score"] = rule["candidate"]
    # the rule's settings were read from the run's config before the gate wrote them
    for key in _RULE_SETTINGS:
        if key not in rule and rule and config.get(key) is not None:
            rule[key] = config[key]
    if not run.get("key_metric"):
        run["key_metric"] = rule.get("metric") or config.get("metric")

    for a in approaches:
        a["config"] = a.get("config") if isinstance(a.get("config"), dict) else {}
        # before the text was stored, "system_prompt" held the prompt file's path
        a_config = a["config"]
        if "system_prompt_file" not in a_config and a.get("kind") == "candidate" and a_config.get("system_prompt"):
            a_config["system_prompt_file"], a_config["system_prompt"] = a_config["system_prompt"], None

    if not run.get("best_baseline"):
        run["best_baseline"] = _best_baseline_of_old_run(rule, approaches, metrics, run["key_metric"])


def _best_baseline_of_old_run(rule: dict, approaches: list[dict], metrics: list[dict], key: str | None) -> str | None:
    """A run recorded before `runs.best_baseline`: the baseline its five-percent rule named,
    else (no rule was judged) the best baseline on val, then on test, as the engine picked."""
    baselines = [a["approach"] for a in approaches if a.get("kind") == "baseline"]
    scored = {m["approach"] for m in metrics}
    named = rule.get("baseline")
    if named in baselines or named in scored:
        return named
    if not baselines or key is None:
        return baselines[0] if baselines else None
    for split in ("val", "test"):
        found = [(m["value"], m["approach"]) for m in metrics
                 if m["approach"] in baselines and m["split"] == split and m["metric"] == key
                 and isinstance(m["value"], (int, float)) and math.isfinite(m["value"])]
        if found:
            return max(found)[1]
    return baselines[0]
