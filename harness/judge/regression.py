"""Regression gate: did fine-tuning cost the model its general capability (catastrophic forgetting)?

A general-capability suite of four-option multiple-choice questions is scored on the base model
before training and on the candidate after it. Questions are scored the way lm-evaluation-harness
scores MMLU: a plain-text prompt (no chat template) ending in "Answer:", and the option whose
letter (" A".." D") has the highest log-likelihood as the next token wins. Nothing is generated,
so every prediction is a valid letter.

The gate is non-inferiority, not superiority: the candidate may lose at most `delta` accuracy
points. Both models answer the same questions, so the paired bootstrap interval of
(candidate - base) decides it: PASS when its lower end is at or above -delta, FAIL when its upper
end is below -delta, INCONCLUSIVE when it straddles -delta.

The shipped suite, "mmlu", is a fixed slice of the MMLU test set: 4 questions from each of the
57 subjects (228), made by `harness/judge/suites/make_mmlu_slice.py`. A spec can point at its own
suite file instead: JSONL rows of {"question", "answer_a".."answer_d", "correct_answer": "A".."D",
"topic"}.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from harness.errors import DataError
from harness.judge import power, stats
from harness.judge.outcomes import FAIL, INCONCLUSIVE, PASS, REGRESSION, GateResult
from harness.judge.units import signed_points, uplift_text

LETTERS = ("A", "B", "C", "D")
CONTINUATIONS = [" " + letter for letter in LETTERS]  # lm-eval's target_delimiter " " before the letter
SUITES_DIR = Path(__file__).with_name("suites")
SHIPPED = {"mmlu": ("MMLU slice", SUITES_DIR / "mmlu_slice.jsonl")}
FIELDS = ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer", "topic")
_ROW_HELP = ("each row needs question, answer_a, answer_b, answer_c, answer_d, correct_answer (A-D) and topic, "
             "as in harness/judge/suites/mmlu_slice.jsonl")


@dataclass(frozen=True)
class Question:
    """One multiple-choice question of a suite."""

    question: str
    choices: tuple[str, ...]  # the four options, A..D in order
    answer: int               # index of the right option in `choices`
    subject: str              # MMLU's "topic", e.g. "college chemistry"


@dataclass(frozen=True)
class Suite:
    """A general-capability suite: the questions, and where they came from."""

    name: str                  # "mmlu", or the path as the spec gave it
    title: str                 # how verdicts name it: "MMLU slice", or the file path
    path: str                  # the file read
    sha256: str                # of that file's bytes, so base and candidate are known to share it
    rows: tuple[Question, ...]

    @property
    def subjects(self) -> list[str]:
        return sorted({q.subject for q in self.rows})


def load_suite(name_or_path: str | Path, *, root: str | Path = ".") -> Suite:
    """The shipped "mmlu" slice, or a user's JSONL suite file (relative paths resolve against `root`).

    Raises DataError, one line naming the file and line, for a missing file or a bad row.
    """
    key = str(name_or_path)
    if key in SHIPPED:
        title, path = SHIPPED[key]
    else:
        path = Path(name_or_path).expanduser()
        path = path if path.is_absolute() else Path(root) / path
        title = key
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise DataError(f"regression suite {key!r} {what}: use 'mmlu' (the shipped MMLU slice) or a path to a "
                            f"JSONL file; {_ROW_HELP}")
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"regression suite {path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from e
    rows = [_question(path, number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not rows:
        raise DataError(f"regression suite {path} has no questions; {_ROW_HELP}")
    return Suite(key, title, str(path), hashlib.sha256(raw).hexdigest(), tuple(rows))


def _question(path: Path, number: int, line: str) -> Question:
    where = f"regression suite {path} line {number}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from e
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}; {_ROW_HELP}")
    missing = [k for k in FIELDS if k not in row]
    if missing:
        raise DataError(f"{where}: missing {', '.join(missing)}; {_ROW_HELP}")
    bad = [k for k in FIELDS if not isinstance(row[k], str) or not row[k].strip()]
    if bad:
        raise DataError(f"{where}: {', '.join(bad)} must be non-empty text (got "
                        f"{', '.join(repr(row[k]) for k in bad)})")
    letter = row["correct_answer"].strip()
    if letter not in LETTERS:
        raise DataError(f"{where}: correct_answer must be one of A, B, C, D (got {row['correct_answer']!r})")
    choices = tuple(row[f"answer_{x.lower()}"].strip() for x in LETTERS)
    return Question(row["question"].strip(), choices, LETTERS.index(letter), row["topic"].strip())


def prompt(question: Question) -> str:
    """lm-evaluation-harness's zero-shot MMLU prompt, as plain text; the letter follows after a space."""
    options = "".join(f"{letter}. {choice}\n" for letter, choice in zip(LETTERS, question.choices))
    return (f"The following are multiple choice questions (with answers) about {question.subject}.\n\n"
            f"{question.question}\n{options}Answer:")


@dataclass
class SuiteScores:
    """One model's answers to a suite, per question, in the suite's order."""

    suite: str                 # Suite.name
    title: str                 # Suite.title
    suite_sha256: str
    subjects: list[str]        # per question
    correct: list[int]         # per question: 1 when the predicted letter is the right one
    predicted: list[str]       # per question: "A".."D"
    seconds: float = 0.0       # wall time of scoring
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.correct)

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / len(self.correct)

    @property
    def per_subject(self) -> dict[str, tuple[float, int]]:
        """{subject: (accuracy, questions)}, subjects sorted by name."""
        groups: dict[str, list[int]] = defaultdict(list)
        for subject, c in zip(self.subjects, self.correct):
            groups[subject].append(c)
        return {s: (sum(v) / len(v), len(v)) for s, v in sorted(groups.items())}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SuiteScores":
        return cls(**data)


def score_suite(model, tokenizer, suite: Suite, batch_size: int = 16,
                progress: Callable[[int, int], None] | None = None) -> SuiteScores:
    """Answer every question by the likelihood of " A".." D" after its prompt, in batches."""
    from harness.scoring import batched as scoring  # torch is imported only when something is scored

    start = time.perf_counter()
    scored = scoring.score_labels(model, tokenizer, [prompt(q) for q in suite.rows], CONTINUATIONS,
                                  batch_size=batch_size, progress=progress)
    return from_predictions(suite, scored.predictions, time.perf_counter() - start)


def from_predictions(suite: Suite, predictions: list[str], seconds: float = 0.0) -> SuiteScores:
    """SuiteScores from predicted continuations (" A".." D"), e.g. read back from the output cache."""
    predicted = [p.strip() for p in predictions]
    correct = [int(p == LETTERS[q.answer]) for p, q in zip(predicted, suite.rows)]
    return SuiteScores(suite.name, suite.title, suite.sha256, [q.subject for q in suite.rows], correct, predicted,
                       seconds)




def regression_gate(base: SuiteScores, candidate: SuiteScores, delta: float = 0.02, confidence: float = 0.95,
                    seed: int = 0, resamples: int = stats.RESAMPLES, *, allow_inconclusive: bool = False) -> GateResult:
    """Non-inferiority: the candidate may lose at most `delta` accuracy (0.02 = 2 points) on the suite.

    PASS when the lower end of the paired bootstrap interval of (candidate - base) is at or above
    -delta, FAIL when its upper end is below -delta, INCONCLUSIVE otherwise.
    """
    if base.suite_sha256 != candidate.suite_sha256 or base.subjects != candidate.subjects:
        raise ValueError(f"regression gate needs both models scored on the same suite: base on {base.suite!r} "
                         f"({base.n} questions, sha256 {base.suite_sha256[:12]}), candidate on {candidate.suite!r} "
                         f"({candidate.n} questions, sha256 {candidate.suite_sha256[:12]})")
    if not delta >= 0:
        raise ValueError(f"regression delta is the accuracy the candidate may lose, so it must be >= 0; got {delta}")
    u = stats.paired_uplift(candidate.correct, base.correct, threshold=-delta, relative=False,
                            confidence=confidence, resamples=resamples, seed=seed)
    outcome = u.outcome  # the rule every gate applies (stats.verdict_of): PASS when the lower end clears -delta
    relation = {PASS: "stays above", FAIL: "falls below"}.get(outcome, "straddles")
    broken, fixed = u.discordant
    base_by, cand_by = base.per_subject, candidate.per_subject
    per_subject = {s: [base_by[s][0], cand_by[s][0], base_by[s][1]] for s in base_by}
    worst = min(per_subject, key=lambda s: (per_subject[s][1] - per_subject[s][0], -per_subject[s][2], s))
    b, c, n_worst = per_subject[worst]
    message = (f"{base.title} accuracy {u.baseline:.3f} -> {u.candidate:.3f} ({signed_points(u.uplift)} pts, "
               f"{confidence * 100:g}% CI {signed_points(u.low)}..{signed_points(u.high)}) {relation} -{delta * 100:g} pts on "
               f"{u.n} questions ({broken} broken, {fixed} fixed)")
    message += (f"; worst subject: {worst} {b:.2f} -> {c:.2f} ({n_worst} questions)" if c < b
                else "; no subject lost accuracy")
    # non-inferiority: the natural alternative is no loss at all
    statement = power.statement(u.n, u.unit_sd, -delta, relative=False, spread_from="this suite's paired answers",
                                alternative=0.0, alternative_is="no loss", confidence=confidence)
    if outcome == INCONCLUSIVE:
        message += f"; {statement.text(unit='questions', fmt=lambda x: uplift_text(x, relative=False), quantity='difference')}"
    if outcome == INCONCLUSIVE and allow_inconclusive:
        message += " (allowed by the spec)"
    details = {"suite": base.suite, "suite_sha256": base.suite_sha256, "base_accuracy": u.baseline,
               "candidate_accuracy": u.candidate, "difference": u.uplift, "low": u.low, "high": u.high,
               "delta": delta, "confidence": confidence, "n": u.n, "broken": broken, "fixed": fixed,
               "mcnemar_p": u.mcnemar_p, "power": statement.to_dict(), "seed": seed, "resamples": resamples,
               "low_mc_se": u.low_mc_se, "high_mc_se": u.high_mc_se,
               "worst_subject": worst, "per_subject": per_subject, "allow_inconclusive": allow_inconclusive,
               # per question, so the verdict can be re-derived from the store alone
               "base_correct": list(base.correct), "candidate_correct": list(candidate.correct)}
    return GateResult(REGRESSION, outcome, message, details)
