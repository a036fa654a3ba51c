"""The one place that decides what a run's gates add up to.

Everything that says whether a run passed asks here: the report's badge, each pytest gate
item, `harness export`, the recommendation and the CLI. Two questions, kept apart:

- **Does CI stop?** (`Decision.passed`, `item_outcome`). A gate passes when it is PASS or
  SKIP, or INCONCLUSIVE where the spec allows it (`allow_inconclusive`). An allowed
  INCONCLUSIVE does not stop CI, but it is never a plain pass: its pytest item is an xfail
  that carries the finding and names the policy (`pytest --runxfail` fails on it).
- **What does the evidence say?** (`Decision.verdict`). The allow policy never enters here:
  "Fine-tune" needs the five-percent rule at PASS and every other gate at PASS or SKIP.
  Only then may the candidate be exported without `--force` (`Decision.exportable`).

The verdict, first match wins:
  1. no candidate was judged (the rule is missing or SKIP)          -> Keep prompting
  2. the rule FAILs                                                  -> Keep prompting
  3. the regression gate FAILs (lost general ability)                -> Keep prompting
  4. the rule is INCONCLUSIVE                                        -> Inconclusive
  5. the rule PASSes and any other gate is not PASS or SKIP          -> Inconclusive
  6. otherwise                                                       -> Fine-tune

Harm (3) outranks an unsettled rule (4): a candidate that loses general ability would be
"Keep prompting" even with its uplift shown, so more test rows for the rule cannot change the
answer. A reason says "CI goes on" only when nothing blocks it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from harness.judge.outcomes import FAIL, FIVE_PERCENT_RULE, GATES, INCONCLUSIVE, PASS, REGRESSION, SKIP, GateResult

FINE_TUNE, KEEP_PROMPTING, INCONCLUSIVE_VERDICT = "Fine-tune", "Keep prompting", "Inconclusive"
RUN_FAILED, RUNNING = "Run failed", "Running"

# How a gate shows in pytest's own outcome.
ITEM_PASSED, ITEM_SKIPPED, ITEM_XFAILED, ITEM_FAILED = "passed", "skipped", "xfailed", "failed"
ALLOW_POLICY = "allow_inconclusive"


def allowed(gate: GateResult) -> bool:
    """An INCONCLUSIVE the spec lets through (`allow_inconclusive`, recorded by the gate itself)."""
    return gate.outcome == INCONCLUSIVE and bool(gate.details.get(ALLOW_POLICY))


def gate_passes(gate: GateResult) -> bool:
    """Whether this gate lets CI go on: PASS, SKIP, or an allowed INCONCLUSIVE."""
    return gate.outcome in (PASS, SKIP) or allowed(gate)


def item_outcome(gate: GateResult) -> str:
    """The gate's pytest item: passed, skipped, xfailed (an allowed INCONCLUSIVE) or failed."""
    if gate.outcome == PASS:
        return ITEM_PASSED
    if gate.outcome == SKIP:
        return ITEM_SKIPPED
    return ITEM_XFAILED if allowed(gate) else ITEM_FAILED


def policy_note(gate: GateResult) -> str:
    """What let an allowed INCONCLUSIVE through, in words for the summary and the report."""
    return f"{gate.gate} INCONCLUSIVE, let through by the spec's {ALLOW_POLICY}: not shown to clear its bar"


def allowed_notes(found: "Decision") -> list[str]:
    """Each INCONCLUSIVE the spec let through, in words for the summary and the report: "CI
    goes on" only when nothing else stops it."""
    stops = ", ".join(f"{g.gate} {g.outcome}" for g in found.blocking)
    return [f"CI goes on: {policy_note(g)}" if found.passed or not stops else
            f"{policy_note(g)}; CI stops anyway, on {stops}" for g in found.allowed]


@dataclass(frozen=True)
class Decision:
    verdict: str                          # FINE_TUNE | KEEP_PROMPTING | INCONCLUSIVE_VERDICT | RUN_FAILED | RUNNING
    passed: bool                          # CI goes on: the run completed and every gate passes
    exportable: bool                      # the evidence says fine-tune: export needs no --force
    deciding: GateResult | None           # the gate whose outcome set the verdict
    rule: GateResult | None               # the five-percent rule, if it was recorded
    blocking: tuple[GateResult, ...]      # gates that stop CI (FAIL, or INCONCLUSIVE not allowed)
    allowed: tuple[GateResult, ...]       # INCONCLUSIVE gates the spec let through
    reason: str                           # one line: why this verdict

    @property
    def candidate_judged(self) -> bool:
        return self.rule is not None and self.rule.outcome != SKIP


def decide(gates: Iterable[GateResult], *, status: str = "complete") -> Decision:
    """The verdict, CI outcome and exportability of one run, from its gates (see the module doc)."""
    gates = list(gates)
    by_name = {g.gate: g for g in gates}
    rule = by_name.get(FIVE_PERCENT_RULE)
    blocking = tuple(g for g in gates if not gate_passes(g))
    let_through = tuple(g for g in gates if allowed(g))

    def made(verdict: str, deciding: GateResult | None, reason: str) -> Decision:
        complete = status == "complete"
        return Decision(verdict, complete and not blocking, complete and verdict == FINE_TUNE, deciding, rule,
                        blocking, let_through, reason)

    if status == "failed":
        return made(RUN_FAILED, None, "the run failed before its gates were judged")
    if status != "complete":
        return made(RUNNING, None, "the run has not finished")
    if rule is None or rule.outcome == SKIP:
        return made(KEEP_PROMPTING, rule, "no fine-tuned candidate was judged: nothing has beaten the prompts")
    if rule.outcome == FAIL:
        return made(KEEP_PROMPTING, rule, "the candidate does not clear the five-percent rule")
    harm = by_name.get(REGRESSION)
    if harm is not None and harm.outcome == FAIL:
        clears = "clears the rule but" if rule.outcome == PASS else "is not shown to clear the rule and"
        return made(KEEP_PROMPTING, harm, f"the candidate {clears} loses general ability (regression FAIL)")
    goes_on = " (allowed by the spec, so CI goes on)" if not blocking else ""
    if rule.outcome == INCONCLUSIVE:
        return made(INCONCLUSIVE_VERDICT, rule, "the five-percent rule is INCONCLUSIVE: the candidate is not shown to "
                    "clear its bar" + (goes_on if allowed(rule) else ""))
    others = sorted((g for g in gates if g.gate != FIVE_PERCENT_RULE and g.outcome not in (PASS, SKIP)),
                    key=lambda g: GATES.index(g.gate) if g.gate in GATES else len(GATES))
    if others:
        first = others[0]
        how = goes_on if allowed(first) else ""
        return made(INCONCLUSIVE_VERDICT, first,
                    f"the candidate clears the rule, but the {first.gate} gate is {first.outcome}{how}")
    return made(FINE_TUNE, rule, "the candidate clears the five-percent rule and every other gate passed")
