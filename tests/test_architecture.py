"""The layout's promises (docs/architecture.md), checked on the code: imports point the way the
data flows, the spec is cheap to import, and no module reaches into another's private names."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "harness"
# Each stage may import the stages on lower floors only (docs/architecture.md's table).
FLOORS = {
    "errors": 0, "files": 0,
    "spec": 1,
    "data": 2, "models": 2, "machine": 2,
    "prompting": 3,
    "scoring": 4,
    "judge": 5,
    "store": 6,
    "candidate": 7, "report": 7,
    "_engine": 8, "export": 8,
    "plugin": 9, "cli": 9,
}


def _stage(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("harness"):
                    yield a.name, []


def _modules():
    for path in sorted(HARNESS.rglob("*.py")):
        rel = path.relative_to(HARNESS.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        yield ".".join(parts), path


def test_imports_point_down_the_pipeline():
    backwards = []
    for module, path in _modules():
        if module == "harness" or "metrics" in module.split(".")[2:]:
            continue  # the package face; metric scripts are loaded by `evaluate` from files
        mine = FLOORS[_stage(module)]
        for target, names in _imports(path):
            targets = [target] if target != "harness" else [f"harness.{n}" for n in names]
            for t in targets:
                stage = _stage(t)
                if stage in FLOORS and FLOORS[stage] > mine:
                    backwards.append(f"{module} -> {t}")
    assert not backwards, backwards


def test_no_module_imports_another_modules_private_names():
    private = [f"{module}: from {target} import {n}" for module, path in _modules()
               for target, names in _imports(path) for n in names
               if n.startswith("_") and not n.startswith("__") and target != module]
    assert not private, private


@pytest.mark.parametrize(("code", "absent"), [
    ("from harness import Experiment, QLoRA, Sweep, baselines", ("numpy", "torch", "harness.data", "scipy")),
    ("import harness.report", ("torch", "harness.candidate.sweep", "harness._engine")),
    ("import harness.scoring.cache", ("torch", "transformers")),
    ("import harness.judge.decision, harness.judge.power", ("numpy", "scipy")),
    ("import harness.plugin", ("numpy", "torch", "duckdb")),
])
def test_cheap_imports_stay_cheap(code, absent):
    script = f"import sys; {code}; print(','.join(m for m in {absent!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"{code!r} loaded {loaded}"
