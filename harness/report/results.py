"""The machine-readable result of stored runs (results.json) and the markdown a CI job summary
or a pull-request comment shows.

Both are views of the store, like the HTML report: the verdict in them is `judge.decision`'s,
the recommendation `judge.recommendation`'s, the headline numbers `report.summary`'s. Nothing
here judges anything. The shape is versioned: `results.schema.json` beside this module is the
contract (docs/ci.md), and SCHEMA_VERSION changes whenever a field changes meaning or goes.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from harness.judge import decision, recommendation
from harness.judge.outcomes import GATES
from harness.report.format import fmt_num, fmt_threshold, fmt_uplift, json_plain, md_cell, md_inline
from harness.report.summary import run_summary
from harness.store.record import StoredRun

SCHEMA = "harness-results"
SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("results.schema.json")


def latest_runs(store, names=None) -> list[StoredRun]:
    """Each experiment's latest run, whatever its status: of `names` in that order, else of every
    experiment in the store. What results.json, `harness summary` and `harness compare` show."""
    if names is None:
        names = dict.fromkeys(r.experiment for r in store.runs())
    return [found[-1] for name in names if (found := store.stored_runs(name))]


def results(runs: list[StoredRun], *, gpu_hour_price: float | None = None, calls: int | None = None) -> dict:
    """results.json for these runs: each run's verdict, gates, approaches and provenance, and
    whether CI goes on (every run completed and passed its gates)."""
    from harness import __version__

    shown = [run_result(stored, gpu_hour_price=gpu_hour_price, calls=calls) for stored in runs]
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "harness_version": __version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "passed": all(r["verdict"]["passed"] for r in shown), "runs": shown}


def run_result(stored: StoredRun, *, gpu_hour_price: float | None = None, calls: int | None = None) -> dict:
    run = stored.run
    found = decision.decide(stored.gates, status=run.status)
    summary = run_summary(stored)
    view, recommended = recommendation.for_run(stored, gpu_hour_price=gpu_hour_price, calls=calls)
    candidate = stored.candidate
    return json_plain({
        "experiment": run.experiment, "run_id": run.run_id, "status": run.status, "spec_file": run.spec_file,
        "started_at": run.started_at, "finished_at": run.finished_at, "error": run.error,
        "task": run.task, "key_metric": run.key_metric,
        "model": {"name": run.model, "sha256": run.model_sha256},
        "data": {"path": run.data_path, "sha256": run.data_sha256, "test_sha256": run.test_sha256},
        "verdict": {"verdict": found.verdict, "passed": found.passed, "exportable": found.exportable,
                    "reason": found.reason, "deciding_gate": found.deciding.gate if found.deciding else None,
                    "allowed": decision.allowed_notes(found)},
        "rule": {k: summary[k] for k in ("candidate", "baseline", "candidate_score", "baseline_score", "uplift",
                                         "low", "high", "n", "threshold", "relative", "confidence", "mcnemar_p",
                                         "planned")},
        "gates": [{"gate": g.gate, "outcome": g.outcome, "item": decision.item_outcome(g),
                   "allowed": decision.allowed(g), "message": g.message, "details": g.details}
                  for g in sorted(stored.gates, key=_gate_order)],
        "baseline": {"name": run.best_baseline, "test": stored.metrics.get(run.best_baseline, {}).get("test")}
        if run.best_baseline else None,
        "candidate": {"name": candidate.name, "config": candidate.config, "adapter_sha256": candidate.adapter_sha256,
                      "train_seconds": candidate.train_seconds,
                      "test": stored.metrics.get(candidate.name, {}).get("test")} if candidate else None,
        "approaches": [{"name": a.name, "kind": a.kind, "metrics": stored.metrics.get(a.name, {}),
                        "prompt_tokens": a.prompt_tokens, "generated_tokens": a.generated_tokens,
                        "latency_p50_ms": a.latency_p50_ms, "latency_p95_ms": a.latency_p95_ms,
                        "train_seconds": a.train_seconds} for a in stored.approaches],
        "cost": view.to_dict() if view is not None else None,
        # a run that did not complete recommends nothing: its gates were never judged
        "recommendation": {"action": recommended.action, "verdict": recommended.verdict,
                           "reasons": list(recommended.reasons)} if recommended and run.status == "complete" else None,
        "provenance": run.provenance,
    })


def _gate_order(gate) -> int:
    return GATES.index(gate.gate) if gate.gate in GATES else len(GATES)


def write(path: Path | str, found: dict) -> Path:
    """Write results.json whole or not at all (a reader in CI never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(found, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def markdown(found: dict) -> str:
    """The runs as GitHub-flavoured markdown: one table row per run (verdict, each gate, the
    rule's numbers), then each run's gate messages and recommendation in a collapsed block."""
    runs = found["runs"]
    if not runs:
        return "## harness\n\nNo runs recorded.\n"
    failing = [r["experiment"] for r in runs if not r["verdict"]["passed"]]
    head = ("CI passes: every experiment completed and passed its gates" if not failing
            else f"CI fails: {', '.join(failing)}")
    gates = [g for g in GATES if any(x["gate"] == g for r in runs for x in r["gates"])]
    header = ["experiment", "verdict", *gates, "candidate vs best baseline"]
    lines = [f"## harness: {head}", "", _row(header), _row(["---"] * len(header))]
    for r in runs:
        by_gate = {g["gate"]: g for g in r["gates"]}
        lines.append(_row([md_cell(r["experiment"]), f"**{md_cell(r['verdict']['verdict'])}**",
                           *(_outcome_cell(by_gate.get(g)) for g in gates), md_cell(_rule_text(r))]))
    for r in runs:
        lines += ["", f"<details><summary>{md_inline(r['experiment'])}: {md_inline(r['verdict']['reason'])}</summary>", ""]
        lines += [f"- **{g['gate']}** {g['outcome']}" + (" (allowed by the spec)" if g["allowed"] else "")
                  + f": {md_inline(g['message'])}" for g in r["gates"]]
        if r["error"]:
            lines.append(f"- error: {md_inline(r['error'])}")
        if r["recommendation"]:
            lines.append(f"- recommendation: **{md_inline(r['recommendation']['action'])}**")
            lines += [f"  - {md_inline(reason)}" for reason in r["recommendation"]["reasons"]]
        lines += ["", f"run `{r['run_id']}`, model `{r['model']['name'] or '-'}`"
                  + (f", commit `{r['provenance']['git_commit'][:12]}`" if r["provenance"].get("git_commit") else ""),
                  "", "</details>"]
    return "\n".join(lines) + "\n"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _rule_text(r: dict) -> str:
    rule = r["rule"]
    if r["status"] != "complete":
        return "-"
    if rule["candidate_score"] is None or rule["baseline_score"] is None:
        return "no candidate" if not rule["candidate"] else "-"
    relative = rule["relative"]
    interval = (f" (CI {fmt_uplift(rule['low'], relative)}..{fmt_uplift(rule['high'], relative)})"
                if rule["low"] is not None and rule["high"] is not None else "")
    return (f"{r['key_metric']} {fmt_num(rule['candidate_score'])} vs {fmt_num(rule['baseline_score'])} "
            f"({rule['baseline']}): {fmt_uplift(rule['uplift'], relative)}{interval}, bar "
            f"{fmt_threshold(rule['threshold'], relative)}")


def _outcome_cell(gate: dict | None) -> str:
    if gate is None:
        return "-"
    return gate["outcome"] + (" (allowed)" if gate["allowed"] else "")
