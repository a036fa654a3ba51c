"""HTML reports for the decision meeting, rendered from the DuckDB store alone.

    write_reports(Store(".harness/harness.duckdb"), "reports")

writes `reports/index.html` (one row per experiment) and `reports/<experiment>.html` (the
latest complete run of that experiment: verdict, gates, approaches, uplift interval, loss
curves, the hyperparameter sweep its candidate came from, per-example flips, data-quality
checks, provenance, and the history of every run).

Everything shown is read back from the store, never from a pipeline's objects in memory,
so a report can be rebuilt at any time from the file alone. Pages are self-contained
(inline CSS, inline SVG charts, one small inline script), load nothing from the network,
and escape every piece of data: model outputs and data rows are hostile text.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from harness.candidate.sweep import best_of
from harness.errors import HarnessError
from harness.files import write_text_atomically
from harness.judge import decision, recommendation
from harness.judge.decision import FINE_TUNE, INCONCLUSIVE_VERDICT, KEEP_PROMPTING
from harness.judge.outcomes import FAIL, FIVE_PERCENT_RULE, INCONCLUSIVE, PASS, SKIP, GateResult
from harness.scoring import separation
from harness.store import Store

TEMPLATES = Path(__file__).resolve().parent / "templates"
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PAGE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(~[0-9]{1,6})?")
_RESERVED_STEMS = {"index"}

RULE = FIVE_PERCENT_RULE
MAX_FLIPS = 300          # rows per direction shown in the flips table
MAX_CHECK_LINES = 20     # line numbers listed per data-quality check

# Badge classes, one per outcome / verdict / status / check level / sweep-trial state (fixed
# strings, never data; a trial's FAIL shares the gate outcome's).
_BADGE = {PASS: "pass", FAIL: "fail", INCONCLUSIVE: "warn", SKIP: "skip",
          FINE_TUNE: "pass", KEEP_PROMPTING: "fail", INCONCLUSIVE_VERDICT: "warn",
          decision.RUN_FAILED: "fail", decision.RUNNING: "skip",
          "complete": "pass", "failed": "fail", "running": "skip",
          "COMPLETE": "pass", "PRUNED": "warn",
          "error": "fail", "warning": "warn", "info": "skip"}
_OUTCOME_COLOR = {PASS: "#15803d", FAIL: "#b91c1c", INCONCLUSIVE: "#b45309", SKIP: "#6b7280"}
_SERIES_COLORS = {"train": "#2563eb", "val": "#ea580c"}
_PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#0891b2", "#be123c"]

# The one script on a page: filters the flips table. Static text; the data it filters is
# escaped HTML in the table, never JSON pasted into the script. Its hash goes into the CSP.
FLIPS_JS = """
(function () {
  var box = document.getElementById('flip-filter');
  if (!box) { return; }
  var rows = Array.prototype.slice.call(document.querySelectorAll('#flips tbody tr'));
  var buttons = Array.prototype.slice.call(document.querySelectorAll('[data-flip-kind]'));
  var count = document.getElementById('flip-count');
  var kind = 'all';
  function apply() {
    var q = box.value.toLowerCase();
    var shown = 0;
    rows.forEach(function (r) {
      var ok = (kind === 'all' || r.getAttribute('data-kind') === kind) &&
               (!q || r.textContent.toLowerCase().indexOf(q) >= 0);
      r.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown + ' of ' + rows.length + ' shown';
  }
  box.addEventListener('input', apply);
  buttons.forEach(function (b) {
    b.addEventListener('click', function () {
      kind = b.getAttribute('data-flip-kind');
      buttons.forEach(function (x) { x.setAttribute('aria-pressed', x === b ? 'true' : 'false'); });
      apply();
    });
  });
  apply();
})();
"""


class ReportError(HarnessError):
    """A report cannot be written where asked."""


# --- public API ------------------------------------------------------------------------------

def write_reports(store: Store, out_dir: str | Path, *, gpu_hour_price: float | None = None,
                  calls: int | None = None) -> list[Path]:
    """Render `index.html` and one `<experiment>.html` per experiment into out_dir, from the store alone.

    Returns the written paths, index first. Each file is written atomically (temp file + rename).
    An experiment whose name would put its page outside out_dir is refused: no page is written
    for it and the index says so.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = _environment()
    data = _load(store)
    stems = _page_stems(sorted(data))
    written: list[Path] = []
    index_rows = []
    for name in sorted(data):
        page = _experiment_context(name, data[name])
        page["cost_view"], page["recommendation"] = None, None
        if data[name]["shown"] is not None:
            view, recommended = recommendation.for_run(store, data[name]["shown"], gpu_hour_price=gpu_hour_price,
                                                       calls=calls)
            page["cost_view"] = view.to_dict() if view else None
            page["recommendation"] = recommended.to_dict()
        try:
            path = _safe_path(out, stems[name])
        except ReportError as e:
            page["refused"] = str(e)
            index_rows.append(_index_row(page, href=None))
            continue
        html = env.get_template("experiment.html").render(
            **page, title=f"{name}: {page['verdict']['label']}", csp=_csp(FLIPS_JS), flips_js=Markup(FLIPS_JS),
            generated=_now_text(), index_href="index.html")
        write_text_atomically(path, html)
        written.append(path)
        index_rows.append(_index_row(page, href=quote(path.name)))
    counts = {label: sum(1 for r in index_rows if r["verdict"]["label"] == label)
              for label in (FINE_TUNE, KEEP_PROMPTING, INCONCLUSIVE_VERDICT)}
    index_html = env.get_template("index.html").render(
        rows=index_rows, counts=counts, title="Fine-tune or keep prompting?", csp=_csp(None),
        generated=_now_text(), store_path=store.path)
    index_path = _safe_path(out, "index")
    write_text_atomically(index_path, index_html)
    return [index_path, *written]


# --- paths and files -------------------------------------------------------------------------

def _page_stems(names: Sequence[str]) -> dict[str, str]:
    """A file stem per experiment, unique even on case-insensitive file systems and never 'index'.

    A clash gets a `~N` suffix, a character no valid experiment name contains, so suffixed
    stems can't clash with natural ones.
    """
    used = set(_RESERVED_STEMS)
    stems = {}
    for name in names:
        stem, n = name, 1
        while stem.casefold() in used:
            n += 1
            stem = f"{name}~{n}"
        used.add(stem.casefold())
        stems[name] = stem
    return stems


def _safe_path(out_dir: str | Path, stem: str) -> Path:
    """out_dir/<stem>.html, refused unless stem is a valid page name that stays inside out_dir."""
    if not isinstance(stem, str) or not _PAGE_STEM.fullmatch(stem):
        raise ReportError(f"refusing to write a report page for {stem!r}: not a valid experiment name "
                          f"({EXPERIMENT_NAME.pattern})")
    root = Path(out_dir).resolve()
    target = (root / f"{stem}.html").resolve()
    if target.parent != root:
        raise ReportError(f"refusing to write a report page for {stem!r}: {target} is outside {root}")
    return target


def _csp(script: str | None) -> str:
    """A Content-Security-Policy that loads nothing from anywhere and runs only our own script."""
    if script is None:
        scripts = "'none'"
    else:
        digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
        scripts = f"'sha256-{digest}'"
    return (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {scripts}; "
            f"base-uri 'none'; form-action 'none'")


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                      autoescape=select_autoescape(["html", "htm", "xml"], default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=fmt_num, ms=fmt_ms, duration=fmt_duration, uplift=fmt_uplift, when=fmt_when,
                       short=fmt_hash, badge=badge_class, tokens=fmt_tokens)
    return env


# --- reading the store -----------------------------------------------------------------------

def _load(store: Store) -> dict[str, dict]:
    """Every experiment's runs with their metrics, gates and approaches; the shown run's detail."""
    runs = store.runs()
    metrics = _by_run(store.query("SELECT run_id, approach, split, metric, value FROM metrics"))
    gates = _by_run(_decoded(store.query("SELECT run_id, gate, outcome, message, details FROM gates")))
    approaches = _by_run(_decoded(store.query("SELECT * FROM approaches")))
    out: dict[str, dict] = {}
    for run in runs:
        rid = run["run_id"]
        run["metrics"] = metrics.get(rid, [])
        run["gates"] = gates.get(rid, [])
        run["approaches"] = approaches.get(rid, [])
        out.setdefault(run["experiment"], {"runs": []})["runs"].append(run)
    for name, experiment in out.items():
        complete = [r for r in experiment["runs"] if r["status"] == "complete"]
        shown = complete[-1] if complete else None
        experiment["shown"] = shown
        if shown is not None:
            rid = shown["run_id"]
            shown["checks"] = store.rows("checks", rid)
            shown["curves"] = store.rows("curves", rid)
            shown["predictions"] = store.rows("predictions", rid, split="test")
        experiment["sweep"] = _load_sweep(store, name, shown) if shown is not None else None
        latest = experiment["runs"][-1]
        if latest is not shown and latest["status"] == "failed":
            latest["checks"] = store.rows("checks", latest["run_id"])
    return out


def _load_sweep(store: Store, experiment: str, run: dict) -> dict | None:
    """The sweep trials to show beside a run: the study its candidate came from, else the
    experiment's most recent study (by its last finished trial), else None."""
    origin = _sweep_origin(run)
    named = origin.get("study") if isinstance(origin.get("study"), str) else None
    if named is not None:
        trials = store.trials(study=named, experiment=experiment)
        if trials:
            return {"study": named, "trials": trials, "from_run": True, "named": named,
                    "run_trial": origin.get("trial")}
    trials = store.trials(experiment=experiment)
    if not trials:
        return None
    last_finished: dict[str, str] = {}
    for t in trials:
        when = str(t.get("finished_at") or t.get("started_at") or "")
        last_finished[t["study"]] = max(last_finished.get(t["study"], ""), when)
    study = max(last_finished, key=lambda s: (last_finished[s], s))
    return {"study": study, "trials": [t for t in trials if t["study"] == study], "from_run": False,
            "named": named, "run_trial": None}


def _sweep_origin(run: dict) -> dict:
    """The `sweep` entry ({study, trial, params}) of the run's candidate config; {} if it has none."""
    for a in run.get("approaches", []):
        config = a.get("config")
        if a.get("kind") == "candidate" and isinstance(config, dict) and isinstance(config.get("sweep"), dict):
            return config["sweep"]
    return {}


def _by_run(rows: Iterable[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["run_id"], []).append(row)
    return grouped


def _decoded(rows: list[dict]) -> list[dict]:
    for row in rows:
        for key in ("config", "details", "lines"):
            if isinstance(row.get(key), str):
                try:
                    row[key] = json.loads(row[key])
                except ValueError:
                    pass
    return rows


# --- what a run says -------------------------------------------------------------------------

def _metric_table(run: dict) -> dict[str, dict[str, dict[str, float]]]:
    """approach -> split -> metric -> value."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for m in run.get("metrics", []):
        table.setdefault(m["approach"], {}).setdefault(m["split"], {})[m["metric"]] = m["value"]
    return table


def _gate_map(run: dict) -> dict[str, dict]:
    return {g["gate"]: g for g in run.get("gates", [])}


def _key_metric(run: dict) -> str | None:
    if run.get("key_metric"):
        return run["key_metric"]
    details = _details(_gate_map(run).get(RULE))
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    return details.get("metric") or config.get("metric")


def _details(gate: dict | None) -> dict:
    details = (gate or {}).get("details")
    return details if isinstance(details, dict) else {}


def _candidate_name(run: dict) -> str | None:
    for a in run.get("approaches", []):
        if a.get("kind") == "candidate":
            return a["approach"]
    names = {m["approach"] for m in run.get("metrics", [])}
    return "candidate" if "candidate" in names else None


def _best_baseline(run: dict, metrics: dict, key: str | None) -> str | None:
    """The best baseline as the five-percent rule named it; else the best on val (then test)."""
    named = _details(_gate_map(run).get(RULE)).get("baseline")
    baselines = [a["approach"] for a in run.get("approaches", []) if a.get("kind") == "baseline"]
    if isinstance(named, str) and (named in baselines or named in metrics):
        return named
    if not baselines or key is None:
        return baselines[0] if baselines else None
    for split in ("val", "test"):
        scored = [(v, b) for b in baselines if _finite(v := metrics.get(b, {}).get(split, {}).get(key))]
        if scored:
            return max(scored)[1]
    return baselines[0]


def _num(value: Any) -> float | None:
    """A finite number, or None (missing, NaN, infinite, or not a number)."""
    return float(value) if _finite(value) else None


def _summary(run: dict) -> dict:
    """The headline numbers of one run: scores, uplift and interval, verdict."""
    metrics = _metric_table(run)
    key = _key_metric(run)
    gates = _gate_map(run)
    rule = gates.get(RULE)
    details = _details(rule)
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    candidate = _candidate_name(run)
    baseline = _best_baseline(run, metrics, key)

    def score(approach, split="test"):
        return metrics.get(approach, {}).get(split, {}).get(key) if approach and key else None

    cand_score = _num(details.get("candidate_score"))
    if cand_score is None:
        cand_score = _num(details.get("candidate"))
    if cand_score is None:
        cand_score = score(candidate)
    base_score = _num(details.get("baseline_score"))
    if base_score is None:
        base_score = score(baseline)
    relative = details.get("relative", config.get("relative", True))
    relative = bool(relative) if relative is not None else True
    threshold = _num(details.get("threshold"))
    if threshold is None:
        threshold = _num(config.get("threshold"))
    confidence = _num(details.get("confidence")) or _num(config.get("confidence"))
    return {
        "run_id": run["run_id"], "status": run["status"], "key": key, "candidate": candidate, "baseline": baseline,
        "candidate_score": cand_score, "baseline_score": base_score,
        "uplift": _num(details.get("uplift")), "low": _num(details.get("low")), "high": _num(details.get("high")),
        "n": details.get("n"), "mcnemar_p": _num(details.get("mcnemar_p")),
        "threshold": threshold, "relative": relative, "confidence": confidence,
        "rule_outcome": rule["outcome"] if rule else None,
        "verdict": verdict(run),
    }


def verdict(run: dict) -> dict:
    """The run's verdict as `judge.decision` decides it, for the badge: label, class, why, and
    the INCONCLUSIVE gates the spec let through (named, so no pass is silent)."""
    found = _decision(run)
    return {"label": found.verdict, "cls": _BADGE[found.verdict], "reason": found.reason,
            "ci_passed": found.passed, "allowed": [decision.policy_note(g) for g in found.allowed]}


def _decision(run: dict) -> decision.Decision:
    return decision.decide([GateResult.from_row(g) for g in run.get("gates", [])], status=run.get("status"))


def _headline(summary: dict, found: decision.Decision) -> str:
    """One sentence under the verdict that says what it means, for the gate that decided it."""
    bar = fmt_threshold(summary["threshold"], summary["relative"])
    key, base = summary["key"] or "the key metric", summary["baseline"] or "the best baseline"
    uplift = fmt_uplift(summary["uplift"], summary["relative"])
    interval = _interval_text(summary)
    rule, deciding = found.rule, found.deciding
    allowed = " The spec allows this INCONCLUSIVE, so CI goes on; the verdict stays open." \
        if deciding is not None and decision.allowed(deciding) else ""
    if rule is None:
        return "No five-percent-rule verdict was recorded for this run."
    if rule.outcome == SKIP:
        return "No candidate was fine-tuned in this run; only the prompt baselines were measured."
    if found.verdict == FINE_TUNE:
        return (f"The fine-tuned candidate beats the best prompt baseline ({base}) on {key} by {uplift}"
                f"{interval}, clearing the {bar} bar, and every other gate passed.")
    if deciding is rule and rule.outcome == FAIL:
        return (f"The fine-tuned candidate does not beat the best prompt baseline ({base}) by the {bar} bar: "
                f"uplift {uplift}{interval}. Prompting is good enough.")
    if deciding is rule:
        return (f"The uplift over {base} is {uplift}{interval}, an interval that straddles the {bar} bar: "
                f"the test split is too small to decide either way.{allowed}")
    if found.verdict == KEEP_PROMPTING:
        return (f"The candidate clears the {bar} bar ({uplift}{interval}), but the {deciding.gate} gate failed: "
                f"the fine-tune loses more general ability than it may.")
    return (f"The candidate clears the {bar} bar ({uplift}{interval}), but the {deciding.gate} gate is "
            f"{deciding.outcome}, so the result can't be trusted yet.{allowed}")


def _interval_text(summary: dict) -> str:
    if summary["low"] is None or summary["high"] is None:
        return ""
    level = f"{summary['confidence'] * 100:g}% " if summary["confidence"] else ""
    return (f" ({level}CI {fmt_uplift(summary['low'], summary['relative'])} .. "
            f"{fmt_uplift(summary['high'], summary['relative'])})")


def _experiment_context(name: str, data: dict) -> dict:
    runs = data["runs"]
    shown = data["shown"]
    latest = runs[-1]
    ctx: dict[str, Any] = {"name": name, "runs": len(runs), "refused": None, "shown": shown is not None,
                           "latest_status": latest["status"], "latest_started": latest["started_at"],
                           "latest_failed": None, "history": _history(runs, shown),
                           "complete_runs": sum(1 for r in runs if r["status"] == "complete"),
                           "sparkline": None, "sweep": None, "ceiling": None}
    scores = [_summary(r)["candidate_score"] for r in runs if r["status"] == "complete"]
    if sum(1 for v in scores if _finite(v)) >= 2:  # one point is not a trend
        ctx["sparkline"] = sparkline(scores)
    if latest is not shown and latest["status"] == "failed":
        ctx["latest_failed"] = {"run_id": latest["run_id"], "started_at": latest["started_at"],
                                "error": latest.get("error") or "(no error recorded)",
                                "checks": _checks(latest.get("checks", []))}
    if shown is None:
        ctx.update(verdict={"label": "No complete run", "cls": "skip"}, summary=None)
        return ctx
    summary = _summary(shown)
    gates = _gate_map(shown)
    metrics = _metric_table(shown)
    ordered_gates = sorted(gates.values(), key=lambda g: (g["gate"] != RULE, g["outcome"] != FAIL, g["gate"]))
    ctx.update(
        verdict=summary["verdict"], summary=summary, headline=_headline(summary, _decision(shown)),
        run=shown, gates=ordered_gates,
        why=[g for g in ordered_gates if g.get("message") and (g["outcome"] != SKIP or g["gate"] == RULE)],
        interval_svg=interval_chart(summary["uplift"], summary["low"], summary["high"], summary["threshold"],
                                    summary["relative"], summary["rule_outcome"], axis_label=_uplift_axis(summary)),
        approaches=_approaches(shown, metrics, summary),
        score_svg=None, cost=_cost(shown, summary),
        curves=_curves(shown.get("curves", [])),
        flips=_flips(shown.get("predictions", []), summary["baseline"], summary["candidate"]),
        checks=_checks(shown.get("checks", [])),
        provenance=_provenance(shown),
        sweep=_sweep(data["sweep"], summary["key"]) if data.get("sweep") else None,
    )
    ctx["ceiling"] = _prompt_ceiling(ctx["approaches"]["rows"], metrics, shown, summary)
    ceiling = ctx["ceiling"] or {}
    ctx["score_svg"] = bar_chart([(a["name"], a["key_test"], a["role"]) for a in ctx["approaches"]["rows"]],
                                 label=f"{summary['key'] or 'key metric'} on test"
                                 + (" (tick: best cut of its label scores)" if ceiling.get("ticks") else ""),
                                 ticks=ceiling.get("ticks"), reference=ceiling.get("reference"))
    return ctx


NO_SIGNAL_AUC = 0.6  # below this, a prompt's label scores barely rank the classes


def _prompt_ceiling(approach_rows: list[dict], metrics: dict, run: dict, summary: dict) -> dict | None:
    """Can a prompt do better? For label-scored accuracy: each approach's test score beside its
    label scores' separation (AUC) and the best cut of them (a ceiling for any calibration),
    against always answering the most common label; then what that says, in sentences.
    approach_rows: the approaches table's rows (name and role: baseline, best or candidate)."""
    if summary["key"] != "accuracy":
        return None
    test = {a["name"]: metrics[a["name"]]["test"] for a in approach_rows
            if _finite(metrics.get(a["name"], {}).get("test", {}).get("label_auc"))}
    baselines = [a["name"] for a in approach_rows if a["role"] != "candidate" and a["name"] in test]
    if not baselines:
        return None
    rows = [{"name": a["name"], "role": a["role"], "test": _num(test[a["name"]].get("accuracy")),
             "auc": _num(test[a["name"]].get("label_auc")),
             "ceiling": _num(test[a["name"]].get("best_threshold_accuracy"))}
            for a in approach_rows if a["name"] in test]
    prior = _num(test[baselines[0]].get("majority_class_rate"))
    shown = summary["baseline"] or baselines[0]
    answers = Counter(p.get("reference") for p in run.get("predictions", []) if p.get("approach") == shown)
    always = (f'always answering "{answers.most_common(1)[0][0]}"' if answers
              else "always answering the most common label")
    return {"rows": rows, "findings": _ceiling_findings(rows, prior, always), "prior": prior, "always": always,
            "ticks": {r["name"]: r["ceiling"] for r in rows if r["ceiling"] is not None},
            "reference": (prior, always) if prior is not None else None}


def _ceiling_findings(rows: list[dict], prior: float | None, always: str) -> list[str]:
    """At most three sentences: the best baseline against the prior, the prompts whose scores
    carry no signal, and the candidate against every prompt's ceiling."""
    findings = []
    prompts = [r for r in rows if r["role"] != "candidate"]
    best = next((r for r in prompts if r["role"] == "best"), None)
    candidate = next((r for r in rows if r["role"] == "candidate"), None)
    if prior is not None and best and best["test"] is not None:
        gap = (best["test"] - prior) * 100
        findings.append(f"{always.capitalize()} scores {fmt_num(prior)} on test. The best baseline, {best['name']}, "
                        f"scores {fmt_num(best['test'])}: {gap:+.1f} points" + (" above it." if gap > 0 else "."))
    blind = [r for r in prompts if r["auc"] is not None and r["auc"] < NO_SIGNAL_AUC]
    if blind:
        aucs = [r["auc"] for r in blind]
        tops = [r["ceiling"] for r in blind if r["ceiling"] is not None]
        reach = (f", and even the best cut of their scores, chosen with the test answers in hand, reaches only "
                 f"{fmt_num(max(tops))}." if tops else ".")
        findings.append(f"{len(blind)} of {len(prompts)} prompt baselines rank the classes barely better than chance "
                        f"or worse (test AUC {fmt_num(min(aucs), 2)}-{fmt_num(max(aucs), 2)}): calibration only "
                        f"moves their decision" + reach)
    with_ceiling = [r for r in prompts if r["ceiling"] is not None]
    if with_ceiling and candidate and candidate["test"] is not None:
        top = max(with_ceiling, key=lambda r: r["ceiling"])
        findings.append(
            f"No prompt here could score more than {fmt_num(top['ceiling'])} however its scores were calibrated "
            f"({top['name']}'s best cut, chosen on the test answers: a ceiling, not a result); the candidate scores "
            f"{fmt_num(candidate['test'])} with no such help (AUC {fmt_num(candidate['auc'], 2)} vs "
            f"{fmt_num(top['auc'], 2)}). " + (
                "The gap is in what the base model's scores know, not where they are cut: recalibrating these "
                "prompts cannot close it." if candidate["test"] > top["ceiling"] else
                "A better-calibrated prompt could come close to the candidate."))
    return findings


def _uplift_axis(summary: dict) -> str:
    kind = "relative" if summary["relative"] else "absolute"
    key = summary["key"] or "the key metric"
    return (f"{kind} uplift in {key} on test: {summary['candidate'] or 'candidate'} vs "
            f"{summary['baseline'] or 'best baseline'}")


def _approaches(run: dict, metrics: dict, summary: dict) -> dict:
    rows_by_name = {a["approach"]: a for a in run.get("approaches", [])}
    names = [a["approach"] for a in run.get("approaches", []) if a.get("kind") != "candidate"]
    names += [a["approach"] for a in run.get("approaches", []) if a.get("kind") == "candidate"]
    # metrics of names with no approach row (e.g. the regression suite's "base") only when they
    # have val/test scores: the suite has its own rows in the gate table
    names += sorted(n for n in metrics if n not in rows_by_name and {"val", "test"} & set(metrics[n]))
    key = summary["key"]
    metric_names: list[str] = [key] if key else []
    for approach in names:
        for split in ("val", "test"):
            for m in metrics.get(approach, {}).get(split, {}):
                if m not in metric_names and m not in separation.METRICS:  # those have their own section
                    metric_names.append(m)
    splits = [s for s in ("val", "test") if any(s in metrics.get(a, {}) for a in names)]
    rows = []
    for approach in names:
        a = rows_by_name.get(approach, {})
        role = ("candidate" if a.get("kind") == "candidate" or approach == summary["candidate"]
                else "best" if approach == summary["baseline"] else "baseline")
        rows.append({"name": approach, "kind": a.get("kind", "?"), "role": role,
                     "values": [[metrics.get(approach, {}).get(s, {}).get(m) for s in splits] for m in metric_names],
                     "key_test": metrics.get(approach, {}).get("test", {}).get(key) if key else None,
                     "prompt_tokens": a.get("prompt_tokens"), "p50": a.get("latency_p50_ms"),
                     "p95": a.get("latency_p95_ms"), "train_seconds": a.get("train_seconds"),
                     "config": _config_view(a.get("config"), approach)})
    return {"metrics": metric_names, "splits": splits, "rows": rows}


CONFIG_BRIEF_KEYS = 4    # settings named on the approaches table's one line; the rest fold away


def _config_view(config: Any, name: str) -> dict | None:
    """An approach's config as one short line of its first few settings, and the whole of it
    (system prompt and few-shot examples included) as indented JSON for a collapsed <details>."""
    if not isinstance(config, dict) or not config:
        return None
    brief = []
    for k, v in config.items():
        if len(brief) == CONFIG_BRIEF_KEYS:
            break
        if v is None or isinstance(v, (dict, list)) or k in ("system_prompt", "shots", "seed") or \
                (k == "name" and v == name):
            continue
        brief.append(f"{k}={_short(str(v), 32)}")
    return {"brief": ", ".join(brief), "count": len(config),
            "full": json.dumps(config, indent=2, ensure_ascii=False, default=str)}


def _cost(run: dict, summary: dict) -> dict:
    by_name = {a["approach"]: a for a in run.get("approaches", [])}
    base, cand = by_name.get(summary["baseline"] or "", {}), by_name.get(summary["candidate"] or "", {})
    prov = run.get("provenance") if isinstance(run.get("provenance"), dict) else {}
    hardware = prov.get("hardware") if isinstance(prov.get("hardware"), dict) else {}
    device = hardware.get("gpu") or hardware.get("device") or prov.get("device")
    config = cand.get("config") if isinstance(cand.get("config"), dict) else {}
    return {"train_seconds": cand.get("train_seconds"), "device": device or config.get("device"),
            "base_tokens": base.get("prompt_tokens"), "cand_tokens": cand.get("prompt_tokens"),
            "base_p50": base.get("latency_p50_ms"), "cand_p50": cand.get("latency_p50_ms"),
            "base_p95": base.get("latency_p95_ms"), "cand_p95": cand.get("latency_p95_ms")}


LOG_SCALE_RATIO = 10     # loss spanning 10x or more (a first eval at ~5, training ending near 0.2) gets a log axis


def _curves(rows: list[dict]) -> list[dict]:
    by_approach: dict[str, dict[str, list]] = {}
    epochs: dict[str, list[tuple[float, float]]] = {}
    for c in rows:
        by_approach.setdefault(c["approach"], {}).setdefault(c["split"], []).append((c["step"], c["loss"]))
        if _finite(c.get("epoch")) and _finite(c.get("step")) and c["epoch"] > 0:
            epochs.setdefault(c["approach"], []).append((c["step"], c["epoch"]))
    charts = []
    for approach, splits in by_approach.items():
        series = [{"label": f"{split} loss", "points": sorted(pts, key=lambda p: (p[0] is None, p[0] or 0)),
                   "color": _SERIES_COLORS.get(split, _PALETTE[i % len(_PALETTE)]), "markers": split != "train"}
                  for i, (split, pts) in enumerate(sorted(splits.items(), key=lambda kv: kv[0] != "train"))]
        log_y = _wants_log_axis([y for s in series for _, y in s["points"] if _finite(y)])
        svg = line_chart(series, x_label="training step", y_label="loss (log scale)" if log_y else "loss",
                         title=f"{approach}: training and validation loss", log_y=log_y,
                         x_marks=_epoch_marks(epochs.get(approach, [])), width=720, height=300)
        charts.append({"approach": approach, "svg": svg})
    return charts


def _wants_log_axis(losses: list[float]) -> bool:
    return bool(losses) and min(losses) > 0 and max(losses) / min(losses) >= LOG_SCALE_RATIO


def _epoch_marks(points: list[tuple[float, float]]) -> list[tuple[float, str]]:
    """The step where each whole epoch ends, from (step, epoch) pairs: steps per epoch = step / epoch."""
    if not points:
        return []
    step, epoch = max(points, key=lambda p: p[0])
    per_epoch = step / epoch
    last = max(p[0] for p in points)
    count = int(math.floor(epoch + 1e-6))
    if per_epoch <= 0 or count > 50:
        return []
    return [(round(k * per_epoch), f"epoch {k}") for k in range(1, count + 1) if round(k * per_epoch) <= last]


# --- hyperparameter sweep --------------------------------------------------------------------

TRIAL_STATES = ("COMPLETE", "PRUNED", "FAIL")
_STATE_LABELS = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}
# searched across decades (1e-5 .. 1e-3): on a linear axis every trial but the largest would
# bunch against the left edge
LOG_X_PARAMS = {"learning_rate"}


def _sweep(found: dict, run_key: str | None) -> dict:
    """The sweep section: which configuration won, what the sweep cost, and its trials drawn."""
    trials = [_trial(t) for t in found["trials"]]
    # the same pick as the one that made the candidate (harness.candidate.sweep): higher is better for the
    # sweep's objective, ties go to the earlier trial
    best = best_of(trials)
    params = _searched_params(trials)
    for t in trials:
        t["best"] = t is best
        t["this_run"] = found["from_run"] and t["number"] == found["run_trial"]
        t["param_texts"] = [_param_text(t["params"][p]) if p in t["params"] else "—" for p in params]
    metric = next((t["key_metric"] for t in trials if t["key_metric"]), None) or run_key or "key metric"
    return {
        "study": found["study"], "from_run": found["from_run"], "named": found["named"],
        "run_trial": found["run_trial"], "metric": metric, "count": len(trials),
        "states": {s: sum(1 for t in trials if t["state"] == s) for s in TRIAL_STATES},
        "steps": {s: sum(t["steps"] or 0 for t in trials if t["state"] == s) for s in TRIAL_STATES},
        "steps_total": sum(t["steps"] or 0 for t in trials),
        "seconds": sum(t["seconds"] or 0 for t in trials),
        "best": best, "best_params": ", ".join(f"{k}={_param_text(v)}" for k, v in best["params"].items())
        if best else None,
        "params": params, "rows": trials,
        # a setting every trial shared (a fixed value such as evals_per_epoch) has nothing to plot
        "scatters": [{"param": p, "svg": _sweep_scatter(p, trials, metric)} for p in params
                     if len({_param_text(t["params"].get(p)) for t in trials}) > 1],
        "curves_svg": _sweep_curves(trials),
    }


def _trial(row: dict) -> dict:
    """One stored trial with every field checked: JSON that isn't the expected shape counts as empty."""
    params = row.get("params") if isinstance(row.get("params"), dict) else {}
    curves = row.get("curves") if isinstance(row.get("curves"), list) else []
    state = str(row.get("state") or "?").upper()
    return {"number": row.get("number"), "state": state, "state_label": _STATE_LABELS.get(state, state.lower()),
            "params": {str(k): v for k, v in params.items()}, "key_metric": row.get("key_metric"),
            "value": _num(row.get("value")), "steps": _num(row.get("steps")), "seconds": _num(row.get("seconds")),
            "worker": row.get("worker"), "error": row.get("error"),
            "curves": [c for c in curves if isinstance(c, dict)]}


def _searched_params(trials: list[dict]) -> list[str]:
    """Every setting any trial set, in the order they first appear."""
    names: list[str] = []
    for t in trials:
        names += [k for k in t["params"] if k not in names]
    return names


def _param_text(value: Any) -> str:
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _trial_kind(trial: dict) -> str:
    if trial["best"]:
        return "best"
    return {"PRUNED": "pruned", "FAIL": "failed"}.get(trial["state"], "complete")


def _sweep_scatter(param: str, trials: list[dict], metric: str) -> Markup | None:
    """The validation score of each trial against one searched setting; failed trials have neither."""
    tried = [t for t in trials if param in t["params"] and t["state"] != "FAIL"]
    values = [t["params"][param] for t in tried]
    numeric = all(_finite(v) for v in values)
    categories = [] if numeric else sorted({_param_text(v) for v in values})
    log_x = param in LOG_X_PARAMS and numeric and all(v > 0 for v in values)
    points = []
    for t, v in zip(tried, values):
        kind = _trial_kind(t)
        outcome = (f"pruned after {fmt_tokens(t['steps'])} steps" if kind == "pruned"
                   else f"{metric} {fmt_num(t['value'])}")
        points.append({"x": v if numeric else categories.index(_param_text(v)), "y": t["value"], "kind": kind,
                       "label": f"trial #{t['number']}: {param}={_param_text(v)}, {outcome}"})
    return scatter_chart(points, x_label=_short(param, 40) + (" (log scale)" if log_x else ""),
                         y_label=f"{_short(metric, 24)} on val", title=f"{metric} on val against {param}",
                         log_x=log_x, categories=categories)


def _sweep_curves(trials: list[dict]) -> Markup | None:
    """Every trial's validation loss on one chart; pruned and failed ones dashed, where they stopped."""
    series, kinds = [], set()
    for t in sorted(trials, key=lambda t: t["best"]):  # the best drawn last, on top
        points = sorted(((c["step"], c.get("loss")) for c in t["curves"]
                         if c.get("split") == "val" and _finite(c.get("step"))), key=lambda p: p[0])
        if not points:
            continue
        kind = _trial_kind(t)
        kinds.add(kind)
        series.append({"label": f"trial #{t['number']} ({t['state_label']})", "points": points,
                       "color": _TRIAL_COLORS[kind], "markers": True, "dashed": kind in ("pruned", "failed"),
                       "legend": False})
    if not series:
        return None
    best = next((t for t in trials if t["best"]), None)
    # one legend entry per kind of line, not per trial: a sweep's dozens of trials would not fit
    legend = [{"label": f"best (#{best['number']})" if kind == "best" else kind, "points": [],
               "color": _TRIAL_COLORS[kind], "dashed": kind in ("pruned", "failed")}
              for kind in ("best", "complete", "pruned", "failed") if kind in kinds]
    losses = [y for s in series for _, y in s["points"] if _finite(y)]
    log_y = _wants_log_axis(losses)
    return line_chart(legend + series, x_label="training step",
                      y_label="validation loss (log scale)" if log_y else "validation loss",
                      title="validation loss of every trial", log_y=log_y, width=720, height=300)


def _binary(scores: Iterable[float | None]) -> bool:
    return all(s in (0, 1, 0.0, 1.0) for s in scores if s is not None)


def _flips(predictions: list[dict], baseline: str | None, candidate: str | None) -> dict:
    """Test rows where the best baseline and the candidate disagree on being right."""
    empty = {"rows": [], "fixed": 0, "broken": 0, "binary": True, "baseline": baseline, "candidate": candidate,
             "truncated": False, "compared": 0}
    if not baseline or not candidate:
        return empty
    base = {p["idx"]: p for p in predictions if p["approach"] == baseline}
    cand = {p["idx"]: p for p in predictions if p["approach"] == candidate}
    shared = sorted(set(base) & set(cand))
    binary = _binary([base[i]["score"] for i in shared] + [cand[i]["score"] for i in shared])
    fixed, broken = [], []
    for i in shared:
        b, c = _num(base[i]["score"]), _num(cand[i]["score"])
        if b is None or c is None or abs(c - b) < 1e-9:
            continue
        if binary and (b >= 0.5) == (c >= 0.5):
            continue
        row = {"idx": i, "key": cand[i].get("example_key") or base[i].get("example_key") or str(i),
               "input": cand[i].get("input") if cand[i].get("input") is not None else base[i].get("input"),
               "reference": cand[i].get("reference") if cand[i].get("reference") is not None
               else base[i].get("reference"),
               "baseline_output": base[i].get("prediction"), "candidate_output": cand[i].get("prediction"),
               "baseline_score": b, "candidate_score": c, "delta": c - b,
               "kind": "fixed" if c > b else "broken"}
        (fixed if c > b else broken).append(row)
    if not binary:  # graded scores: the biggest differences first
        fixed.sort(key=lambda r: -r["delta"])
        broken.sort(key=lambda r: r["delta"])
    truncated = len(fixed) > MAX_FLIPS or len(broken) > MAX_FLIPS
    return {"rows": fixed[:MAX_FLIPS] + broken[:MAX_FLIPS], "fixed": len(fixed), "broken": len(broken),
            "binary": binary, "baseline": baseline, "candidate": candidate, "truncated": truncated,
            "compared": len(shared)}


def _checks(rows: list[dict]) -> list[dict]:
    order = {"error": 0, "warning": 1, "info": 2}
    out = []
    for c in sorted(rows, key=lambda c: (order.get(c.get("level"), 3), c.get("name") or "")):
        lines = c.get("lines") if isinstance(c.get("lines"), list) else []
        shown = ", ".join(str(x) for x in lines[:MAX_CHECK_LINES])
        if len(lines) > MAX_CHECK_LINES:
            shown += f" … (+{len(lines) - MAX_CHECK_LINES:,} more)"
        out.append({"name": c.get("name"), "level": c.get("level"), "message": c.get("message"), "lines": shown})
    return out


def _provenance(run: dict) -> dict:
    prov = run.get("provenance") if isinstance(run.get("provenance"), dict) else {}
    versions = prov.get("versions") if isinstance(prov.get("versions"), dict) else {}
    hardware = prov.get("hardware") if isinstance(prov.get("hardware"), dict) else {}
    seeds = prov.get("seeds") if isinstance(prov.get("seeds"), dict) else {}
    if not seeds and prov.get("seed") is not None:
        seeds = {"seed": prov.get("seed")}
    if not hardware and prov.get("device"):
        hardware = {"device": prov.get("device")}
    adapters = [{"approach": a["approach"], "path": a.get("adapter_path"), "sha256": a.get("adapter_sha256")}
                for a in run.get("approaches", []) if a.get("adapter_path") or a.get("adapter_sha256")]
    known = {"git_commit", "versions", "hardware", "seeds", "seed", "device"}
    extra = {k: v for k, v in prov.items() if k not in known}
    config = run.get("config")
    return {
        "items": [("run id", run["run_id"], False), ("spec file", run.get("spec_file"), False),
                  ("started", fmt_when(run.get("started_at")), False),
                  ("finished", fmt_when(run.get("finished_at")), False),
                  ("git commit", prov.get("git_commit"), True),
                  ("task", run.get("task"), False), ("key metric", run.get("key_metric"), False),
                  ("model", run.get("model"), False), ("model sha256", run.get("model_sha256"), True),
                  ("data", run.get("data_path"), False), ("data sha256", run.get("data_sha256"), True),
                  ("test split sha256", run.get("test_sha256"), True)],
        "versions": sorted((str(k), _plain(v)) for k, v in versions.items()),
        "hardware": sorted((str(k), _plain(v)) for k, v in hardware.items()),
        "seeds": sorted((str(k), _plain(v)) for k, v in seeds.items()),
        "extra": sorted((str(k), _plain(v)) for k, v in extra.items()),
        "adapters": adapters,
        "config": json.dumps(config, indent=2, sort_keys=True, default=str) if config is not None else None,
    }


def _plain(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


# --- history ---------------------------------------------------------------------------------

def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix or "(config)": json.dumps(value, sort_keys=True, default=str)}


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _changes(run: dict, earlier: list[dict]) -> list[str]:
    """What changed since the previous run: config keys, data, model, test split, code."""
    if not earlier:
        return ["first run"]
    prev = earlier[-1]
    changes = []
    a, b = _flatten(prev.get("config") or {}), _flatten(run.get("config") or {})
    keys = sorted(set(a) | set(b))
    diff = [k for k in keys if a.get(k) != b.get(k)]
    for k in diff[:8]:
        changes.append(f"config {k}: {_short(a.get(k, '(absent)'))} → {_short(b.get(k, '(absent)'))}")
    if len(diff) > 8:
        changes.append(f"… and {len(diff) - 8} more config keys")

    def last(field):  # the field as of the most recent earlier run that recorded it
        for r in reversed(earlier):
            if r.get(field):
                return r[field]
        return None

    def prov_commit(r):
        p = r.get("provenance")
        return p.get("git_commit") if isinstance(p, dict) else None

    for field, label in (("data_sha256", "data changed"), ("test_sha256", "test split changed"),
                         ("model", "model changed"), ("model_sha256", "model weights changed")):
        before, now = last(field), run.get(field)
        if before and now and before != now:
            if field == "model":
                label = f"model {before} → {now}"
            changes.append(label)
    commits = [c for c in (prov_commit(r) for r in earlier) if c]
    now_commit = prov_commit(run)
    if commits and now_commit and commits[-1] != now_commit:
        changes.append(f"code {commits[-1][:8]} → {now_commit[:8]}")
    return changes or ["nothing recorded changed"]


def _history(runs: list[dict], shown: dict | None) -> list[dict]:
    rows = []
    for i, run in enumerate(runs):
        s = _summary(run) if run["status"] == "complete" else None
        rows.append({"run_id": run["run_id"], "started_at": run["started_at"], "status": run["status"],
                     "summary": s, "verdict": verdict(run), "shown": run is shown,
                     "error": run.get("error"), "changes": _changes(run, runs[:i])})
    return list(reversed(rows))


def _index_row(page: dict, href: str | None) -> dict:
    s = page.get("summary")
    return {"name": page["name"], "href": href, "refused": page.get("refused"), "verdict": page["verdict"],
            "summary": s, "gates": page.get("gates", []), "sparkline": page["sparkline"], "runs": page["runs"],
            "complete_runs": page["complete_runs"],
            "latest_status": page["latest_status"], "latest_started": page["latest_started"],
            "interval_svg": interval_chart(s["uplift"], s["low"], s["high"], s["threshold"], s["relative"],
                                           s["rule_outcome"], compact=True) if s else None}


# --- formatting ------------------------------------------------------------------------------

def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt_num(x: Any, digits: int = 3) -> str:
    if not _finite(x):
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if float(x).is_integer() and abs(x) >= 10:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def fmt_tokens(x: Any) -> str:
    return f"{x:,.0f}" if _finite(x) else "—"


def fmt_ms(x: Any) -> str:
    if not _finite(x):
        return "—"
    return f"{x:,.0f} ms" if x < 1000 else f"{x / 1000:,.2f} s"


def fmt_duration(x: Any) -> str:
    if not _finite(x):
        return "—"
    if x < 60:
        return f"{x:.1f} s"
    if x < 3600:
        return f"{int(x // 60)}m {int(x % 60):02d}s"
    return f"{int(x // 3600)}h {int(x % 3600 // 60):02d}m"


def fmt_uplift(x: Any, relative: bool = True) -> str:
    if not _finite(x):
        return "—"
    return f"{x * 100:+.1f}%" if relative else f"{x * 100:+.1f} pts"


def fmt_threshold(x: Any, relative: bool = True) -> str:
    if not _finite(x):
        return "required"
    return f"{x * 100:g}%" if relative else f"{x * 100:g}-point"


def fmt_when(x: Any) -> str:
    if isinstance(x, datetime):
        return x.strftime("%Y-%m-%d %H:%M UTC")
    return "—" if x is None else str(x)


def fmt_hash(x: Any, n: int = 12) -> str:
    return "—" if not x else str(x)[:n]


def badge_class(label: Any) -> str:
    return _BADGE.get(str(label), "skip")


def _now_text() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


# --- SVG charts ------------------------------------------------------------------------------
# Plain functions returning Markup (or None for nothing to draw). Every text in them is escaped.

def _nice_step(span: float, count: int) -> float:
    raw = span / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not (_finite(lo) and _finite(hi)):
        return [0.0, 1.0]
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = _nice_step(hi - lo, count)
    start, end = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    n = int(round((end - start) / step))
    return [round(start + i * step, 12) for i in range(n + 1)]


def _tick_label(value: float, step: float, scale: float = 1.0, suffix: str = "") -> str:
    decimals = max(0, -math.floor(math.log10(step * scale) + 1e-9)) if step > 0 else 0
    if decimals == 0 and abs(step * scale - round(step * scale)) > 1e-9:
        decimals = 1
    text = f"{value * scale:.{min(decimals, 6)}f}"
    if text.strip("-0.") == "":
        text = text.lstrip("-")
    return text + suffix


def _f(x: float) -> str:
    return f"{x:.1f}"


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks covering [lo, hi] on a log axis (both > 0)."""
    ticks = []
    for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        ticks += [m * 10.0 ** e for m in (1, 2, 5)]
    first = max(t for t in ticks if t <= lo * (1 + 1e-9))
    last = min(t for t in ticks if t >= hi * (1 - 1e-9))
    if last <= first:  # lo == hi, on a tick: widen to the next tick up so the axis has a span
        last = min(t for t in ticks if t > first * (1 + 1e-9))
    return [float(f"{t:.6g}") for t in ticks if first <= t <= last]


def line_chart(series: list[dict], *, width: int = 560, height: int = 260, x_label: str = "",
               y_label: str = "", title: str = "", log_y: bool = False,
               x_marks: Sequence[tuple[float, str]] = ()) -> Markup | None:
    """A line chart: series are {label, points: [(x, y)], color, markers, dashed, legend}; NaN/None
    points break the line. A series with legend=False has no legend entry, and one with no points
    is only a legend entry.

    log_y puts y on a log axis (points at or below zero are then left out); x_marks are labelled
    vertical lines (epoch ends)."""
    def usable(x, y):
        return _finite(x) and _finite(y) and (y > 0 or not log_y)

    finite = [[(x, y) if usable(x, y) else None for x, y in s.get("points", [])] for s in series]
    xs = [p[0] for pts in finite for p in pts if p]
    ys = [p[1] for pts in finite for p in pts if p]
    if not xs:
        return None
    left, right, top, bottom = 62, 18, 40, 46
    pw, ph = width - left - right, height - top - bottom
    xt = nice_ticks(min(xs), max(xs), 6)
    yt = log_ticks(min(ys), max(ys)) if log_y else nice_ticks(min(ys), max(ys), 5)
    x0, x1 = xt[0], xt[-1]
    fy = math.log10 if log_y else (lambda v: v)
    y0, y1 = fy(yt[0]), fy(yt[-1])

    def sx(x):
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return top + ph - (fy(y) - y0) / (y1 - y0) * ph

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="{escape(title)}">', f"<title>{escape(title)}</title>"]
    y_ticks = [(sy(t), f"{t:g}" if log_y else _tick_label(t, yt[1] - yt[0])) for t in yt]
    x_ticks = [(sx(t), _tick_label(t, xt[1] - xt[0])) for t in xt]
    out += _axes((left, top, pw, ph), x_ticks, y_ticks, x_label=x_label, y_label=y_label, height=height)
    for x, text in x_marks:
        if _finite(x) and x0 < x <= x1:
            out.append(f'<line x1="{_f(sx(x))}" x2="{_f(sx(x))}" y1="{top}" y2="{top + ph}" class="mark"/>')
            out.append(f'<text x="{_f(sx(x) - 4)}" y="{top + 12}" text-anchor="end" class="mark-label">'
                       f"{escape(text)}</text>")
    legend_x = left
    for i, (s, pts) in enumerate(zip(series, finite)):
        color = _color(s.get("color"), i)
        # a dashed, faded line: a series that stopped early (a pruned or failed sweep trial)
        dash = ' stroke-dasharray="5 4" stroke-opacity="0.75"' if s.get("dashed") else ""
        path, pen_up = [], True
        for p in pts:
            if p is None:
                pen_up = True
                continue
            path.append(f"{'M' if pen_up else 'L'}{_f(sx(p[0]))} {_f(sy(p[1]))}")
            pen_up = False
        if path:
            out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="2" '
                       f'stroke-linejoin="round"{dash}/>')
        drawn = [p for p in pts if p]
        if s.get("markers") or len(drawn) == 1:
            for p in drawn[:200]:
                out.append(f'<circle cx="{_f(sx(p[0]))}" cy="{_f(sy(p[1]))}" r="3.5" fill="{color}">'
                           f"<title>{escape(s.get('label', ''))}: step {escape(fmt_num(p[0]))}, "
                           f"{escape(fmt_num(p[1], 4))}</title></circle>")
        if s.get("legend", True):
            label = str(s.get("label", ""))
            out.append(f'<line x1="{legend_x}" x2="{legend_x + 18}" y1="16" y2="16" stroke="{color}" '
                       f'stroke-width="3"{dash}/>')
            out.append(f'<text x="{legend_x + 23}" y="20" class="legend">{escape(label)}</text>')
            legend_x += 40 + 7 * len(label)
    out.append("</svg>")
    return Markup("".join(out))


def _axes(box: tuple[float, float, float, float], x_ticks: Sequence[tuple[float, str]],
          y_ticks: Sequence[tuple[float, str]], *, x_label: str, y_label: str, height: int) -> list[str]:
    """Grid lines, tick labels, the two axis lines and their labels around a plot box (left, top,
    width, height); ticks are (pixel position, text)."""
    left, top, pw, ph = box
    out = []
    for y, text in y_ticks:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{_f(y)}" y2="{_f(y)}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{_f(y + 4)}" text-anchor="end" class="tick">{escape(text)}</text>')
    for x, text in x_ticks:
        out.append(f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{top + ph}" y2="{top + ph + 4}" class="axis"/>')
        out.append(f'<text x="{_f(x)}" y="{top + ph + 17}" text-anchor="middle" class="tick">{escape(text)}</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>')
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" class="axis"/>')
    if x_label:
        out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle" class="label">'
                   f"{escape(x_label)}</text>")
    if y_label:
        out.append(f'<text x="16" y="{top + ph / 2:.1f}" text-anchor="middle" class="label" '
                   f'transform="rotate(-90 16 {top + ph / 2:.1f})">{escape(y_label)}</text>')
    return out


# Trial markers, by kind: the best trial in the candidate's blue, the rest in slate; pruned hollow.
_TRIAL_COLORS = {"best": "#2563eb", "complete": "#64748b", "pruned": "#94a3b8", "failed": "#dc2626"}
SCATTER_STRIP = 26   # px under a scatter's plot where pruned trials, which have no score, sit
SCATTER_PAD = 0.05   # of the score range, added above and below it
DODGE_PX = 9         # markers on the same spot are set side by side this far apart


def scatter_chart(points: list[dict], *, x_label: str = "", y_label: str = "", title: str = "",
                  log_x: bool = False, categories: Sequence[str] = (), width: int = 330,
                  height: int = 250) -> Markup | None:
    """Sweep trials as dots of their score (y) against one setting (x).

    points are {x, y, kind, label} with kind complete | best | pruned. Pruned trials have no score:
    they sit as hollow rings in a strip under the plot labelled "pruned". The best is a larger dot
    in a ring. With categories, x is an index into them and the axis names them; log_x puts x on
    a log axis (x > 0).
    """
    log_x = log_x and not categories
    shown = [p for p in points if _finite(p.get("x")) and (p["x"] > 0 or not log_x)]
    if not shown:
        return None
    pruned = [p for p in shown if p.get("kind") == "pruned"]
    scored = [p for p in shown if p.get("kind") != "pruned" and _finite(p.get("y"))]
    left, right, top, bottom = 62, 30, 30, 46
    strip = SCATTER_STRIP if pruned else 0
    pw, ph = width - left - right, height - top - bottom - strip
    xs = [p["x"] for p in shown]
    if categories:
        lo, hi = -0.5, len(categories) - 0.5
        xt = [(float(i), _short(str(c), 12)) for i, c in enumerate(categories)]
    elif log_x:
        ticks = log_ticks(min(xs), max(xs))
        lo, hi, xt = ticks[0], ticks[-1], [(t, _float_text(t)) for t in ticks]
    else:
        ticks = nice_ticks(min(xs), max(xs), 5)
        lo, hi, xt = ticks[0], ticks[-1], [(t, _tick_label(t, ticks[1] - ticks[0])) for t in ticks]
    if scored:  # a little room above and below, so no dot sits on the plot's edge or the pruned strip
        lo_y, hi_y = min(p["y"] for p in scored), max(p["y"] for p in scored)
        pad = (hi_y - lo_y) * SCATTER_PAD
        yt = nice_ticks(lo_y - pad, hi_y + pad, 4)
    else:
        yt = [0.0, 1.0]
    fx = math.log10 if log_x else (lambda v: v)

    def sx(x):
        return left + (fx(x) - fx(lo)) / (fx(hi) - fx(lo)) * pw

    def sy(y):
        return top + ph - (y - yt[0]) / (yt[-1] - yt[0]) * ph

    out = [f'<svg class="scatter" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="{escape(title)}">', f"<title>{escape(title)}</title>"]
    out += _axes((left, top, pw, ph + strip), [(sx(x), text) for x, text in xt],
                 [(sy(t), _tick_label(t, yt[1] - yt[0])) for t in yt], x_label=x_label, y_label=y_label,
                 height=height)
    strip_y = top + ph + strip / 2 + 2
    if pruned:
        out.append(f'<text x="{left - 6}" y="{_f(strip_y + 4)}" text-anchor="end" class="tick">pruned</text>')
    spots = [(p, sx(p["x"]), strip_y if p.get("kind") == "pruned" else sy(p["y"])) for p in scored + pruned]
    nudges = _dodge([(round(x), round(y)) for _, x, y in spots])
    # the best last, so no other marker covers it
    for (p, x, y), dx in sorted(zip(spots, nudges), key=lambda s: s[0][0].get("kind") == "best"):
        out.append(_dot(p.get("kind", "complete"), x + dx, y, cls="pt", title=str(p.get("label", ""))))
    legend_x = left
    drawn = {p.get("kind") for p in scored + pruned}
    for kind, text in (("complete", "complete"), ("best", "best trial"), ("pruned", "pruned")):
        if kind not in drawn:
            continue
        out.append(_dot(kind, legend_x + 6, 14, cls="key"))
        out.append(f'<text x="{legend_x + 18}" y="18" class="legend">{text}</text>')
        legend_x += 30 + 7 * len(text)
    out.append("</svg>")
    return Markup("".join(out))


def _dot(kind: str, x: float, y: float, *, cls: str, title: str = "") -> str:
    """One trial marker: a filled dot, a hollow ring (pruned), or a bigger ringed dot (the best)."""
    color = _TRIAL_COLORS.get(kind, _TRIAL_COLORS["complete"])
    tip = f"<title>{escape(title)}</title>" if title else ""
    if kind == "pruned":
        return (f'<circle class="{cls} pruned" cx="{_f(x)}" cy="{_f(y)}" r="4" fill="#fff" stroke="{color}" '
                f'stroke-width="1.5">{tip}</circle>')
    if kind == "best":
        return (f'<circle cx="{_f(x)}" cy="{_f(y)}" r="8.5" fill="none" stroke="{color}" stroke-width="1.5"/>'
                f'<circle class="{cls} best" cx="{_f(x)}" cy="{_f(y)}" r="5" fill="{color}">{tip}</circle>')
    return f'<circle class="{cls} complete" cx="{_f(x)}" cy="{_f(y)}" r="4" fill="{color}">{tip}</circle>'


def _dodge(spots: Sequence[Any]) -> list[float]:
    """Horizontal offsets (px) that set side by side the markers sharing a spot, centred on it."""
    totals: dict[Any, int] = {}
    for spot in spots:
        totals[spot] = totals.get(spot, 0) + 1
    seen: dict[Any, int] = {}
    offsets = []
    for spot in spots:
        i = seen.get(spot, 0)
        seen[spot] = i + 1
        offsets.append((i - (totals[spot] - 1) / 2) * DODGE_PX)
    return offsets


def _float_text(x: float) -> str:
    """A float as people write learning rates: 0.05, 2, 1e-4, 2.5e-5 (not 0.0001 or 1e-04)."""
    if x == 0 or 0.01 <= abs(x) < 1e5:
        return f"{x:.6g}"
    mantissa, exponent = f"{x:.5e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _color(value: Any, i: int) -> str:
    if isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{3,8}", value):
        return value
    return _PALETTE[i % len(_PALETTE)]


def interval_chart(uplift: float | None, low: float | None, high: float | None, threshold: float | None,
                   relative: bool = True, outcome: str | None = None, *, compact: bool = False,
                   axis_label: str = "") -> Markup | None:
    """The uplift's interval as a bar against the bar it must clear (dashed) and zero (solid).

    The full chart is wide enough to read across a room: labelled ticks, the estimate and both
    ends of the interval written out, and the region that clears the bar shaded. The compact one
    (for the index's table) keeps only the shapes; its numbers are in the cells beside it.
    """
    if not _finite(uplift) and not (_finite(low) and _finite(high)):
        return None
    values = [v for v in (uplift, low, high, threshold, 0.0) if _finite(v)]
    ticks = nice_ticks(min(values), max(values), 3 if compact else 6)
    d0, d1 = ticks[0], ticks[-1]
    if compact:
        width, height, left, right, zone_top, bar_y, axis_y = 180, 30, 6, 6, 3, 13, 24
    else:
        # rows, top to bottom: bar label (y=16), shaded zone from 26, estimate label, the bar (72),
        # the axis (100), tick labels (117), the axis label (142)
        width, height, left, right, zone_top, bar_y, axis_y = 960, 150, 80, 80, 26, 72, 100
    pw = width - left - right

    def sx(v):
        return left + (v - d0) / (d1 - d0) * pw

    suffix = "%" if relative else " pts"
    color = _OUTCOME_COLOR.get(outcome or "", "#374151")
    label = (f"uplift {fmt_uplift(uplift, relative)}, interval {fmt_uplift(low, relative)} .. "
             f"{fmt_uplift(high, relative)}, bar {fmt_uplift(threshold, relative)}")
    cls = "interval compact" if compact else "interval wide"
    out = [f'<svg class="{cls}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="{escape(label)}"><title>{escape(label)}</title>']
    if _finite(threshold):
        x = sx(threshold)
        out.append(f'<rect x="{_f(x)}" y="{zone_top}" width="{_f(max(left + pw - x, 0))}" '
                   f'height="{axis_y - zone_top}" class="zone"/>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{axis_y}" y2="{axis_y}" class="axis"/>')
    if not compact:
        for t in ticks:
            x = sx(t)
            out.append(f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{axis_y}" y2="{axis_y + 5}" class="axis"/>')
            out.append(f'<text x="{_f(x)}" y="{axis_y + 19}" text-anchor="middle" class="tick">'
                       f"{escape(_tick_label(t, ticks[1] - ticks[0], 100, suffix))}</text>")
        if axis_label:
            out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle" class="label">'
                       f"{escape(axis_label)}</text>")
    out.append(f'<line x1="{_f(sx(0))}" x2="{_f(sx(0))}" y1="{zone_top}" y2="{axis_y}" class="zero"/>')
    if _finite(threshold):
        x = sx(threshold)
        out.append(f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{zone_top - (0 if compact else 6)}" y2="{axis_y}" '
                   f'class="threshold"/>')
        if not compact:
            out.append(f'<text x="{_f(x)}" y="15" text-anchor="middle" class="label">'
                       f"bar {escape(fmt_uplift(threshold, relative))}</text>")
            if left + pw - x > 190:  # room for the zone's own label right of the bar's
                out.append(f'<text x="{left + pw - 6}" y="{zone_top + 15}" text-anchor="end" class="zone-label">'
                           f"clears the bar</text>")
    half = 4 if compact else 8
    if _finite(low) and _finite(high):
        x_lo, x_hi = sx(min(low, high)), sx(max(low, high))
        out.append(f'<rect x="{_f(x_lo)}" y="{bar_y - half}" width="{_f(max(x_hi - x_lo, 1.5))}" '
                   f'height="{2 * half}" rx="{half}" fill="{color}" fill-opacity="0.3" stroke="{color}"/>')
        if not compact:
            for v, anchor, dx in ((min(low, high), "end", -8), (max(low, high), "start", 8)):
                out.append(f'<text x="{_f(sx(v) + dx)}" y="{bar_y + 5}" text-anchor="{anchor}" class="end">'
                           f"{escape(fmt_uplift(v, relative))}</text>")
    if _finite(uplift):
        out.append(f'<circle cx="{_f(sx(uplift))}" cy="{bar_y}" r="{3.5 if compact else 6.5}" fill="{color}" '
                   f'stroke="#fff" stroke-width="1.5"/>')
        if not compact:
            out.append(f'<text x="{_f(sx(uplift))}" y="{bar_y - 15}" text-anchor="middle" class="estimate" '
                       f'fill="{color}">{escape(fmt_uplift(uplift, relative))}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def sparkline(values: Sequence[float | None], *, width: int = 110, height: int = 26) -> Markup | None:
    """A tiny line of a metric over runs (oldest to newest); missing values are skipped."""
    points = [(i, v) for i, v in enumerate(values) if _finite(v)]
    if not points:
        return None
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    n = max(len(values) - 1, 1)
    pad = 3

    def sx(i):
        return pad + i / n * (width - 2 * pad) if len(values) > 1 else width / 2

    def sy(v):
        return height / 2 if hi == lo else pad + (hi - v) / (hi - lo) * (height - 2 * pad)

    label = "candidate over runs: " + ", ".join(fmt_num(v) for _, v in points)
    coords = " ".join(f"{_f(sx(i))},{_f(sy(v))}" for i, v in points)
    last_i, last_v = points[-1]
    return Markup(f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
                  f'role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
                  f'<polyline points="{coords}" fill="none" stroke="#2563eb" stroke-width="1.5"/>'
                  f'<circle cx="{_f(sx(last_i))}" cy="{_f(sy(last_v))}" r="2.5" fill="#2563eb"/></svg>')


def bar_chart(bars: list[tuple[str, float | None, str]], *, label: str = "", width: int = 760,
              ticks: dict[str, float] | None = None, reference: tuple[float, str] | None = None) -> Markup | None:
    """Horizontal bars, one per approach: (name, value, role) with role candidate|best|baseline.
    ticks: a mark on some bars (e.g. the best cut of its scores); reference: a dashed line across
    every bar, with its label (e.g. the class prior)."""
    shown = [(n, v, r) for n, v, r in bars if _finite(v)]
    if not shown:
        return None
    ticks = {n: v for n, v in (ticks or {}).items() if _finite(v)}
    row, left, right, top = 24, 250, 60, 22  # left: room for a 34-character name
    height = top + row * len(shown) + 8 + (14 if reference else 0)
    hi = max(max(v for _, v, _ in shown), 0.0)
    hi = 1.0 if 0 <= hi <= 1 else hi
    lo = min(min(v for _, v, _ in shown), 0.0)
    pw = width - left - right
    colors = {"candidate": "#2563eb", "best": "#0f766e", "baseline": "#9ca3af"}
    out = [f'<svg class="bars" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="{escape(label)}"><title>{escape(label)}</title>',
           f'<text x="{left}" y="13" class="label">{escape(label)}</text>']
    for i, (name, value, role) in enumerate(shown):
        y = top + i * row
        x0 = left + (0 - lo) / (hi - lo) * pw if hi > lo else left
        x1 = left + (value - lo) / (hi - lo) * pw if hi > lo else left
        out.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" class="tick">{escape(_short(name, 34))}'
                   f"</text>")
        out.append(f'<rect x="{_f(min(x0, x1))}" y="{y + 4}" width="{_f(max(abs(x1 - x0), 1))}" height="14" rx="2" '
                   f'fill="{colors.get(role, "#9ca3af")}"/>')
        if name in ticks and hi > lo:
            xt = left + (ticks[name] - lo) / (hi - lo) * pw
            out.append(f'<line x1="{_f(xt)}" x2="{_f(xt)}" y1="{y + 1}" y2="{y + 21}" stroke="#111827" '
                       f'stroke-width="2"><title>best cut of its label scores: {escape(fmt_num(ticks[name]))}</title>'
                       f'</line>')
        # a white halo keeps the value readable where a tick or the reference line crosses it
        out.append(f'<text x="{_f(max(x0, x1) + 6)}" y="{y + 15}" class="tick" stroke="#fff" stroke-width="3" '
                   f'paint-order="stroke">{escape(fmt_num(value))}</text>')
    if reference and _finite(reference[0]) and hi > lo:
        xr = left + (reference[0] - lo) / (hi - lo) * pw
        bottom = top + row * len(shown)
        out.append(f'<line x1="{_f(xr)}" x2="{_f(xr)}" y1="{top}" y2="{bottom + 4}" stroke="#b91c1c" '
                   f'stroke-dasharray="4 3"/><text x="{_f(xr)}" y="{bottom + 16}" text-anchor="middle" '
                   f'class="tick">{escape(reference[1])} {escape(fmt_num(reference[0]))}</text>')
    out.append("</svg>")
    return Markup("".join(out))
