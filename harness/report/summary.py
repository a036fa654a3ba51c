"""What a run says: its headline numbers, its verdict and the sentence under it.

The verdict is not worked out here: it is `harness.judge.decision`'s, asked with the run's
gates and status, the same decider the pytest items, export and the CLI ask.
"""
from __future__ import annotations

from harness.judge import decision, power
from harness.judge.decision import FINE_TUNE, KEEP_PROMPTING
from harness.judge.outcomes import FAIL, FIVE_PERCENT_RULE, PASS, SKIP
from harness.report.format import badge_class, finite_or_none, fmt_threshold, fmt_uplift
from harness.store.record import StoredRun


def run_summary(stored: StoredRun) -> dict:
    """The headline numbers of one run: scores, uplift and interval, verdict."""
    run, rule = stored.run, stored.gate(FIVE_PERCENT_RULE)
    details = rule.details if rule else {}
    candidate = stored.candidate.name if stored.candidate else None
    baseline = run.best_baseline

    def number(key, fallback=None):
        value = finite_or_none(details.get(key))
        return finite_or_none(fallback) if value is None else value

    relative = details.get("relative", run.config.get("relative", True))
    return {
        "run_id": run.run_id, "status": run.status, "key": run.key_metric, "candidate": candidate,
        "baseline": baseline,
        "candidate_score": number("candidate_score", stored.score(candidate)),
        "baseline_score": number("baseline_score", stored.score(baseline)),
        "uplift": number("uplift"), "low": number("low"), "high": number("high"),
        "n": details.get("n"), "mcnemar_p": number("mcnemar_p"),
        "threshold": number("threshold", run.config.get("threshold")),
        "relative": bool(relative) if relative is not None else True,
        "confidence": number("confidence", run.config.get("confidence")),
        "rule_outcome": rule.outcome if rule else None,
        "planned": power.PowerStatement(**details["planned"]).text() if details.get("planned") else None,
        "verdict": verdict(stored),
    }


def verdict(stored: StoredRun) -> dict:
    """The run's verdict as `judge.decision` decides it, for the badge: label, class, why, and
    the INCONCLUSIVE gates the spec let through (named, so no pass is silent)."""
    found = run_decision(stored)
    return {"label": found.verdict, "cls": badge_class(found.verdict), "reason": found.reason,
            "ci_passed": found.passed, "allowed": decision.allowed_notes(found)}


def run_decision(stored: StoredRun) -> decision.Decision:
    """`judge.decision`'s decision for a stored run, from its gates and status."""
    return decision.decide(stored.gates, status=stored.run.status)


def headline(summary: dict, found: decision.Decision) -> str:
    """One sentence under the verdict that says what it means, for the gate that decided it."""
    bar = fmt_threshold(summary["threshold"], summary["relative"])
    key, base = summary["key"] or "the key metric", summary["baseline"] or "the best baseline"
    uplift = fmt_uplift(summary["uplift"], summary["relative"])
    interval = _interval_text(summary)
    rule, deciding = found.rule, found.deciding
    allowed = " The spec allows this INCONCLUSIVE, so CI goes on; the verdict stays open." \
        if deciding is not None and decision.allowed(deciding) and found.passed else ""
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
    holm = rule.details.get("family") or {}
    if deciding is rule and rule.details.get("outcome_alone") == PASS and holm:
        return (f"The uplift over {base} is {uplift}{interval}, clearing the {bar} bar on its own, but not as one "
                f"of the {holm['size']} experiments judged together in this session (Holm: ranked {holm['rank']}, "
                f"p={holm['p_at_bar']:.3g} against {holm['alpha_one_sided']:.3g}): not shown at the family "
                f"level.{allowed}")
    if deciding is rule and rule.details.get("exact_gain_p") is not None:
        return (f"The uplift over {base} is {uplift}{interval}, an interval that clears the {bar} bar, but it "
                f"rests on {sum(rule.details.get('discordant') or ())} rows where the two answers differ, and "
                f"the exact test on them does not confirm any gain: too few to decide.{allowed}")
    if deciding is rule:
        return (f"The uplift over {base} is {uplift}{interval}, an interval that straddles the {bar} bar: "
                f"the test split is too small to decide either way.{allowed}")
    if found.verdict == KEEP_PROMPTING and rule.outcome == PASS:
        return (f"The candidate clears the {bar} bar ({uplift}{interval}), but the {deciding.gate} gate failed: "
                f"the fine-tune loses more general ability than it may.")
    if found.verdict == KEEP_PROMPTING:
        return (f"The candidate's uplift over {base} is {uplift}{interval}, not shown to clear the {bar} bar, and "
                f"the {deciding.gate} gate failed: the fine-tune loses more general ability than it may, so more "
                f"test rows for the rule would not change the answer.")
    return (f"The candidate clears the {bar} bar ({uplift}{interval}), but the {deciding.gate} gate is "
            f"{deciding.outcome}, so the result can't be trusted yet.{allowed}")


def _interval_text(summary: dict) -> str:
    if summary["low"] is None or summary["high"] is None:
        return ""
    level = f"{summary['confidence'] * 100:g}% " if summary["confidence"] else ""
    return (f" ({level}CI {fmt_uplift(summary['low'], summary['relative'])} .. "
            f"{fmt_uplift(summary['high'], summary['relative'])})")


