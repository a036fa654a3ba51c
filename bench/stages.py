"""Where the time of a `pytest experiments/` run goes, stage by stage, from its event log.

    python bench/stages.py LOG.jsonl                   # summarise a log written by --harness-events LOG.jsonl
    python bench/stages.py --run                       # run `pytest experiments/` with a log, then summarise it
    python bench/stages.py --events LOG.jsonl --run -k sarcasm   # keep the log; pytest gets the arguments after --run

The log (harness/plugin.py, `--harness-events PATH`) has one JSON line per engine event
(harness/_engine/events.py) and plugin-level lines (kind "plugin.*") where the session, each
run and the report rendering start and end, each with `t`, seconds since the session started.
The time between two consecutive lines goes to the stage of the later one: the work before a
progress line is that line's work, so a scoring stage's model load counts in that stage.

    data and checks       up to data.prepared and machine.chosen (reading, checking and splitting the data, the model's files)
    retrieval index       retrieval.index lines (the knowledge base embedded, or read from its cache)
    baseline NAME         scoring whose `what` is "EXP: NAME <split>..." (val or train for the pick, test,
                          content-free inputs, reference perplexity), and NAME's approach.scored line
    pick and power plan   baseline.picked, power.planned
    sweep                 sweep.* lines, candidate.chosen, "trial #N" scoring, a trial's training
    training              memory.checked, training.progress, candidate.trained, candidate.cached
    candidate scoring     "EXP: candidate val|test" scoring, the candidate's approach.scored line
    overfit check         "... (overfit check)" scoring: the candidate on the first train rows (logs of
                          runs before 2026-12-02; the overfit gate now reads the training curves alone)
    regression gate       any `what` with "regression", "forgetting" or "capability suite" (the suite, the
                          forgetting probe), regression.* and forgetting.* lines (the gate's power plan)
    generation checks     "... (agreement check)" generation, agreement.checked
    gates and record      the end of a run: the gates judged, the run written to the store (a run that
                          failed: "failed run's last stage", from its last line to the error)
    report                the HTML reports rendered (plugin.report_started -> plugin.report_finished)
    pytest outside runs   collection, imports, other items, the terminal summary: between the runs
    other                 any line none of these rules knows; listed below the table, never dropped

Seconds are one run's wall time on one machine: they depend on its CPU (printed, from
`lscpu`) and on what else ran there; compare the shares, not seconds across machines.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

SESSION = None  # the scope of lines outside any run
# the order stages are printed in (pipeline order); baselines come in their first appearance's place
ORDER = ("data and checks", "retrieval index", "baseline", "pick and power plan", "sweep", "training",
         "candidate scoring", "overfit check", "regression gate", "generation checks", "gates and record",
         "failed run's last stage", "report", "pytest outside runs", "other")
SCORING = {"scoring.progress", "scoring.cached"}
TRAINING = {"memory.checked", "training.progress", "candidate.trained", "candidate.cached"}
OUTSIDE = {"plugin.session_started", "plugin.run_started", "plugin.report_started", "plugin.session_finished"}
_TRIAL = re.compile(r"trial #\d+")


def scope(line: dict) -> str | None:
    """The experiment a line's preceding time belongs to, or SESSION: a run's start line ends
    time spent outside runs, as do the report's lines."""
    if line.get("kind") in OUTSIDE | {"plugin.report_finished"}:
        return SESSION
    return line.get("experiment") or SESSION


def stage(line: dict) -> str:
    """The stage whose work ended with this line (see the module docstring for the rules)."""
    kind, fields = line.get("kind", ""), line.get("fields") or {}
    if kind in OUTSIDE:
        return "pytest outside runs"
    if kind == "plugin.report_finished":
        return "report"
    if kind == "plugin.run_finished":
        return "gates and record" if fields.get("outcome") == "complete" else "failed run's last stage"
    if kind in ("data.prepared", "machine.chosen"):  # the machine header follows the data
        return "data and checks"
    if kind == "retrieval.index":
        return "retrieval index"
    if kind in ("baseline.picked", "power.planned"):
        return "pick and power plan"
    if kind.startswith("sweep.") or kind == "candidate.chosen":
        return "sweep"
    if kind in TRAINING:
        return "sweep" if _TRIAL.search(str(fields.get("who", ""))) else "training"
    if kind == "agreement.checked":
        return "generation checks"
    if kind.startswith(("regression.", "forgetting.")):
        return "regression gate"
    if kind == "approach.scored" and fields.get("approach"):
        return "candidate scoring" if fields["approach"] == "candidate" else f"baseline {fields['approach']}"
    if kind in SCORING and fields.get("what"):
        return _scoring_stage(str(fields["what"]), line.get("experiment") or "")
    return "other"


def _scoring_stage(what: str, experiment: str) -> str:
    """A scoring stage by its `what`: "EXP: APPROACH SPLIT", "EXP: regression suite, base", ..."""
    rest = what[len(experiment) + 2:] if what.startswith(f"{experiment}: ") else what
    if any(word in rest for word in ("regression", "forgetting", "capability suite")):
        return "regression gate"
    if "(overfit check)" in rest:
        return "overfit check"
    if "(agreement check)" in rest:
        return "generation checks"
    if _TRIAL.match(rest):
        return "sweep"
    approach = rest.split(" ", 1)[0]
    if not approach:
        return "other"
    return "candidate scoring" if approach == "candidate" else f"baseline {approach}"


def read(path: str | Path) -> list[dict]:
    lines = []
    for number, text in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if text.strip():
            try:
                lines.append(json.loads(text))
            except json.JSONDecodeError as e:
                sys.exit(f"{path} line {number}: not a JSON line ({e}); is it a --harness-events log?")
    return lines


def timelines(lines: list[dict]) -> list[list[dict]]:
    """One list per process and session: pytest-xdist workers write their own lines (with
    "worker"), and a log appended to by two sessions starts again at each session_started."""
    streams: dict[str | None, list[list[dict]]] = defaultdict(list)
    for line in lines:
        runs = streams[line.get("worker")]
        if not runs or line.get("kind") == "plugin.session_started":
            runs.append([])
        runs[-1].append(line)
    return [timeline for runs in streams.values() for timeline in runs]


def summarise(lines: list[dict]) -> dict:
    """{"experiments": {name: {stage: seconds}}, "total": {stage: seconds}, "wall": seconds,
    "timelines": n, "other": [the unmatched lines]}; every second between a timeline's first
    and last line is in exactly one stage, so "total" sums to "wall"."""
    experiments: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    total: dict[str, float] = defaultdict(float)
    other, wall = [], 0.0
    found = timelines(lines)
    for timeline in found:
        wall += timeline[-1]["t"] - timeline[0]["t"]
        for before, line in pairwise(timeline):
            seconds, name, where = line["t"] - before["t"], stage(line), scope(line)
            total[name] += seconds
            if where is not SESSION:
                experiments[where][name] += seconds
            if name == "other":
                other.append(line)
        if stage(timeline[0]) == "other":  # its time is not known, but it is not hidden either
            other.append(timeline[0])
    return {"experiments": {k: dict(v) for k, v in experiments.items()}, "total": dict(total), "wall": wall,
            "timelines": len(found), "other": other}


def _ordered(stages: dict[str, float]) -> list[str]:
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(stages, key=lambda s: rank.get(s.split(" ", 1)[0] if s.startswith("baseline ") else s,
                                                 len(ORDER)))


def table(stages: dict[str, float], whole: float) -> list[str]:
    width = max([len(s) for s in stages] + [len("stage")])
    rows = [f"  {'stage':<{width}}  {'seconds':>9}  {'share':>6}"]
    for name in _ordered(stages):
        share = stages[name] / whole if whole > 0 else 0.0
        rows.append(f"  {name:<{width}}  {stages[name]:>9.1f}  {share:>6.1%}")
    return rows


def cpu() -> str:
    """lscpu's model name and which of the flags that matter for CPU training it has."""
    try:
        said = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        facts = dict(line.split(":", 1) for line in said.splitlines() if ":" in line)
        model, flags = facts.get("Model name", "?").strip(), set(facts.get("Flags", "").split())
    except (OSError, subprocess.CalledProcessError):
        model, flags = "? (no lscpu)", set()
    have = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in ("avx2", "avx512f", "avx512_bf16"))
    return f'lscpu "Model name: {model}", {os.cpu_count()} CPUs; flags: {have}'


def report(lines: list[dict], source: str) -> str:
    found = summarise(lines)
    out = [f"stages of {source}: one run's wall time on this CPU: {cpu()}",
           "(the CPU of the machine this summary runs on: summarise where the log was written)", ""]
    for name, stages in found["experiments"].items():
        seconds = sum(stages.values())
        out += [f"{name}: run {seconds:.1f} s", *table(stages, seconds), ""]
    if not found["experiments"]:
        out.append("no run started in this log (collection only, or no experiment was selected)")
    several = f", {found['timelines']} timelines summed (xdist workers or sessions)" if found["timelines"] > 1 else ""
    out += [f"total: wall {found['wall']:.1f} s, first line to last{several}", *table(found["total"], found["wall"])]
    if found["other"]:
        n = len(found["other"])
        out += ["", f"other: {n} line{'s' if n != 1 else ''} no rule knows:"]
        for line in found["other"][:20]:
            said = (line.get("fields") or {}).get("what") or line.get("text", "")
            out.append(f"  {line.get('kind')!r} ({line.get('experiment')}): {said}")
        if len(found["other"]) > 20:
            out.append(f"  ... and {len(found['other']) - 20} more")
    return "\n".join(out)


def run(pytest_args: list[str], events: Path) -> int:
    command = [sys.executable, "-m", "pytest", "experiments/", "--harness-events", str(events), *pytest_args]
    print(f"stages: {' '.join(command[1:])}  (in {Path.cwd()}, load average {os.getloadavg()[0]:.1f})", flush=True)
    code = subprocess.run(command, check=False).returncode
    print(f"stages: pytest exit code {code} (load average {os.getloadavg()[0]:.1f})\n", flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log", nargs="?", help="a log written by pytest --harness-events LOG")
    parser.add_argument("--events", metavar="PATH", help="with --run: write the log here and keep it")
    parser.add_argument("--run", nargs=argparse.REMAINDER, metavar="PYTEST_ARGS",
                        help="run `pytest experiments/ --harness-events LOG PYTEST_ARGS` here first (last option)")
    args = parser.parse_args(argv)
    if (args.log is None) == (args.run is None):
        parser.error("give a LOG to summarise, or --run [pytest args], not both")
    if args.log is not None:
        print(report(read(args.log), args.log))
        return 0
    with tempfile.TemporaryDirectory(prefix="stages-") as tmp:
        events = Path(args.events) if args.events else Path(tmp) / "events.jsonl"
        if events.exists():
            sys.exit(f"{events} exists; the log is appended to, so give a new path or remove it")
        code = run(args.run, events)
        if not events.exists():
            sys.exit(f"pytest wrote no event log (exit code {code}): was the harness plugin loaded?")
        print(report(read(events), str(events) if args.events else "this run"))
    return code


if __name__ == "__main__":
    sys.exit(main())
