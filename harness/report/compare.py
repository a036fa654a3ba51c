"""One run against another: per gate (its outcome then and now), per approach (the key metric's
change on the test rows, with a paired interval where both runs scored the same rows, and the
rows it fixed and broke), and what changed in between. For a pull-request comment (markdown) or
a CI step (JSON, and an exit status that is non-zero when a gate got worse).

The outcomes and verdicts compared are `judge.decision`'s; the interval is `judge.stats`'
paired bootstrap, in metric points. Nothing here re-judges a gate.
"""
from __future__ import annotations

import subprocess

from harness.errors import HarnessError
from harness.judge import decision, stats
from harness.judge.outcomes import FAIL, GATES, INCONCLUSIVE, PASS
from harness.report.format import fmt_num, json_plain, md_cell, md_inline
from harness.report.history import changes
from harness.store.record import StoredRun

# how good a gate outcome is, for "worse" and "better"; SKIP is not ranked (nothing was judged)
_RANK = {PASS: 2, INCONCLUSIVE: 1, FAIL: 0}
EXAMPLES_SHOWN = 5  # fixed and broken rows listed per approach


def resolve(store, experiment: str | None, ref: str, *, root: str = ".") -> StoredRun:
    """A run id, or a git branch, tag or commit: the latest complete run of `experiment` that
    recorded that commit (the store keeps each run's commit in its provenance)."""
    by_id = store.stored_runs(run_id=ref)
    if by_id:
        return by_id[0]
    if experiment is None:
        raise HarnessError(f"{ref!r} is no run id in the store; to compare by git ref, name the experiment")
    try:
        done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=root,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise HarnessError(f"{ref!r} is no run id, and git could not be asked ({e})") from None
    commit = done.stdout.strip()
    if done.returncode != 0 or not commit:
        raise HarnessError(f"{ref!r} is neither a run id nor a git ref here; `harness runs {experiment}` lists runs")
    found = [s for s in store.stored_runs(experiment, "complete") if s.run.provenance.get("git_commit") == commit]
    if not found:
        raise HarnessError(f"no complete run of {experiment!r} at {ref} ({commit[:12]}); run `pytest experiments/` "
                           f"on that commit, or keep its .harness/ from CI")
    return found[-1]


def compare(store, base: StoredRun, head: StoredRun) -> dict:
    """What changed from `base` to `head`: see the module docstring. `worse` lists the gates
    whose outcome got worse, and the verdict if CI went from going on to stopping."""
    said = {side: decision.decide(s.gates, status=s.run.status) for side, s in (("base", base), ("head", head))}
    gates = []
    for name in [g for g in GATES if base.gate(g) or head.gate(g)]:
        before, now = base.gate(name), head.gate(name)
        gates.append({"gate": name, "base": before.outcome if before else None, "head": now.outcome if now else None,
                      "change": _change(before, now), "message": now.message if now else None})
    worse = [g["gate"] for g in gates if g["change"] == "worse"]
    if said["base"].passed and not said["head"].passed:
        worse.append("verdict")
    return json_plain({
        "experiment": head.run.experiment,
        "base": _side(base, said["base"]), "head": _side(head, said["head"]),
        "changes": changes(head.run, [base.run]) if base.run.run_id != head.run.run_id else [],
        "gates": gates,
        "approaches": [_approach(store, base, head, name) for name in _shared_approaches(base, head)],
        "worse": worse,
    })


def _side(stored: StoredRun, found) -> dict:
    run = stored.run
    return {"run_id": run.run_id, "commit": run.provenance.get("git_commit"), "started_at": run.started_at,
            "status": run.status, "verdict": found.verdict, "passed": found.passed}


def _change(before, now) -> str:
    if before is None or now is None:
        return "added" if before is None else "removed"
    if before.outcome == now.outcome:
        return "same"
    if before.outcome in _RANK and now.outcome in _RANK:
        return "better" if _RANK[now.outcome] > _RANK[before.outcome] else "worse"
    # to or from SKIP: worse only where the gate let CI go on before and stops it now
    if decision.gate_passes(before) and not decision.gate_passes(now):
        return "worse"
    return "changed"


def _shared_approaches(base: StoredRun, head: StoredRun) -> list[str]:
    names = [a.name for a in head.approaches]
    return [n for n in names if base.approach(n) is not None]


def _approach(store, base: StoredRun, head: StoredRun, name: str) -> dict:
    key = head.run.key_metric or base.run.key_metric
    before, now = base.score(name, metric=key), head.score(name, metric=key)
    row = {"approach": name, "kind": head.approach(name).kind, "metric": key, "base": before, "head": now,
           "delta": now - before if before is not None and now is not None else None,
           "low": None, "high": None, "paired_rows": 0, "paired_on": None, "fixed": [], "broken": []}
    pairs, paired_on = _paired_rows(store, base, head, name)
    if not pairs:
        return row
    b = [p[1]["score"] for p in pairs]
    h = [p[2]["score"] for p in pairs]
    uplift = stats.paired_uplift(h, b, threshold=0.0, relative=False, seed=0)
    row.update(low=uplift.low, high=uplift.high, paired_rows=len(pairs), paired_on=paired_on)
    moved = sorted(((p[2]["score"] - p[1]["score"], p) for p in pairs if p[2]["score"] != p[1]["score"]),
                   key=lambda m: -abs(m[0]))
    for delta, (rowkey, old, new) in moved:
        shown = {"row": rowkey, "input": new["input"], "reference": new["reference"], "base": old["prediction"],
                 "head": new["prediction"], "delta": delta}
        target = row["fixed"] if delta > 0 else row["broken"]
        if len(target) < EXAMPLES_SHOWN:
            target.append(shown)
    row["fixed_count"] = sum(1 for d, _ in moved if d > 0)
    row["broken_count"] = sum(1 for d, _ in moved if d < 0)
    return row


def _paired_rows(store, base: StoredRun, head: StoredRun, name: str) -> tuple[list, str | None]:
    """The test rows both runs scored, paired: by position where the sealed test split is the
    same (its hash), else by example key. Rows without a finite score are left out."""
    old = store.rows("predictions", base.run.run_id, split="test", approach=name)
    new = store.rows("predictions", head.run.run_id, split="test", approach=name)
    finite = lambda r: r.get("score") is not None and r["score"] == r["score"]  # noqa: E731 - NaN is not equal to itself
    if base.run.test_sha256 and base.run.test_sha256 == head.run.test_sha256 and len(old) == len(new):
        by, paired_on = (lambda r: r["idx"]), "the same test split"
    else:
        by, paired_on = (lambda r: r.get("example_key")), "example keys"
    olds = {by(r): r for r in old if by(r) is not None and finite(r)}
    pairs = [(by(r), olds[by(r)], r) for r in new if by(r) in olds and finite(r)]
    return pairs, paired_on if pairs else None


def markdown(found: list[dict]) -> str:
    """Comparisons as markdown for a pull-request comment: a table of gates per experiment, then
    the key metric per approach with its interval, then the rows fixed and broken."""
    lines = []
    for c in found:
        base, head = c["base"], c["head"]
        mark = "gets worse: " + ", ".join(c["worse"]) if c["worse"] else "nothing got worse"
        lines += [f"### {md_inline(c['experiment'])}: {mark}", "",
                  f"base `{base['run_id']}`{_commit(base)} **{md_cell(base['verdict'])}** → head `{head['run_id']}`"
                  f"{_commit(head)} **{md_cell(head['verdict'])}**", ""]
        if c["changes"]:
            lines += ["Changed in between: " + "; ".join(md_inline(x) for x in c["changes"]), ""]
        lines += ["| gate | base | head | change |", "|---|---|---|---|"]
        lines += [f"| {g['gate']} | {g['base'] or '-'} | {g['head'] or '-'} | {g['change']} |" for g in c["gates"]]
        if c["approaches"]:
            lines += ["", "| approach | metric | base | head | change (95% CI) | rows fixed / broken |",
                      "|---|---|---|---|---|---|"]
            for a in c["approaches"]:
                interval = (f" ({_points(a['low'])}..{_points(a['high'])} on {a['paired_rows']} rows)"
                            if a["low"] is not None else "")
                counts = f"{a.get('fixed_count', 0)} / {a.get('broken_count', 0)}" if a["paired_rows"] else "-"
                lines.append(f"| {md_cell(a['approach'])} | {md_cell(a['metric'])} | {fmt_num(a['base'])} | "
                             f"{fmt_num(a['head'])} | {_points(a['delta'])}{interval} | {counts} |")
            for a in c["approaches"]:
                if a["fixed"] or a["broken"]:
                    lines += ["", f"<details><summary>{md_inline(a['approach'])}: rows fixed and broken</summary>", ""]
                    lines += [f"- {'fixed' if e['delta'] > 0 else 'broken'}: {md_inline(e['input'])[:120]} "
                              f"(reference {md_inline(e['reference'])[:60]}): {md_inline(e['base'])[:60]} → "
                              f"{md_inline(e['head'])[:60]}" for e in a["fixed"] + a["broken"]]
                    lines += ["", "</details>"]
        lines.append("")
    return "\n".join(lines)


def _commit(side: dict) -> str:
    return f" (commit `{side['commit'][:12]}`)" if side.get("commit") else ""


def _points(x) -> str:
    return "-" if x is None else f"{x:+.3f}"
