"""What a run says: its metric table, its headline numbers, its verdict and the sentence under it.

The verdict is not worked out here: it is `harness.judge.decision`'s, asked with the run's
gates and status, the same decider the pytest items, export and the CLI ask.
"""
from __future__ import annotations

from harness.judge import decision, power
from harness.judge.decision import FINE_TUNE, KEEP_PROMPTING
from harness.judge.outcomes import FAIL, FIVE_PERCENT_RULE, SKIP, GateResult
from harness.report.format import badge_class, finite_or_none, fmt_threshold, fmt_uplift, is_finite


def metric_table(run: dict) -> dict[str, dict[str, dict[str, float]]]:
    """approach -> split -> metric -> value."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for m in run.get("metrics", []):
        table.setdefault(m["approach"], {}).setdefault(m["split"], {})[m["metric"]] = m["value"]
    return table


def gate_map(run: dict) -> dict[str, dict]:
    return {g["gate"]: g for g in run.get("gates", [])}


def _key_metric(run: dict) -> str | None:
    if run.get("key_metric"):
        return run["key_metric"]
    details = _details(gate_map(run).get(FIVE_PERCENT_RULE))
    return details.get("metric") or (run.get("config") or {}).get("metric")


def _details(gate: dict | None) -> dict:
    return (gate or {}).get("details") or {}


def _candidate_name(run: dict) -> str | None:
    for a in run.get("approaches", []):
        if a.get("kind") == "candidate":
            return a["approach"]
    names = {m["approach"] for m in run.get("metrics", [])}
    return "candidate" if "candidate" in names else None


def _best_baseline(run: dict, metrics: dict, key: str | None) -> str | None:
    """The best baseline as the run picked it (stored since the best_baseline migration); for
    an older run, as its five-percent rule named it, else the best on val (then test)."""
    if run.get("best_baseline"):
        return run["best_baseline"]
    named = _details(gate_map(run).get(FIVE_PERCENT_RULE)).get("baseline")
    baselines = [a["approach"] for a in run.get("approaches", []) if a.get("kind") == "baseline"]
    if named in baselines or named in metrics:
        return named
    if not baselines or key is None:
        return baselines[0] if baselines else None
    for split in ("val", "test"):
        scored = [(v, b) for b in baselines if is_finite(v := metrics.get(b, {}).get(split, {}).get(key))]
        if scored:
            return max(scored)[1]
    return baselines[0]


def run_summary(run: dict) -> dict:
    """The headline numbers of one run: scores, uplift and interval, verdict."""
    metrics = metric_table(run)
    key = _key_metric(run)
    gates = gate_map(run)
    rule = gates.get(FIVE_PERCENT_RULE)
    details = _details(rule)
    config = run.get("config") or {}
    candidate = _candidate_name(run)
    baseline = _best_baseline(run, metrics, key)

    def score(approach, split="test"):
        return metrics.get(approach, {}).get(split, {}).get(key) if approach and key else None

    cand_score = finite_or_none(details.get("candidate_score"))
    if cand_score is None:
        cand_score = finite_or_none(details.get("candidate"))
    if cand_score is None:
        cand_score = score(candidate)
    base_score = finite_or_none(details.get("baseline_score"))
    if base_score is None:
        base_score = score(baseline)
    relative = details.get("relative", config.get("relative", True))
    relative = bool(relative) if relative is not None else True
    threshold = finite_or_none(details.get("threshold"))
    if threshold is None:
        threshold = finite_or_none(config.get("threshold"))
    confidence = finite_or_none(details.get("confidence")) or finite_or_none(config.get("confidence"))
    return {
        "run_id": run["run_id"], "status": run["status"], "key": key, "candidate": candidate, "baseline": baseline,
        "candidate_score": cand_score, "baseline_score": base_score,
        "uplift": finite_or_none(details.get("uplift")), "low": finite_or_none(details.get("low")),
        "high": finite_or_none(details.get("high")),
        "n": details.get("n"), "mcnemar_p": finite_or_none(details.get("mcnemar_p")),
        "threshold": threshold, "relative": relative, "confidence": confidence,
        "rule_outcome": rule["outcome"] if rule else None,
        "planned": power.PowerStatement(**details["planned"]).text() if details.get("planned") else None,
        "verdict": verdict(run),
    }


def verdict(run: dict) -> dict:
    """The run's verdict as `judge.decision` decides it, for the badge: label, class, why, and
    the INCONCLUSIVE gates the spec let through (named, so no pass is silent)."""
    found = run_decision(run)
    return {"label": found.verdict, "cls": badge_class(found.verdict), "reason": found.reason,
            "ci_passed": found.passed, "allowed": [decision.policy_note(g) for g in found.allowed]}


def run_decision(run: dict) -> decision.Decision:
    """`judge.decision`'s decision for a stored run: its gate rows, typed, and its status."""
    return decision.decide([GateResult.from_row(g) for g in run.get("gates", [])], status=run.get("status"))


def headline(summary: dict, found: decision.Decision) -> str:
    """One sentence under the verdict that says what it means, for the gate that decided it."""
    bar = fmt_threshold(summary["threshold"], summary["relative"])
    key, base = summary["key"] or "the key metric", summary["baseline"] or "the best baseline"
    uplift = fmt_uplift(summary["uplift"], summary["relative"])
    interval = _interval_text(summary)
    rule, deciding = found.rule, found.deciding
    allowed = " The spec allows this INCONCLUSIVE, so CI goes on; the verdict stays open." \
        if deciding is not None and decision.allowed(deciding) else ""
    if rule is None:
        return "No five-percent-rule verdict was recorded for this run."
    if rule.outcome == SKIP:
        return "No candidate was fine-tuned in this run; only the prompt baselines were measured."
    if found.verdict == FINE_TUNE:
        return (f"The fine-tuned candidate beats the best prompt baseline ({base}) on {key} by {uplift}"
                f"{interval}, clearing the {bar} bar, and every other gate passed.")
    if deciding is rule and rule.outcome == FAIL:
        return (f"The fine-tuned candidate does not beat the best prompt baseline ({base}) by the {bar} bar: "
                f"uplift {uplift}{interval}. Prompting is good enough.")
    if deciding is rule and rule.details.get("exact_gain_p") is not None:
        return (f"The uplift over {base} is {uplift}{interval}, an interval that clears the {bar} bar, but it "
                f"rests on {sum(rule.details.get('discordant') or ())} rows where the two answers differ, and "
                f"the exact test on them does not confirm any gain: too few to decide.{allowed}")
    if deciding is rule:
        return (f"The uplift over {base} is {uplift}{interval}, an interval that straddles the {bar} bar: "
                f"the test split is too small to decide either way.{allowed}")
    if found.verdict == KEEP_PROMPTING:
        return (f"The candidate clears the {bar} bar ({uplift}{interval}), but the {deciding.gate} gate failed: "
                f"the fine-tune loses more general ability than it may.")
    return (f"The candidate clears the {bar} bar ({uplift}{interval}), but the {deciding.gate} gate is "
            f"{deciding.outcome}, so the result can't be trusted yet.{allowed}")


def _interval_text(summary: dict) -> str:
    if summary["low"] is None or summary["high"] is None:
        return ""
    level = f"{summary['confidence'] * 100:g}% " if summary["confidence"] else ""
    return (f" ({level}CI {fmt_uplift(summary['low'], summary['relative'])} .. "
            f"{fmt_uplift(summary['high'], summary['relative'])})")


