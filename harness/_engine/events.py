"""What the engine reports while it runs, as facts: a list of `Event`s.

Each event has a kind from the closed vocabulary below, the experiment it is about, the line
the user sees (`text`, passed to the run's `log` word for word; empty for a fact the printed
log already says elsewhere in its own words) and the facts themselves as `fields` (names,
numbers, outcomes). Tests and tools read the fields, never the wording. Progress from the
modules that report in sentences (training, the sweep, retrieval) arrives through
`Events.text(kind)`: one event of that kind per line, with the fields the engine knows there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

DATA_PREPARED = "data.prepared"          # task, train, val, test (row counts), key_metric
MACHINE_CHOSEN = "machine.chosen"        # device, name, cores, flags, threads, dtype, kernels (harness/machine.py)
RETRIEVAL_INDEX = "retrieval.index"      # a line from harness/prompting/retrieval.py: knowledge
BASELINE_PICKED = "baseline.picked"      # name, split, metric, value
POWER_PLANNED = "power.planned"          # power, wanted, test_rows, underpowered, statement (PowerStatement)
REGRESSION_PLANNED = "regression.planned"  # underpowered, planned (instrument -> power statement, text)
SWEEP_STUDY = "sweep.study"              # study, storage (redacted)
SWEEP_PROGRESS = "sweep.progress"        # a line from harness/candidate/sweep.py: study (trial, while one trains)
SWEEP_TRIAL = "sweep.trial"              # (not printed) trial, params, outcome (complete | pruned), value, steps,
                                         # pruned_at
CANDIDATE_CHOSEN = "candidate.chosen"    # source (sweep | declared), study, trial, value, params
CANDIDATE_CACHED = "candidate.cached"    # who, adapter_path, adapter_sha256
MEMORY_CHECKED = "memory.checked"        # who, need_bytes, free_bytes, device, batch_size, seq_len
TRAINING_PROGRESS = "training.progress"  # a line from harness/candidate/train.py: who
CANDIDATE_TRAINED = "candidate.trained"  # (not printed) who, steps, seconds, device, trainable_params, ...
SCORING_CACHED = "scoring.cached"        # what, cached, total
SCORING_PROGRESS = "scoring.progress"    # what, done, total
APPROACH_SCORED = "approach.scored"      # approach, metric, scores (split -> value), after the final scoring
AGREEMENT_CHECKED = "agreement.checked"  # approach, valid, rows, agreement (nan without a valid row)

KINDS = frozenset({DATA_PREPARED, MACHINE_CHOSEN, RETRIEVAL_INDEX, BASELINE_PICKED, POWER_PLANNED, REGRESSION_PLANNED, SWEEP_STUDY,
                   SWEEP_PROGRESS, SWEEP_TRIAL, CANDIDATE_CHOSEN, CANDIDATE_CACHED, MEMORY_CHECKED, TRAINING_PROGRESS,
                   CANDIDATE_TRAINED, SCORING_CACHED, SCORING_PROGRESS, APPROACH_SCORED, AGREEMENT_CHECKED})


@dataclass(frozen=True)
class Event:
    """One thing the engine reported: its kind, the experiment, the printed line, the facts."""

    kind: str
    experiment: str
    text: str
    fields: dict = field(default_factory=dict)

    def __post_init__(self):
        _known(self.kind)


def _known(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; the kinds are {', '.join(sorted(KINDS))}")
    return kind


def of(events: list[Event], kind: str) -> list[Event]:
    """The events of one kind, in order; an unknown kind is refused (so that a misspelt kind
    cannot make "no such event" true)."""
    _known(kind)
    return [e for e in events if e.kind == kind]


class Events:
    """The recorder of one run: keeps every event in order, passes its text to `log` unchanged
    (an empty text is not printed) and hands the event to `on_event`, if given, as it happens."""

    def __init__(self, experiment: str, log: Callable[[str], None] = print,
                 on_event: Callable[[Event], None] | None = None):
        self.experiment, self.log, self.on_event = experiment, log, on_event
        self.events: list[Event] = []

    def emit(self, kind: str, text: str = "", **fields) -> Event:
        event = Event(kind, self.experiment, text, fields)
        self.events.append(event)
        if text:
            self.log(text)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def text(self, kind: str, **fields) -> Callable[[str], None]:
        """A `log` for a module that reports in sentences: each line becomes an event of `kind`
        with these fields (the kind is checked now, not at the first line)."""
        _known(kind)

        def log(line: str) -> None:
            self.emit(kind, line, **fields)

        return log
