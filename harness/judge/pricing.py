"""What each approach costs to run.

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

What the measured results recommend is `judge.recommendation`'s.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.errors import HarnessError


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


def cost_view(approaches: list, gpu_hour_price: float, calls: int | None = None, *, reference: str | None = None,
              device: str | None = None) -> CostView:
    """Price every approach (the store's `ApproachRecord`s).

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
        latency = a.latency_p50_ms
        per_call = latency / 1000 * per_second if latency is not None else None
        seconds = a.train_seconds
        kind = a.kind or "baseline"
        rows.append(ApproachCost(
            name=a.name, kind=kind, prompt_tokens=a.prompt_tokens,
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


def money(x: float) -> str:
    return f"${x:,.2f}" if x >= 0.01 or x == 0 else f"${x:.2g}"


def calls_text(n: float) -> str:
    return f"{n:,.0f}"


def format_cost(view: CostView) -> list[str]:
    """Lines for the terminal summary: the cost table and the candidate's break-even."""
    volume = f", {calls_text(view.calls)} calls" if view.calls is not None else ""
    device = f" ({view.device})" if view.device else ""
    lines = [f"cost at {money(view.gpu_hour_price)} per GPU-hour{device}{volume}:"]
    width = max(len(r.name) for r in view.rows) if view.rows else 0
    for r in view.rows:
        tokens = f"{r.prompt_tokens:.0f} tokens" if r.prompt_tokens is not None else "? tokens"
        latency = f"{r.latency_ms:.0f} ms" if r.latency_ms is not None else "? ms"
        line = f"  {r.name:<{width}}  {tokens:>11}  {latency:>7}  "
        line += f"{money(r.cost_per_million)} / M calls" if r.cost_per_million is not None else "not priced"
        if r.cost_at_volume is not None:
            line += f", {money(r.cost_at_volume)} at volume"
        if r.kind == "candidate":
            line += f", + {money(r.training_cost)} training ({r.train_seconds or 0:.0f} s)"
        lines.append(line)
    if view.candidate is not None and view.reference is not None:
        b = view.row(view.reference)
        lines.append(f"  break-even vs {b.name}: " + (f"{calls_text(b.break_even_calls)} calls"
                                                      if b.break_even_calls is not None
                                                      else "never (the candidate is not cheaper per call)"))
    return lines
