"""The example CI workflows in docs/workflows/ call only commands that exist, with arguments they
parse: every `harness` command line through the real parser, every `--harness-*` option of a
pytest line among the plugin's options, every script and experiment they name."""
import re
import shlex
from pathlib import Path

import pytest
import yaml
from _pytest.config.argparsing import Parser

from harness import cli, plugin

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / "docs" / "workflows").glob("*.yml"))


def _command_lines(path: Path) -> list[list[str]]:
    """Each shell command of each `run:` step, as argv: lines split at && || ; and |, and
    redirections dropped."""
    steps = [s for job in yaml.safe_load(path.read_text(encoding="utf-8"))["jobs"].values() for s in job["steps"]]
    commands = []
    for step in steps:
        for line in step.get("run", "").splitlines():
            for part in re.split(r"&&|\|\||;|(?<![>|])\|(?!\|)", line):
                argv = shlex.split(re.sub(r"\s*>>?\s*\S+", "", part))
                if argv:
                    commands.append(argv)
    return commands


def _plugin_options() -> set[str]:
    parser = Parser()
    plugin.pytest_addoption(parser)
    return {name for group in parser._groups for option in group.options for name in option.names()}


def test_there_are_workflows_to_check():
    assert {p.name for p in WORKFLOWS} == {"train-on-gpu.yml", "gate-pull-request.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_command_a_workflow_calls_exists_and_parses(path, tmp_path):
    options = _plugin_options()
    experiments = {m.group(1) for spec in (REPO / "experiments").glob("test_*.py")
                   for m in re.finditer(r'name="([^"]+)"', spec.read_text(encoding="utf-8"))}
    seen = set()
    for argv in _command_lines(path):
        program = argv[0]
        if program == ".venv/bin/harness":
            args = cli.build_parser().parse_args(argv[1:])  # raises (HarnessError) on an unknown argument
            if getattr(args, "experiment", None):
                assert args.experiment in experiments, f"{path.name}: no experiment {args.experiment!r}"
            seen.add(f"harness {argv[1]}")
        elif program == ".venv/bin/pytest":
            for arg in argv[1:]:
                if arg.startswith("--harness"):
                    assert arg.split("=", 1)[0] in options, f"{path.name}: pytest has no option {arg}"
            seen.add("pytest")
        elif program == "bash":
            assert (REPO / argv[1]).is_file(), f"{path.name}: no script {argv[1]}"
            seen.add("setup")
        else:
            assert program in ("gh", "true"), f"{path.name}: an unexpected program {program!r}"
    assert {"setup", "pytest"} <= seen


def test_the_gate_workflow_compares_and_summarises():
    seen = {" ".join(a[:2]) for p in WORKFLOWS for a in _command_lines(p)}
    assert {".venv/bin/harness compare", ".venv/bin/harness summary"} <= seen


def test_an_unknown_option_in_a_workflow_would_be_caught(tmp_path):
    """The check above can fail: a misspelt harness argument raises in the real parser."""
    from harness.errors import HarnessError

    with pytest.raises(HarnessError):
        cli.build_parser().parse_args(["compare", "sarcasm", "--bse", "main"])
    assert "--harness-resluts" not in _plugin_options() and "--harness-results" in _plugin_options()
