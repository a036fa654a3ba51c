"""Prompt baselines: the best a prompt can do on the base model, before any training.

    baselines.zero_shot("baselines/sarcasm/system.md")
    baselines.few_shot("baselines/sarcasm/system.md", k=8)
    baselines.zero_shot("baselines/sarcasm/", calibrate=True)       # every prompt in the folder
    baselines.few_shot("baselines/sarcasm/system.md", k=8, strategy="balanced", calibrate=True)
    baselines.few_shot("baselines/sarcasm/system.md", k=8, strategy="nearest", calibrate="batch")
    baselines.retrieval("baselines/halueval/system.md", knowledge="experiments/data/halueval_passages.jsonl", k=3)

A fine-tune that beats a weak prompt proves nothing, so a spec can ask for several:

- prompt variants: a folder instead of a file makes every .md/.txt in it (sorted) its own
  baseline, named `<file stem>/<baseline>`, e.g. `checklist/zero_shot`;
- few-shot strategies (harness/prompting/shots.py): "random" (seeded), "balanced" (equal examples per
  label, seeded) or "nearest" (the k train rows most similar to the input, per input);
- calibration (harness/prompting/calibration.py) adds twins that re-rank the same label scores:
  calibrate=True or "contextual" gives `<name>+calibrated` (three content-free prompts per
  distinct context); "batch" gives `<name>+batch_calibrated` (no extra prompt: the prior is
  the mean over the validation inputs); ("contextual", "batch") gives both.
- retrieval (harness/prompting/retrieval.py), for knowledge tasks: the k knowledge passages most similar
  to each input, in a context block above it; the answer to "would retrieval do instead?".

Examples come from the train split only, never from validation or test. The best of all of
them on validation is what the candidate must beat. Experiment(max_baselines=...) bounds how
many are scored, counted after folders are expanded and twins added.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from harness.errors import SpecError
from harness.spec.vocabulary import CALIBRATION_METHODS, SHOT_STRATEGIES

PROMPT_SUFFIXES = (".md", ".txt")


@dataclass(frozen=True)
class Baseline:
    """One declared prompt baseline; `system_prompt_file` may be a folder of variants."""

    name: str
    system_prompt_file: str
    k: int = 0
    seed: int = 0
    strategy: str = "random"  # how the k examples are chosen: random | balanced | nearest
    calibrate: tuple[str, ...] = ()  # calibration methods, each reported as a twin
    knowledge: str | None = None  # retrieval: a JSONL of passages or a folder of .txt/.md files
    top_k: int = 0            # retrieval: passages put in each input's prompt

    def system_prompt(self, root: Path | None = None) -> str:
        path = _under(root, self.system_prompt_file)
        if not path.is_file():
            raise SpecError(f"baseline {self.name!r}: system prompt file {self.system_prompt_file} not found; "
                            f"create it or fix the path (paths are relative to the project root)")
        text = path.read_text(encoding="utf-8").strip()
        if not text:
            raise SpecError(f"baseline {self.name!r}: system prompt file {self.system_prompt_file} is empty")
        return text

    def variants(self, root: Path | None = None) -> list[Baseline]:
        """One baseline per prompt: itself for a file; for a folder, one per .md/.txt file in it."""
        folder = _under(root, self.system_prompt_file)
        if not folder.is_dir():
            return [self]
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in PROMPT_SUFFIXES)
        if not files:
            raise SpecError(f"baseline {self.name!r}: folder {self.system_prompt_file} has no .md or .txt prompt "
                            f"files; add one or name a single file")
        return [replace(self, name=f"{f.stem}/{self.name}",
                        system_prompt_file=str(Path(self.system_prompt_file) / f.name)) for f in files]

    @property
    def scored_as(self) -> list[str]:
        """The approach names this (file-level) baseline is reported under: itself, then its twins."""
        return [self.name] + [calibrated_name(self.name, method) for method in self.calibrate]

    def config(self) -> dict:
        """The settings that shape its prompts: few-shot ones, or for retrieval the retrieval ones."""
        settings = asdict(self)
        if self.knowledge is None:
            del settings["knowledge"], settings["top_k"]
            return settings
        keys = ("name", "knowledge", "top_k", "system_prompt_file", "calibrate") + (("k", "strategy", "seed")
                                                                                    if self.k else ())
        return {key: settings[key] for key in keys}


def calibrated_name(name: str, method: str = "contextual") -> str:
    return f"{name}+calibrated" if method == "contextual" else f"{name}+{method}_calibrated"


def _under(root: Path | None, path: str) -> Path:
    p = Path(path)
    return root / p if root is not None and not p.is_absolute() else p


def expand(declared, root: Path, *, task: str, max_baselines: int, where: str) -> list[Baseline]:
    """The file-level baselines a run scores: folders expanded, checked against the task and the budget."""
    expanded = [v for b in declared for v in b.variants(root)]
    for b in expanded:
        if task != "classification" and (b.calibrate or b.strategy == "balanced"):
            what = "calibrate re-ranks label scores" if b.calibrate else "strategy='balanced' balances labels"
            raise SpecError(f"{where}: baseline {b.name!r}: {what}, so it needs a classification task (this one "
                            f"is {task}); drop it or use strategy='random' or 'nearest'")
    names = [n for b in expanded for n in b.scored_as]
    if len(set(names)) != len(names):
        clash = sorted({n for n in names if names.count(n) > 1})
        raise SpecError(f"{where}: baseline names {clash} appear twice after expanding prompt folders; "
                        f"pass name=... to tell them apart")
    if len(names) > max_baselines:
        counts = ", ".join(f"{b.name} {len(b.variants(root)) * len(b.scored_as)}" for b in declared)
        raise SpecError(f"{where}: {len(names)} baselines to score ({counts}) exceed max_baselines={max_baselines}; "
                        f"drop prompt variants, strategies or calibrations, or raise Experiment(max_baselines=...)")
    return expanded


def _check_file_arg(kind: str, system_prompt_file) -> str:
    if not isinstance(system_prompt_file, (str, Path)) or not str(system_prompt_file):
        raise SpecError(f"baselines.{kind}: first argument must be the path of a system prompt file or a folder of "
                        f"them, e.g. 'baselines/<experiment>/system.md' (got {system_prompt_file!r})")
    return str(system_prompt_file)


def zero_shot(system_prompt: str | Path, *, calibrate: bool | str | tuple = False,
              name: str = "zero_shot") -> Baseline:
    """The base model with a system prompt (a file, or a folder of variants) and the input, no examples."""
    return Baseline(name=name, system_prompt_file=_check_file_arg("zero_shot", system_prompt),
                    calibrate=_check_calibrate("zero_shot", calibrate))


def few_shot(system_prompt: str | Path, k: int = 8, *, strategy: str = "random", seed: int = 0,
             calibrate: bool | str | tuple = False, name: str | None = None) -> Baseline:
    """The system prompt followed by `k` solved train examples, then the input.

    strategy: "random" (seeded), "balanced" (k/labels of each label, seeded) or "nearest"
    (the k train rows most similar to each input; the prompt differs per input)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise SpecError(f"baselines.few_shot: k must be a positive integer (got {k!r})")
    if strategy not in SHOT_STRATEGIES:
        raise SpecError(f"baselines.few_shot: strategy must be one of {', '.join(SHOT_STRATEGIES)} (got {strategy!r})")
    default = f"few_shot_k{k}" if strategy == "random" else f"few_shot_k{k}_{strategy}"
    return Baseline(name=name or default, system_prompt_file=_check_file_arg("few_shot", system_prompt),
                    k=k, seed=seed, strategy=strategy, calibrate=_check_calibrate("few_shot", calibrate))


def retrieval(system_prompt: str | Path, knowledge: str | Path, k: int = 3, *, shots: int = 0,
              strategy: str = "random", seed: int = 0, calibrate: bool | str | tuple = False,
              name: str | None = None) -> Baseline:
    """The system prompt, then each input with the k knowledge passages most similar to it
    (MiniLM embeddings) in a context block above it: retrieval instead of fine-tuning.

    knowledge: a JSONL of passages ({"text": ...}, optional "id" and "title"), or a .txt/.md
    file or a folder of them, split into passages at blank lines.
    shots: train examples (question -> answer, without passages) shown first, so a small model
    sees the answer format; chosen "random" or "balanced", the same for every input."""
    if not isinstance(knowledge, (str, Path)) or not str(knowledge):
        raise SpecError(f"baselines.retrieval: knowledge must be the path of a JSONL of passages or a folder of "
                        f".txt/.md files, e.g. 'experiments/data/<experiment>_passages.jsonl' (got {knowledge!r})")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise SpecError(f"baselines.retrieval: k (passages per input) must be a positive integer (got {k!r})")
    if not isinstance(shots, int) or isinstance(shots, bool) or shots < 0:
        raise SpecError(f"baselines.retrieval: shots must be a non-negative integer (got {shots!r})")
    if strategy not in ("random", "balanced"):
        raise SpecError(f"baselines.retrieval: strategy must be 'random' or 'balanced' (the examples are the same "
                        f"for every input; got {strategy!r})")
    default = f"retrieval_k{k}" + (f"_shots{shots}" if shots else "") + \
        (f"_{strategy}" if shots and strategy != "random" else "")
    return Baseline(name=name or default, system_prompt_file=_check_file_arg("retrieval", system_prompt),
                    k=shots, seed=seed, strategy=strategy, calibrate=_check_calibrate("retrieval", calibrate),
                    knowledge=str(knowledge), top_k=k)


def _check_calibrate(kind: str, calibrate) -> tuple[str, ...]:
    """calibrate= as the tuple of methods: True is ("contextual",), a name is itself."""
    if isinstance(calibrate, bool):
        return ("contextual",) if calibrate else ()
    methods = (calibrate,) if isinstance(calibrate, str) else calibrate
    if not isinstance(methods, (tuple, list)) or not methods or \
            any(m not in CALIBRATION_METHODS for m in methods) or len(set(methods)) != len(methods):
        raise SpecError(f"baselines.{kind}: calibrate must be True, False, 'contextual', 'batch' or both as a tuple "
                        f"(got {calibrate!r})")
    return tuple(methods)
