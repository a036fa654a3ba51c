"""What the measured results recommend: one action of the usual decision guide (prompt first;
retrieval for missing knowledge; fine-tune for behaviour, style and format; a smaller
fine-tuned model for cost and latency), with the numbers behind it.

The verdict comes from `judge.decision`; this module only chooses the action within it and
says why. So the action always belongs to the verdict's group (`ACTIONS_BY_VERDICT`). The
rules are written out in docs/decision.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.judge import decision, power
from harness.judge.decision import FINE_TUNE, INCONCLUSIVE_VERDICT, KEEP_PROMPTING
from harness.judge.outcomes import FAIL, FIVE_PERCENT_RULE, OVERFIT, GateResult
from harness.judge.pricing import ApproachCost, CostView, calls_text, cost_view, format_cost, money
from harness.judge.units import uplift_text

# After an overfit FAIL: what to change is read off validation, never off the test score (a
# training choice tuned on test would make the next verdict on those rows optimistic).
OVERFIT_ADVICE = ("train again keeping the best validation checkpoint (early_stopping_patience), with fewer epochs "
                  "or with more training rows, chosen on validation loss alone, never on the test score; the "
                  "retrained candidate's verdict is another look at the test rows")

KEEP, RETRIEVE, MORE_DATA, TUNE, TUNE_SMALLER = ("keep prompting", "use retrieval", "collect more data", "fine-tune",
                                                "fine-tune a smaller model")
ACTIONS = (KEEP, TUNE, TUNE_SMALLER, MORE_DATA, RETRIEVE)
ACTIONS_BY_VERDICT = {KEEP_PROMPTING: {KEEP, RETRIEVE}, INCONCLUSIVE_VERDICT: {MORE_DATA, RETRIEVE},
                      FINE_TUNE: {TUNE, TUNE_SMALLER}}

# "Fine-tune a smaller model" needs a model with smaller siblings worth trying: below ~1B
# parameters the common families (SmolLM2, Qwen2.5, Llama 3.2) have little room left.
SMALLER_MODEL_MIN_PARAMS = 1_000_000_000
# ...and a win wide enough that a smaller model would likely still clear the bar: the lower
# end of the uplift's interval at least this many times the threshold.
HEADROOM = 2.0
_RULE_NUMBERS = {"uplift", "low", "high", "baseline", "candidate_score", "baseline_score", "n"}


@dataclass
class Recommendation:
    action: str                                 # one of ACTIONS
    verdict: str                                # the run's verdict (judge.decision) the action belongs to
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"action": self.action, "verdict": self.verdict, "reasons": list(self.reasons)}


def _uplift_reason(d: dict) -> str:
    relative = d.get("relative", True)
    conf = d.get("confidence", 0.95) * 100
    bar = f"{d['threshold'] * 100:g}" + ("%" if relative else " pts")
    return (f"the candidate scores {d.get('metric', 'the key metric')} {d['candidate_score']:.3f} vs "
            f"{d['baseline']} {d['baseline_score']:.3f}: {uplift_text(d['uplift'], relative)} "
            f"({conf:g}% CI {uplift_text(d['low'], relative)}..{uplift_text(d['high'], relative)}) against a {bar} bar "
            f"on {d['n']} paired test rows")


def _prompt_reason(candidate: ApproachCost, baseline: ApproachCost) -> str | None:
    parts = []
    if candidate.prompt_tokens and baseline.prompt_tokens:
        ratio = baseline.prompt_tokens / candidate.prompt_tokens
        how = f"{ratio:.1f}x shorter" if ratio >= 1 else f"{1 / ratio:.1f}x longer"
        parts.append(f"its prompt is {candidate.prompt_tokens:.0f} tokens vs {baseline.prompt_tokens:.0f} for "
                     f"{baseline.name} ({how})")
    if candidate.latency_ms is not None and baseline.latency_ms is not None:
        parts.append(f"{candidate.latency_ms:.0f} ms vs {baseline.latency_ms:.0f} ms per call (p50)")
        if (candidate.latency_ms > baseline.latency_ms and candidate.prompt_tokens and baseline.prompt_tokens
                and candidate.prompt_tokens < baseline.prompt_tokens):
            parts.append("slower despite the shorter prompt because it was timed with the adapter unmerged "
                         "(two extra matmuls in every targeted layer); a merged export (`harness export`) has "
                         "no adapter to run")
    return ", ".join(parts) or None


def _cost_reason(view: CostView, baseline: ApproachCost) -> str | None:
    c = view.candidate
    if c is None or c.cost_per_million is None or baseline.cost_per_million is None:
        return None
    text = (f"at {money(view.gpu_hour_price)}/GPU-hour it costs {money(c.cost_per_million)} vs "
            f"{money(baseline.cost_per_million)} per million calls, plus {money(c.training_cost)} of training once")
    if baseline.break_even_calls is None:
        text += "; it never pays back, being no cheaper per call"
    else:
        text += f"; it pays back after {calls_text(baseline.break_even_calls)} calls"
        if view.calls is not None:
            text += (f" ({'within' if view.calls >= baseline.break_even_calls else 'beyond'} the "
                     f"{calls_text(view.calls)} priced)")
    return text


def _retrieved(approaches: list, name: str | None) -> bool:
    """Whether the named baseline is a retrieval baseline (its config names a knowledge source)."""
    found = next((a for a in approaches if a.name == name), None)
    return found is not None and bool(found.config.get("knowledge"))


def recommend(gates: list[GateResult], approaches: list, task: str | None, cost_view: CostView | None = None,
              knowledge_task: bool = False, *, model_params: int | None = None) -> Recommendation:
    """The action the measured results support, within the run's verdict, with the numbers behind it.

    gates: the run's gate outcomes; approaches: its approaches (`store.record.ApproachRecord`).
    knowledge_task: the spec says the task needs facts the base model may lack.
    model_params: the base model's parameter count (else the candidate config's total_params).
    """
    found = decision.decide(gates)
    rule = found.rule
    details = rule.details if rule is not None else {}
    candidate = next((a for a in approaches if a.kind == "candidate"), None)
    if model_params is None and candidate is not None:
        model_params = candidate.config.get("total_params")
    reasons: list[str] = []

    def said(action: str, *more: str) -> Recommendation:
        return Recommendation(action, found.verdict, reasons + [m for m in more if m])

    def costs() -> list[str]:
        if cost_view is None or cost_view.candidate is None or not details.get("baseline"):
            return []
        try:
            base = cost_view.row(details["baseline"])
        except KeyError:
            return []
        return [r for r in (_prompt_reason(cost_view.candidate, base), _cost_reason(cost_view, base)) if r]

    if candidate is None or not found.candidate_judged:
        reasons.append("no fine-tuned candidate was run: " + (rule.message if rule is not None and rule.message
                                                               else "baselines only"))
        if knowledge_task:
            return said(RETRIEVE, "the spec marks this a knowledge task: give the model the facts at call time "
                                  "(retrieval) before trying to train them in")
        return said(KEEP)

    if _RULE_NUMBERS <= set(details) and "threshold" in details:
        reasons.append(_uplift_reason(details))
    elif rule.message:
        reasons.append(f"{FIVE_PERCENT_RULE} {rule.outcome}: {rule.message}")

    if found.verdict == KEEP_PROMPTING:
        if found.deciding is not rule:  # another gate showed harm (the rule passed or is unsettled)
            gate = found.deciding
            reasons.append(f"but the {gate.gate} gate is {gate.outcome}: {gate.message}; the fine-tune costs more "
                           f"than it gains")
            return Recommendation(KEEP, found.verdict, reasons + costs())
        reasons.append("the fine-tune does not clear the bar, so the prompt stays: it is cheaper to change "
                       "and needs no training")
        if knowledge_task:
            reasons.append(f"a knowledge task where the best prompt scores {details.get('baseline_score', 0):.3f}"
                           f" and training did not close the gap: retrieve the facts instead")
            return Recommendation(RETRIEVE, found.verdict, reasons + costs())
        return Recommendation(KEEP, found.verdict, reasons + costs())

    if found.verdict == INCONCLUSIVE_VERDICT:
        if found.deciding is not rule:  # the rule passed; another gate leaves the win unsettled
            gate = found.deciding
            how = " (allowed by the spec, so CI goes on)" if decision.allowed(gate) and found.passed else ""
            more = ("more training rows (or fewer epochs) before trusting the win" if gate.outcome == FAIL
                    else "more evidence for that gate before trusting the win")
            if gate.gate == OVERFIT and gate.outcome == FAIL:
                more = OVERFIT_ADVICE
            reasons.append(f"but the {gate.gate} gate is {gate.outcome}{how}: {gate.message}; {more}")
            return Recommendation(MORE_DATA, found.verdict, reasons + costs())
        if knowledge_task and _retrieved(approaches, details.get("baseline")):
            # retrieval was measured, and it is what the candidate could not be told apart from
            reasons.append(f"a knowledge task where retrieval was measured ({details['baseline']}, "
                           f"{details.get('baseline_score', 0):.3f}) and did not settle it either")
        elif knowledge_task:
            reasons.append(f"a knowledge task where the best prompt scores {details.get('baseline_score', 0):.3f} "
                           f"and the fine-tune's uplift is not established: retrieval adds the missing facts "
                           f"without betting on training")
            return Recommendation(RETRIEVE, found.verdict, reasons + costs())
        planned = details.get("power") or {}
        if details.get("looks_spent"):  # the ledger of looks: these rows may not be judged again
            budget = details.get("looks_budget")
            more = (f"this was look {details.get('look')} of {budget} at these test rows, so the budget of looks "
                    f"declared at their first look is spent: draw a fresh test split (fresh_test=True in the spec, "
                    f"with rows never judged added to the data) instead of re-judging these rows or a superset of them")
        elif planned.get("rows_80") and planned["rows_80"] < power.MAX_ROWS:
            more = (f"about {calls_text(planned['rows_50'])}-{calls_text(planned['rows_80'])} test rows would give "
                    f"50%-80% power if the true uplift is {uplift_text(planned['alternative'], planned['relative'])} "
                    f"({planned['alternative_is']}); {details.get('n', 0)} now. Draw them as a fresh test split: "
                    f"rows already judged make the next verdict a second look")
        else:
            more = "no test split of a practical size would settle it at this per-row spread"
        return Recommendation(MORE_DATA, found.verdict, reasons + [f"not shown to clear the bar: {more}"]
                              + costs())

    reasons += costs()
    if knowledge_task:
        reasons.append("note: this is a knowledge task; facts trained into weights go stale, so retrieval "
                       "stays the fit if they change")
        return Recommendation(TUNE, found.verdict, reasons)
    threshold = details["threshold"]
    headroom = _RULE_NUMBERS <= set(details) and details["low"] >= HEADROOM * threshold
    serving = training = None
    if cost_view is not None and cost_view.candidate is not None and cost_view.calls is not None:
        serving, training = cost_view.candidate.cost_at_volume, cost_view.candidate.training_cost
    serving_dominates = serving is not None and serving > training
    big = model_params is not None and model_params >= SMALLER_MODEL_MIN_PARAMS
    if headroom and serving_dominates and big:
        reasons.append(f"the win has headroom (CI low end {uplift_text(details['low'], details.get('relative', True))} "
                       f"vs a {threshold * 100:g}% bar) and at {calls_text(cost_view.calls)} calls serving "
                       f"({money(serving)}) outweighs training ({money(training)}): a smaller base "
                       f"({model_params / 1e9:.1f}B now) fine-tuned the same way would likely still pass and cost "
                       f"less per call; run the experiment again with a smaller model= to confirm")
        return Recommendation(TUNE_SMALLER, found.verdict, reasons)
    what = "behaviour, style and format" if task == "generation" else "a task prompting does not get right"
    reasons.append(f"every gate passed: fine-tuning pays for {what} here")
    return Recommendation(TUNE, found.verdict, reasons)


def format_summary(view: CostView | None, recommendation: Recommendation | None) -> list[str]:
    """Lines for the terminal summary: the cost table, then the action and its reasons."""
    lines = format_cost(view) if view is not None else []
    if recommendation is not None:
        lines.append(f"recommendation: {recommendation.action}")
        lines += [f"  - {reason}" for reason in recommendation.reasons]
    return lines


def for_run(stored, *, gpu_hour_price: float | None = None, calls: int | None = None,
            knowledge_task: bool | None = None) -> tuple[CostView | None, Recommendation]:
    """The cost view and recommendation of a stored run (`store.record.StoredRun`), from what
    the store recorded alone (for the report and the terminal summary).

    Price, volume and the knowledge-task flag come from the arguments (the command line) when
    given, else from the run's spec (`gpu_hour_price`, `calls`, `knowledge_task` in its config);
    without a price there is no cost view, and the recommendation rests on the gates alone.
    """
    run, approaches, gates = stored.run, stored.approaches, stored.gates
    price = gpu_hour_price if gpu_hour_price is not None else run.config.get("gpu_hour_price")
    volume = calls if calls is not None else run.config.get("calls")
    knowledge = knowledge_task if knowledge_task is not None else bool(run.config.get("knowledge_task", False))
    view = None
    if price:
        reference = run.best_baseline
        if reference not in {a.name for a in approaches if a.kind == "baseline"}:
            reference = None
        hardware = run.provenance.get("hardware") or {}
        view = cost_view(approaches, price, volume, reference=reference,
                         device=hardware.get("gpu") or hardware.get("device"))
    return view, recommend(gates, approaches, run.task, view, knowledge)
