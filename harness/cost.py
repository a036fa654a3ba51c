"""What each approach costs to run, and what the measured results recommend.

`cost_view` prices the stored measurements. Serving cost is taken as proportional to the
device time a call uses: the median latency per example measured on the test split
(batched, as the harness scores: a batch's wall time shared across its rows), times the
price of an hour of that device:

    cost per call       = latency_p50_ms / 1000 / 3600 * price per GPU-hour
    training cost       = train_seconds / 3600 * price per GPU-hour        (once)
    break-even volume   = training cost / (baseline cost per call - candidate cost per call)

Break-even is the number of calls after which the candidate's cheaper calls have paid for
its training; there is none when the candidate is not cheaper per call. Every approach is
priced on the device the run measured it on (runs.provenance hardware); a price for another
device prices another machine's latencies only if they scale alike.

`recommend` turns gates and costs into one of the verdicts of the usual decision guide
(prompt first; retrieval for missing knowledge; fine-tune for behaviour, style and
format; a smaller fine-tuned model for cost and latency). Its rules are in its docstring
and in docs/decision.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from harness.errors import HarnessError

VERDICTS = ("keep prompting", "fine-tune", "fine-tune a smaller model", "collect more data", "use retrieval")

# "Fine-tune a smaller model" needs a model with smaller siblings worth trying: below ~1B
# parameters the common families (SmolLM2, Qwen2.5, Llama 3.2) have little room left.
SMALLER_MODEL_MIN_PARAMS = 1_000_000_000
# ...and a win wide enough that a smaller model would likely still clear the bar: the lower
# end of the uplift's interval at least this many times the threshold.
HEADROOM = 2.0


@dataclass
class ApproachCost:
    """One approach, priced. Costs are in the currency of the GPU-hour price."""

    name: str
    kind: str                         # baseline | candidate
    prompt_tokens: float | None       # mean prompt tokens per call
    latency_ms: float | None          # median device time per call (test split)
    cost_per_million: float | None    # serving cost of 1,000,000 calls
    cost_at_volume: float | None      # serving cost of `calls` calls (None when no volume was given)
    training_cost: float = 0.0        # one-off; the candidate's only
    train_seconds: float | None = None
    break_even_calls: float | None = None  # baselines: calls after which the candidate pays back vs this one


@dataclass
class CostView:
    gpu_hour_price: float
    calls: int | None                 # the call volume priced (e.g. per month); None: per million only
    rows: list[ApproachCost]
    reference: str | None             # the baseline the candidate's break-even is quoted against
    device: str | None = None

    @property
    def candidate(self) -> ApproachCost | None:
        return next((r for r in self.rows if r.kind == "candidate"), None)

    def row(self, name: str) -> ApproachCost:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def break_even_calls(self) -> float | None:
        """The candidate's break-even volume against `reference`."""
        return self.row(self.reference).break_even_calls if self.reference and self.candidate else None

    def to_dict(self) -> dict:
        return {"gpu_hour_price": self.gpu_hour_price, "calls": self.calls, "reference": self.reference,
                "device": self.device, "break_even_calls": self.break_even_calls,
                "rows": [asdict(r) for r in self.rows]}


def _retrieved(approaches: list, name: str | None) -> bool:
    """Whether the named baseline is a retrieval baseline (its config names a knowledge source)."""
    found = next((a for a in approaches if _name(a) == name), None)
    return found is not None and bool((_get(found, "config") or {}).get("knowledge"))


def _name(approach: Any) -> str | None:
    """A store row names its approach "approach"; the pipeline's Approach calls it `name`."""
    return _get(approach, "approach") or _get(approach, "name")


def _get(approach: Any, key: str, default=None):
    """Store rows are dicts; the pipeline's Approach objects have attributes."""
    if isinstance(approach, Mapping):
        return approach.get(key, default)
    return getattr(approach, key, default)


def cost_view(approaches: list, gpu_hour_price: float, calls: int | None = None, *, reference: str | None = None,
              device: str | None = None) -> CostView:
    """Price every approach (store `approaches` rows or pipeline `Approach`es).

    reference: the baseline to quote the candidate's break-even against, normally the gate's
    best baseline; None picks the baseline cheapest per call (the hardest to pay back against).
    """
    if not gpu_hour_price or gpu_hour_price <= 0:
        raise HarnessError(f"the price per GPU-hour must be positive (got {gpu_hour_price!r}), "
                           f"e.g. --gpu-hour-price 2.50")
    if calls is not None and calls < 0:
        raise HarnessError(f"the call volume must be zero or more (got {calls!r}), e.g. --calls 1000000")
    per_second = gpu_hour_price / 3600
    rows = []
    for a in approaches:
        latency = _get(a, "latency_p50_ms")
        per_call = latency / 1000 * per_second if latency is not None else None
        seconds = _get(a, "train_seconds")
        kind = _get(a, "kind") or "baseline"
        rows.append(ApproachCost(
            name=_name(a), kind=kind, prompt_tokens=_get(a, "prompt_tokens"),
            latency_ms=latency, cost_per_million=per_call * 1e6 if per_call is not None else None,
            cost_at_volume=per_call * calls if per_call is not None and calls is not None else None,
            training_cost=(seconds or 0.0) / 3600 * gpu_hour_price if kind == "candidate" else 0.0,
            train_seconds=seconds if kind == "candidate" else None))
    baselines = [r for r in rows if r.kind == "baseline"]
    if reference is not None and reference not in {r.name for r in baselines}:
        raise HarnessError(f"reference baseline {reference!r} is not among the approaches "
                           f"({', '.join(r.name for r in baselines) or 'none'})")
    candidate = next((r for r in rows if r.kind == "candidate"), None)
    if candidate is not None and candidate.cost_per_million is not None:
        for b in baselines:
            b.break_even_calls = break_even(candidate.training_cost, b.cost_per_million, candidate.cost_per_million)
    if reference is None and baselines and candidate is not None:
        priced = [b for b in baselines if b.cost_per_million is not None]
        reference = min(priced, key=lambda b: b.cost_per_million).name if priced else None
    return CostView(gpu_hour_price, calls, rows, reference, device)


def break_even(training_cost: float, baseline_per_million: float | None, candidate_per_million: float) -> float | None:
    """Calls after which training has paid for itself; None when the candidate is not cheaper per call."""
    if baseline_per_million is None:
        return None
    saving_per_call = (baseline_per_million - candidate_per_million) / 1e6
    if saving_per_call <= 0:
        return None
    return training_cost / saving_per_call


@dataclass
class Recommendation:
    verdict: str                                # one of VERDICTS
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "reasons": list(self.reasons)}


def _gate(value) -> tuple[str, str, dict]:
    """(outcome, message, details) from a gates.Verdict, a stored gates row, or a bare outcome."""
    if isinstance(value, str):
        return value, "", {}
    if isinstance(value, Mapping):
        return value.get("outcome", ""), value.get("message") or "", value.get("details") or {}
    return value.outcome, value.message, value.details or {}


def _gates(gates) -> dict[str, tuple[str, str, dict]]:
    if isinstance(gates, Mapping):
        return {name: _gate(v) for name, v in gates.items()}
    return {row["gate"]: _gate(row) for row in gates}  # a list of stored gates rows


def _pct(x: float, relative: bool) -> str:
    return f"{x * 100:+.1f}%" if relative else f"{x * 100:+.1f} pts"


def _money(x: float) -> str:
    return f"${x:,.2f}" if x >= 0.01 or x == 0 else f"${x:.2g}"


def _calls(n: float) -> str:
    return f"{n:,.0f}"


def _uplift_reason(d: dict) -> str:
    relative = d.get("relative", True)
    conf = d.get("confidence", 0.95) * 100
    bar = f"{d.get('threshold', 0.05) * 100:g}" + ("%" if relative else " pts")
    return (f"the candidate scores {d.get('metric', 'the key metric')} {d['candidate_score']:.3f} vs "
            f"{d['baseline']} {d['baseline_score']:.3f}: {_pct(d['uplift'], relative)} "
            f"({conf:g}% CI {_pct(d['low'], relative)}..{_pct(d['high'], relative)}) against a {bar} bar "
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
    text = (f"at {_money(view.gpu_hour_price)}/GPU-hour it costs {_money(c.cost_per_million)} vs "
            f"{_money(baseline.cost_per_million)} per million calls, plus {_money(c.training_cost)} of training once")
    if baseline.break_even_calls is None:
        text += "; it never pays back, being no cheaper per call"
    else:
        text += f"; it pays back after {_calls(baseline.break_even_calls)} calls"
        if view.calls is not None:
            text += (f" ({'within' if view.calls >= baseline.break_even_calls else 'beyond'} the "
                     f"{_calls(view.calls)} priced)")
    return text


def recommend(gates, approaches: list, task: str | None, cost_view: CostView | None = None,
              knowledge_task: bool = False, *, model_params: int | None = None) -> Recommendation:
    """The decision-guide verdict the measured results support, with the numbers behind it.

    gates: {gate name: gates.Verdict or stored row} or the list of stored gates rows.
    approaches: store rows or pipeline Approaches (for the candidate's config and sizes).
    knowledge_task: the spec says the task needs facts the base model may lack.
    model_params: the base model's parameter count (else the candidate config's total_params).

    Rules, first match wins:
      1. No candidate ran (five_percent_rule missing or SKIP): "keep prompting" ("use retrieval"
         for a knowledge task): prompting comes first and nothing has beaten it.
      2. five_percent_rule FAIL: "keep prompting" ("use retrieval" for a knowledge task: the
         fine-tune did not add what the prompts lack).
      3. five_percent_rule INCONCLUSIVE (allowed or not): "collect more data" ("use retrieval"
         for a knowledge task, unless the best baseline already was retrieval): the interval
         straddles the bar; more test rows settle it.
      4. It PASSed but another gate did not: overfit FAIL or any INCONCLUSIVE the spec does not
         allow -> "collect more data" (the gain may not hold on new rows); any other FAIL
         (a regression on general ability) -> "keep prompting".
      5. Every gate passed: "fine-tune a smaller model" when the win has headroom (the
         interval's low end at least HEADROOM x the threshold), serving dominates the cost (the
         priced volume's serving cost exceeds the training cost) and the base has at least
         SMALLER_MODEL_MIN_PARAMS parameters; otherwise "fine-tune".
    """
    found = _gates(gates)
    candidate = next((a for a in approaches if (_get(a, "kind") or "") == "candidate"), None)
    if model_params is None and candidate is not None:
        model_params = (_get(candidate, "config") or {}).get("total_params")
    rule = found.get("five_percent_rule")
    outcome, message, details = rule if rule else ("SKIP", "", {})
    retrieval = "use retrieval"
    reasons: list[str] = []

    def costs(d: dict) -> list[str]:
        if cost_view is None or cost_view.candidate is None or not d.get("baseline"):
            return []
        try:
            base = cost_view.row(d["baseline"])
        except KeyError:
            return []
        return [r for r in (_prompt_reason(cost_view.candidate, base), _cost_reason(cost_view, base)) if r]

    if candidate is None or outcome == "SKIP":
        verdict = retrieval if knowledge_task else "keep prompting"
        reasons.append("no fine-tuned candidate was run: " + (message or "baselines only"))
        if knowledge_task:
            reasons.append("the spec marks this a knowledge task: give the model the facts at call time "
                           "(retrieval) before trying to train them in")
        return Recommendation(verdict, reasons)

    has_numbers = {"uplift", "low", "high", "baseline", "candidate_score", "baseline_score", "n"} <= set(details)
    if has_numbers:
        reasons.append(_uplift_reason(details))
    elif message:
        reasons.append(f"five_percent_rule {outcome}: {message}")

    if outcome == "FAIL":
        verdict = retrieval if knowledge_task else "keep prompting"
        reasons.append("the fine-tune does not clear the bar, so the prompt stays: it is cheaper to change "
                       "and needs no training")
        if knowledge_task:
            reasons.append(f"a knowledge task where the best prompt scores {details.get('baseline_score', 0):.3f}"
                           f" and training did not close the gap: retrieve the facts instead")
        return Recommendation(verdict, reasons + costs(details))

    if outcome == "INCONCLUSIVE":
        if knowledge_task and _retrieved(approaches, details.get("baseline")):
            # retrieval was measured, and it is what the candidate could not be told apart from
            reasons.append(f"a knowledge task where retrieval was measured ({details['baseline']}, "
                           f"{details.get('baseline_score', 0):.3f}) and did not settle it either")
        elif knowledge_task:
            return Recommendation(retrieval, reasons + [
                f"a knowledge task where the best prompt scores {details.get('baseline_score', 0):.3f} and the "
                f"fine-tune's uplift is not established: retrieval adds the missing facts without betting on "
                f"training"] + costs(details))
        settle = details.get("n_to_settle")
        more = (f"about {_calls(settle)} test rows would settle it ({details.get('n', 0)} now)" if settle
                else "more test rows would narrow the interval")
        return Recommendation("collect more data", reasons + [f"the interval straddles the bar: {more}"]
                              + costs(details))

    # five_percent_rule passed: the other gates decide whether that win is trustworthy.
    allowed = []  # INCONCLUSIVE gates the spec lets pass: named, not hidden behind "every gate passed"
    for name, (g_outcome, g_message, g_details) in found.items():
        if name == "five_percent_rule" or g_outcome in ("PASS", "SKIP"):
            continue
        if g_outcome == "INCONCLUSIVE" and g_details.get("allow_inconclusive"):
            allowed.append(name)
            continue
        if name == "overfit" or g_outcome == "INCONCLUSIVE":
            return Recommendation("collect more data", reasons + [
                f"but the {name} gate is {g_outcome}: {g_message}; more training rows (or fewer epochs) before "
                f"trusting the win"] + costs(details))
        return Recommendation("keep prompting", reasons + [
            f"but the {name} gate is {g_outcome}: {g_message}; the fine-tune costs more than it gains"]
                              + costs(details))

    reasons += costs(details)
    if knowledge_task:
        reasons.append("note: this is a knowledge task; facts trained into weights go stale, so retrieval "
                       "stays the fit if they change")
        return Recommendation("fine-tune", reasons)
    threshold = details.get("threshold", 0.05)
    headroom = has_numbers and details["low"] >= HEADROOM * threshold
    serving = training = None
    if cost_view is not None and cost_view.candidate is not None and cost_view.calls is not None:
        serving, training = cost_view.candidate.cost_at_volume, cost_view.candidate.training_cost
    serving_dominates = serving is not None and serving > training
    big = model_params is not None and model_params >= SMALLER_MODEL_MIN_PARAMS
    if headroom and serving_dominates and big:
        reasons.append(f"the win has headroom (CI low end {_pct(details['low'], details.get('relative', True))} "
                       f"vs a {threshold * 100:g}% bar) and at {_calls(cost_view.calls)} calls serving "
                       f"({_money(serving)}) outweighs training ({_money(training)}): a smaller base "
                       f"({model_params / 1e9:.1f}B now) fine-tuned the same way would likely still pass and cost "
                       f"less per call; run the experiment again with a smaller model= to confirm")
        return Recommendation("fine-tune a smaller model", reasons)
    what = "behaviour, style and format" if task == "generation" else "a task prompting does not get right"
    if allowed:
        reasons.append(f"every gate passed except {', '.join(allowed)}, INCONCLUSIVE and allowed by the spec "
                       f"(allow_inconclusive): fine-tuning pays for {what} here, with that check unsettled")
    else:
        reasons.append(f"every gate passed: fine-tuning pays for {what} here")
    return Recommendation("fine-tune", reasons)


def format_summary(view: CostView | None, recommendation: Recommendation | None) -> list[str]:
    """Lines for the terminal summary: the cost table, then the verdict and its reasons."""
    lines = []
    if view is not None:
        volume = f", {_calls(view.calls)} calls" if view.calls is not None else ""
        device = f" ({view.device})" if view.device else ""
        lines.append(f"cost at {_money(view.gpu_hour_price)} per GPU-hour{device}{volume}:")
        width = max(len(r.name) for r in view.rows) if view.rows else 0
        for r in view.rows:
            tokens = f"{r.prompt_tokens:.0f} tokens" if r.prompt_tokens is not None else "? tokens"
            latency = f"{r.latency_ms:.0f} ms" if r.latency_ms is not None else "? ms"
            line = f"  {r.name:<{width}}  {tokens:>11}  {latency:>7}  "
            line += f"{_money(r.cost_per_million)} / M calls" if r.cost_per_million is not None else "not priced"
            if r.cost_at_volume is not None:
                line += f", {_money(r.cost_at_volume)} at volume"
            if r.kind == "candidate":
                line += f", + {_money(r.training_cost)} training ({r.train_seconds or 0:.0f} s)"
            lines.append(line)
        if view.candidate is not None and view.reference is not None:
            b = view.row(view.reference)
            lines.append(f"  break-even vs {b.name}: " + (f"{_calls(b.break_even_calls)} calls"
                                                          if b.break_even_calls is not None
                                                          else "never (the candidate is not cheaper per call)"))
    if recommendation is not None:
        lines.append(f"recommendation: {recommendation.verdict}")
        lines += [f"  - {reason}" for reason in recommendation.reasons]
    return lines


def for_run(store, run: dict, *, gpu_hour_price: float | None = None, calls: int | None = None,
            knowledge_task: bool | None = None) -> tuple[CostView | None, Recommendation]:
    """The cost view and recommendation of a stored run, from the store alone (for the report
    and the terminal summary).

    Price, volume and the knowledge-task flag come from the arguments (the command line) when
    given, else from the run's spec (`gpu_hour_price`, `calls`, `knowledge_task` in its config);
    without a price there is no cost view, and the recommendation rests on the gates alone.
    """
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    price = gpu_hour_price if gpu_hour_price is not None else config.get("gpu_hour_price")
    volume = calls if calls is not None else config.get("calls")
    knowledge = knowledge_task if knowledge_task is not None else bool(config.get("knowledge_task", False))
    approaches = store.rows("approaches", run["run_id"])
    gates = store.rows("gates", run["run_id"])
    view = None
    if price:
        rule = next((g for g in gates if g["gate"] == "five_percent_rule"), None)
        reference = ((rule or {}).get("details") or {}).get("baseline")
        if reference not in {a["approach"] for a in approaches if a["kind"] == "baseline"}:
            reference = None
        provenance = run.get("provenance") if isinstance(run.get("provenance"), dict) else {}
        hardware = provenance.get("hardware") or {}
        view = cost_view(approaches, price, volume, reference=reference,
                         device=hardware.get("gpu") or hardware.get("device"))
    return view, recommend(gates, approaches, run.get("task"), view, knowledge)
