"""The forgetting probe: how much more surprising general text is to the candidate than to the
base, one instrument of the regression gate (harness/judge/regression.py).

Each held document is scored by both models as plain text after a document boundary (the
tokenizer's BOS token, or its EOS token where it has none, as documents are separated in
pretraining): its log-likelihood per token. The paired difference per document, candidate minus
base, is a continuous quantity that moves with any change in the model's language ability, so a
few hundred documents resolve it where a multiple-choice suite needs thousands of questions.

The margin is a perplexity ratio a user can read: with `margin` 0.05 the candidate may find the
held text at most 5% more surprising than the base did, i.e. the geometric mean over documents
of perplexity(candidate) / perplexity(base) at most 1.05, which is a loss of at most ln(1.05) =
0.049 nats per token. It is judged for non-inferiority on the paired bootstrap interval, with
the rule every gate applies (stats.verdict_of): PASS when the interval's lower end of the
per-token log-likelihood difference is at or above -ln(1 + margin), FAIL when its upper end is
below, INCONCLUSIVE otherwise.

The shipped probe, "wikipedia", is 250 Wikipedia paragraphs (via HotpotQA, as HaluEval ships
them) that no shipped experiment uses, made by `harness/judge/suites/make_wikipedia_probe.py`.
A spec can point at its own held text: JSONL rows of {"text"} (an "id" is kept if given). The
text must be general: text like the task's own training data measures learning, not forgetting.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import DataError
from harness.judge import stats, suites
from harness.judge.outcomes import FAIL, PASS, REGRESSION, GateResult

SUITES_DIR = Path(__file__).with_name("suites")
SHIPPED = {"wikipedia": ("held Wikipedia passages", SUITES_DIR / "wikipedia_passages.jsonl")}
_ROW_HELP = 'each row needs "text" (general text the task does not train on), as in harness/judge/suites/wikipedia_passages.jsonl'


@dataclass(frozen=True)
class Probe:
    """Held general text: the documents, and where they came from."""

    name: str                  # "wikipedia", or the path as the spec gave it
    title: str                 # how verdicts name it
    path: str
    sha256: str                # of the file's bytes, so base and candidate are known to share it
    ids: tuple[str, ...]
    texts: tuple[str, ...]


def load_probe(name_or_path: str | Path, *, root: str | Path = ".") -> Probe:
    """The shipped "wikipedia" probe, or a user's JSONL file of {"text"} rows (relative paths
    resolve against `root`). Raises DataError, one line naming the file and line, for bad input."""
    key, title, path, raw, text = suites.read(name_or_path, SHIPPED, root=root, kind="forgetting probe",
                                              use="'wikipedia' (the shipped held passages)", row_help=_ROW_HELP)
    ids, texts = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"forgetting probe {path} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from e
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise DataError(f"{where}: expected an object with non-empty \"text\"; {_ROW_HELP}")
        ids.append(str(row.get("id", number)))
        texts.append(row["text"])
    if len(texts) < 2:
        raise DataError(f"forgetting probe {path} has {len(texts)} document(s); it needs at least 2 (250 is "
                        f"what the shipped one holds); {_ROW_HELP}")
    return Probe(key, title, str(path), hashlib.sha256(raw).hexdigest(), tuple(ids), tuple(texts))


def boundary(tokenizer) -> str:
    """What each document is scored after: where a document starts in pretraining."""
    return tokenizer.bos_token or tokenizer.eos_token


@dataclass
class ProbeScores:
    """One model's log-likelihood of each probe document, in the probe's order."""

    probe: str
    title: str
    sha256: str
    loglik: list[float]        # summed over the document's tokens, in nats
    tokens: list[int]

    @property
    def per_token(self) -> list[float]:
        return [ll / max(n, 1) for ll, n in zip(self.loglik, self.tokens)]

    @property
    def nats_per_token(self) -> float:
        """Mean over documents of the negative log-likelihood per token."""
        values = self.per_token
        return -sum(values) / len(values)

    def to_dict(self) -> dict:
        return asdict(self)


def from_logliks(probe: Probe, loglik: list[float], tokens: list[int]) -> ProbeScores:
    return ProbeScores(probe.name, probe.title, probe.sha256, list(loglik), list(tokens))


def bar(margin: float) -> float:
    """The margin as the bar of the per-token log-likelihood difference: -ln(1 + margin) nats."""
    return -math.log1p(margin)


def ratio_text(difference: float) -> str:
    """A per-token log-likelihood difference as the perplexity ratio candidate / base: 'x1.012'."""
    return f"x{math.exp(-difference):.3f}"


def judge(base: ProbeScores, candidate: ProbeScores, *, margin: float = 0.05, confidence: float = 0.95,
          seed: int = 0, resamples: int = stats.RESAMPLES) -> GateResult:
    """Non-inferiority on held text: the candidate's perplexity may rise by at most `margin` (0.05 = 5%)."""
    if base.sha256 != candidate.sha256 or base.tokens != candidate.tokens:
        raise ValueError(f"the forgetting probe needs both models scored on the same documents: base on {base.probe!r} "
                         f"({len(base.tokens)} documents, sha256 {base.sha256[:12]}), candidate on "
                         f"{candidate.probe!r} ({len(candidate.tokens)}, sha256 {candidate.sha256[:12]})")
    if not margin > 0:
        raise ValueError(f"forgetting margin is the perplexity rise the candidate may show, so it must be > 0; "
                         f"got {margin}")
    u = stats.paired_uplift(candidate.per_token, base.per_token, threshold=bar(margin), relative=False,
                            confidence=confidence, resamples=resamples, seed=seed)
    relation = {PASS: "stays below", FAIL: "is above"}.get(u.outcome, "straddles")
    worse = sum(c < b for c, b in zip(candidate.per_token, base.per_token))
    # the interval of the difference, read as perplexity ratios: its high end is the low ratio
    message = (f"{base.title}: perplexity {ratio_text(u.uplift)} of the base's ({base.nats_per_token:.3f} -> "
               f"{candidate.nats_per_token:.3f} nats/token, {confidence * 100:g}% CI {ratio_text(u.high)}.."
               f"{ratio_text(u.low)}) {relation} x{1 + margin:g} on {u.n} documents ({worse} more surprising to "
               f"the candidate)")
    details = {"probe": base.probe, "probe_sha256": base.sha256, "margin": margin, "bar": bar(margin),
               "base_nats_per_token": base.nats_per_token, "candidate_nats_per_token": candidate.nats_per_token,
               "difference": u.uplift, "low": u.low, "high": u.high, "ratio": math.exp(-u.uplift),
               "confidence": confidence, "n": u.n, "seed": seed, "resamples": resamples, "unit_sd": u.unit_sd,
               "low_mc_se": u.low_mc_se, "high_mc_se": u.high_mc_se, "documents_worse": worse,
               # per document, so the verdict can be re-derived from the store alone
               "tokens": list(base.tokens), "base_loglik": list(base.loglik), "candidate_loglik": list(candidate.loglik)}
    return GateResult(REGRESSION, u.outcome, message, details)


def planned_unit_sd(base: ProbeScores, correlation: float) -> float:
    """The per-document spread of (candidate - base) before the candidate exists: the candidate's
    per-token log-likelihoods assumed as spread as the base's and correlated with them at `correlation`."""
    values = base.per_token
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
    return math.sqrt(2 * var * (1 - correlation))
