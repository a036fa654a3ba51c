"""The capability suite: multiple-choice questions the base model answers above chance, scored
on the base before training and on the candidate after, one instrument of the regression gate
(harness/judge/regression.py).

Questions are scored the way the standard small-model evaluations score them (lm-evaluation-
harness's `mmlu_continuation`, the "cloze" form HF's SmolLM evaluations report): a plain-text
prompt (no chat template) ending in "Answer:", and the option whose own text is likeliest as the
continuation wins, its log-likelihood divided by its length in characters (lm-eval's acc_norm),
so longer options are not penalised for being long. A small model that cannot map an answer to
a letter can still show what it knows this way; nothing is generated.

A suite can only show a loss where the base has accuracy to lose. So the base first answers the
suite's screen (the first fifth of every subject's questions, in file order: for the shipped
slice, 4 per subject, a balanced 228). Unless that shows the base above chance plus the margin
(an exact one-sided binomial test at the gate's level), the suite is SKIPped with the reason, and
the candidate is never scored on it. Otherwise the base answers the rest and the candidate all.

The shipped suite, "mmlu", is a fixed slice of the MMLU test set: 20 questions from each of the
57 subjects (1,140), made by `harness/judge/suites/make_mmlu_slice.py`; about 1,000 questions is
what a 2-point margin needs for 80% power at the planning discordance (harness/judge/regression.py).
A spec can point at its own suite file instead: JSONL rows of {"question", "answer_a"..
"answer_d", "correct_answer": "A".."D", "topic"}.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import DataError
from harness.judge import stats, suites
from harness.judge.outcomes import FAIL, PASS, REGRESSION, SKIP, GateResult
from harness.judge.units import signed_points

LETTERS = ("A", "B", "C", "D")
CHANCE = 1 / len(LETTERS)
SUITES_DIR = Path(__file__).with_name("suites")
SHIPPED = {"mmlu": ("MMLU slice", SUITES_DIR / "mmlu_slice.jsonl")}
FIELDS = ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer", "topic")
SCREEN_FRACTION = 5  # the screen is the first 1/5 of each subject's questions (at least one)
# Per-subject accuracies are shown only for subjects with this many questions: below it a
# subject's 95% interval is wider than +/-14 points, and the "worst" of many such subjects is
# the luck of the draw, not a finding.
MIN_SUBJECT_QUESTIONS = 50
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
    """A capability suite: the questions, and where they came from."""

    name: str                  # "mmlu", or the path as the spec gave it
    title: str                 # how verdicts name it: "MMLU slice", or the file path
    path: str                  # the file read
    sha256: str                # of that file's bytes, so base and candidate are known to share it
    rows: tuple[Question, ...]

    @property
    def subjects(self) -> list[str]:
        return sorted({q.subject for q in self.rows})

    @property
    def screen_questions(self) -> list[int]:
        """Indices of the screen: the first fifth of each subject's questions, in file order."""
        by_subject: dict[str, list[int]] = defaultdict(list)
        for i, q in enumerate(self.rows):
            by_subject[q.subject].append(i)
        return sorted(i for idx in by_subject.values() for i in idx[:max(1, len(idx) // SCREEN_FRACTION)])


def load_suite(name_or_path: str | Path, *, root: str | Path = ".") -> Suite:
    """The shipped "mmlu" slice, or a user's JSONL suite file (relative paths resolve against `root`).

    Raises DataError, one line naming the file and line, for a missing file or a bad row.
    """
    key, title, path, raw, text = suites.read(name_or_path, SHIPPED, root=root, kind="regression suite",
                                              use="'mmlu' (the shipped MMLU slice)", row_help=_ROW_HELP)
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
    """lm-evaluation-harness's zero-shot MMLU continuation prompt, as plain text; an option's text follows."""
    return (f"The following are questions (with answers) about {question.subject}.\n\n"
            f"Question: {question.question}\nAnswer:")


def continuations(question: Question) -> list[str]:
    """The four options as continuations of the prompt (lm-eval's target_delimiter " " first)."""
    return [" " + choice for choice in question.choices]


def items(suite: Suite, indices: list[int]) -> tuple[list[str], list[str]]:
    """(prompts, continuations) to score for these questions: four pairs per question, in order."""
    pairs = [(prompt(suite.rows[i]), c) for i in indices for c in continuations(suite.rows[i])]
    return [p for p, _ in pairs], [c for _, c in pairs]


def answers(suite: Suite, indices: list[int], logliks: list[float]) -> list[int]:
    """Each question's chosen option: the highest log-likelihood per character (acc_norm)."""
    chosen = []
    for k, i in enumerate(indices):
        conts = continuations(suite.rows[i])
        normed = [logliks[4 * k + j] / len(c) for j, c in enumerate(conts)]
        chosen.append(max(range(len(conts)), key=normed.__getitem__))
    return chosen


@dataclass
class SuiteScores:
    """One model's answers to some of a suite's questions (`indices`), in the suite's order."""

    suite: str                 # Suite.name
    title: str                 # Suite.title
    suite_sha256: str
    indices: list[int]         # which questions were answered
    subjects: list[str]        # per question answered
    correct: list[int]         # per question answered: 1 when the chosen option is the right one
    predicted: list[str]       # per question answered: "A".."D"
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


def from_answers(suite: Suite, indices: list[int], chosen: list[int]) -> SuiteScores:
    rows = [suite.rows[i] for i in indices]
    return SuiteScores(suite.name, suite.title, suite.sha256, list(indices), [q.subject for q in rows],
                       [int(c == q.answer) for c, q in zip(chosen, rows)], [LETTERS[c] for c in chosen])


def score_suite(model, tokenizer, suite: Suite, indices: list[int] | None = None, batch_size: int = 16,
                progress=None) -> SuiteScores:
    """Answer the questions (all, or `indices`) by option likelihood, in batches, without a cache."""
    from harness.scoring import batched  # torch is imported only when something is scored

    indices = list(range(len(suite.rows))) if indices is None else indices
    prompts, conts = items(suite, indices)
    logliks, _ = batched.score_continuations(model, tokenizer, prompts, conts, batch_size=batch_size,
                                             progress=progress)
    return from_answers(suite, indices, answers(suite, indices, logliks))


@dataclass(frozen=True)
class Screen:
    """Whether the base answers the suite above chance plus the margin, on the screen questions."""

    n: int
    correct: int
    floor: float          # chance + margin: the accuracy the base must be shown above
    p_value: float        # exact one-sided binomial test of accuracy <= floor
    alpha: float          # one-sided level
    passed: bool

    @property
    def accuracy(self) -> float:
        return self.correct / self.n

    def text(self, title: str) -> str:
        relation = "above" if self.passed else "not shown above"
        return (f"{title}: the base answers {self.correct}/{self.n} screen questions ({self.accuracy:.3f}), "
                f"{relation} chance ({CHANCE:.2f}) plus the margin ({self.floor:.2f}; exact one-sided p="
                f"{self.p_value:.3g} vs {self.alpha:.3g})")


def screen(base: SuiteScores, delta: float, confidence: float = 0.95) -> Screen:
    """The base's screen answers against chance + delta: a suite the base answers at chance has no
    accuracy to lose, so it cannot show forgetting there."""
    from scipy.stats import binomtest

    floor = CHANCE + delta
    correct = sum(base.correct)
    alpha = (1 - confidence) / 2
    p = float(binomtest(correct, base.n, min(floor, 1.0), alternative="greater").pvalue) if floor < 1 else 1.0
    return Screen(base.n, correct, floor, p, alpha, p < alpha)


def skipped(suite: Suite, checked: Screen) -> GateResult:
    """The suite's part of the regression gate when the base did not clear the screen."""
    return GateResult(REGRESSION, SKIP,
                      f"{checked.text(suite.title)}: the base has no accuracy here to lose, so the suite cannot "
                      f"show forgetting on this model",
                      {"suite": suite.name, "suite_sha256": suite.sha256, "screen": asdict(checked)})


def judge(base: SuiteScores, candidate: SuiteScores, *, delta: float = 0.02, confidence: float = 0.95, seed: int = 0,
          resamples: int = stats.RESAMPLES) -> GateResult:
    """Non-inferiority on the suite: the candidate may lose at most `delta` accuracy (0.02 = 2 points).

    PASS when the lower end of the paired bootstrap interval of (candidate - base) is at or above
    -delta, FAIL when its upper end is below -delta, INCONCLUSIVE otherwise."""
    if base.suite_sha256 != candidate.suite_sha256 or base.indices != candidate.indices:
        raise ValueError(f"regression gate needs both models scored on the same questions: base on {base.suite!r} "
                         f"({base.n} questions, sha256 {base.suite_sha256[:12]}), candidate on {candidate.suite!r} "
                         f"({candidate.n} questions, sha256 {candidate.suite_sha256[:12]})")
    if not delta >= 0:
        raise ValueError(f"regression delta is the accuracy the candidate may lose, so it must be >= 0; got {delta}")
    u = stats.paired_uplift(candidate.correct, base.correct, threshold=-delta, relative=False,
                            confidence=confidence, resamples=resamples, seed=seed)
    relation = {PASS: "stays above", FAIL: "falls below"}.get(u.outcome, "straddles")
    broken, fixed = u.discordant
    message = (f"{base.title} accuracy {u.baseline:.3f} -> {u.candidate:.3f} ({signed_points(u.uplift)} pts, "
               f"{confidence * 100:g}% CI {signed_points(u.low)}..{signed_points(u.high)}) {relation} "
               f"-{delta * 100:g} pts on {u.n} questions ({broken} broken, {fixed} fixed)")
    base_by, cand_by = base.per_subject, candidate.per_subject
    per_subject = {s: [base_by[s][0], cand_by[s][0], base_by[s][1]] for s in base_by
                   if base_by[s][1] >= MIN_SUBJECT_QUESTIONS}
    lost = sorted((s for s, (b, c, _) in per_subject.items() if c < b), key=lambda s: per_subject[s][1] - per_subject[s][0])
    if lost:
        message += "; lower in " + ", ".join(f"{s} {per_subject[s][0]:.2f} -> {per_subject[s][1]:.2f} "
                                             f"({per_subject[s][2]} questions)" for s in lost[:3])
    details = {"suite": base.suite, "suite_sha256": base.suite_sha256, "base_accuracy": u.baseline,
               "candidate_accuracy": u.candidate, "difference": u.uplift, "low": u.low, "high": u.high,
               "delta": delta, "confidence": confidence, "n": u.n, "broken": broken, "fixed": fixed,
               "mcnemar_p": u.mcnemar_p, "seed": seed, "resamples": resamples, "unit_sd": u.unit_sd,
               "low_mc_se": u.low_mc_se, "high_mc_se": u.high_mc_se, "per_subject": per_subject,
               "min_subject_questions": MIN_SUBJECT_QUESTIONS,
               # per question, so the verdict can be re-derived from the store alone
               "indices": list(base.indices), "base_correct": list(base.correct),
               "candidate_correct": list(candidate.correct)}
    return GateResult(REGRESSION, u.outcome, message, details)


def planned_unit_sd(base_accuracy: float, correlation: float) -> float:
    """The per-question spread of (candidate - base) at no loss, before the candidate exists: the
    two answer alike with correlation `correlation` (phi), so they disagree on 2p(1-p)(1-phi)."""
    return math.sqrt(max(2 * base_accuracy * (1 - base_accuracy) * (1 - correlation), 0.0))
