"""The names every stage uses for gates and their outcomes, defined once.

Nothing heavy is imported: the plugin, the report and the CLI read these without loading
the statistics.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PASS, FAIL, INCONCLUSIVE, SKIP = "PASS", "FAIL", "INCONCLUSIVE", "SKIP"
OUTCOMES = (PASS, FAIL, INCONCLUSIVE, SKIP)

DATA_QUALITY = "data_quality"
FIVE_PERCENT_RULE = "five_percent_rule"
OVERFIT = "overfit"
REGRESSION = "regression"
GATES = (DATA_QUALITY, FIVE_PERCENT_RULE, OVERFIT, REGRESSION)  # in the order a run judges them


@dataclass(frozen=True)
class GateResult:
    """One gate's outcome on one run, as the gate wrote it and as the store gives it back."""

    gate: str
    outcome: str          # one of OUTCOMES
    message: str          # the finding, with its numbers
    details: dict = field(default_factory=dict)  # the numbers, thresholds and policy behind it

    def row(self) -> dict:
        return {"gate": self.gate, "outcome": self.outcome, "message": self.message, "details": self.details}

    @classmethod
    def from_row(cls, row: dict) -> "GateResult":
        """A stored `gates` row (details already decoded from JSON, or missing in old stores)."""
        details = row.get("details")
        return cls(row["gate"], row["outcome"], row.get("message") or "", details if isinstance(details, dict) else {})
