"""Prompt baselines: the best a prompt can do on the base model, before any training.

    baselines.zero_shot("baselines/sarcasm/system.md")
    baselines.few_shot("baselines/sarcasm/system.md", k=8)

The system prompt lives in a file so it is reviewed like code. Few-shot examples are
drawn from the train split only (seeded), never from validation or test.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import SpecError


@dataclass(frozen=True)
class Baseline:
    name: str
    system_prompt_file: str
    k: int = 0
    seed: int = 0

    def system_prompt(self, root: Path | None = None) -> str:
        path = Path(self.system_prompt_file)
        if root is not None and not path.is_absolute():
            path = root / path
        if not path.is_file():
            raise SpecError(f"baseline {self.name!r}: system prompt file {self.system_prompt_file} not found; "
                            f"create it or fix the path (paths are relative to the project root)")
        text = path.read_text(encoding="utf-8").strip()
        if not text:
            raise SpecError(f"baseline {self.name!r}: system prompt file {self.system_prompt_file} is empty")
        return text

    def config(self) -> dict:
        return asdict(self)


def _check_file_arg(kind: str, system_prompt_file) -> str:
    if not isinstance(system_prompt_file, (str, Path)) or not str(system_prompt_file):
        raise SpecError(f"baselines.{kind}: first argument must be the path of a system prompt file, "
                        f"e.g. 'baselines/<experiment>/system.md' (got {system_prompt_file!r})")
    return str(system_prompt_file)


def zero_shot(system_prompt_file: str | Path, *, name: str = "zero_shot") -> Baseline:
    """The base model with a system prompt and the input, no examples."""
    return Baseline(name=name, system_prompt_file=_check_file_arg("zero_shot", system_prompt_file))


def few_shot(system_prompt_file: str | Path, k: int = 8, *, seed: int = 0, name: str | None = None) -> Baseline:
    """The system prompt followed by `k` solved examples from the train split, then the input."""
    if not isinstance(k, int) or k < 1:
        raise SpecError(f"baselines.few_shot: k must be a positive integer (got {k!r})")
    return Baseline(name=name or f"few_shot_k{k}", system_prompt_file=_check_file_arg("few_shot", system_prompt_file),
                    k=k, seed=seed)
