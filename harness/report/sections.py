"""The sections of an experiment page, and its row on the index, from one experiment's stored runs.

`experiment_context` is the whole template context of `<experiment>.html`: the verdict and
its headline (summary.py), then one section each for the gates, the approaches and whether a
prompt could do better, cost, loss curves, the sweep (sweep.py), flips, data-quality checks,
provenance and the history of runs (history.py).
"""
from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any, Iterable

from harness.judge.outcomes import FAIL, FIVE_PERCENT_RULE, SKIP
from harness.report.format import finite_or_none, fmt_num, fmt_when, is_finite, shorten
from harness.report.history import history
from harness.report.summary import headline, run_decision, run_summary
from harness.report.svg import bar_chart, interval_chart, line_chart, sparkline, wants_log_axis
from harness.report.sweep import sweep_section
from harness.scoring import separation
from harness.store.record import CurvePoint, StoredRun

MAX_FLIPS = 300          # rows per direction shown in the flips table
MAX_CHECK_LINES = 20     # line numbers listed per data-quality check
_SPLIT_COLORS = {"train": "#2563eb", "val": "#ea580c"}  # any other split: the line chart's palette


def experiment_context(name: str, data: dict) -> dict:
    """The template context of one experiment's page, from its entry of `read.load_experiments`:
    the whole history, and every section of the run it shows (its latest complete run)."""
    runs = data["runs"]
    shown = data["shown"]
    latest = runs[-1]
    ctx: dict[str, Any] = {"name": name, "runs": len(runs), "refused": None, "shown": shown is not None,
                           "latest_status": latest.run.status, "latest_started": latest.run.started_at,
                           "latest_failed": None, "history": history(runs, shown),
                           "complete_runs": sum(1 for r in runs if r.run.status == "complete"),
                           "sparkline": None, "sweep": None, "ceiling": None}
    scores = [run_summary(r)["candidate_score"] for r in runs if r.run.status == "complete"]
    if sum(1 for v in scores if is_finite(v)) >= 2:  # one point is not a trend
        ctx["sparkline"] = sparkline(scores)
    if latest is not shown and latest.run.status == "failed":
        ctx["latest_failed"] = {"run_id": latest.run.run_id, "started_at": latest.run.started_at,
                                "error": latest.run.error or "(no error recorded)", "checks": _checks(latest.checks)}
    if shown is None:
        ctx.update(verdict={"label": "No complete run", "cls": "skip"}, summary=None)
    else:
        ctx.update(_run_sections(shown, data.get("sweep")))
    return ctx


def _run_sections(stored: StoredRun, sweep: dict | None) -> dict:
    """Every section about the one run a page shows."""
    summary = run_summary(stored)
    metrics = stored.metrics
    ordered_gates = sorted(stored.gates, key=lambda g: (g.gate != FIVE_PERCENT_RULE, g.outcome != FAIL, g.gate))
    approaches = _approaches(stored, summary)
    ceiling = _prompt_ceiling(approaches["rows"], metrics, stored.predictions, summary)
    ticks, reference = (ceiling or {}).get("ticks"), (ceiling or {}).get("reference")
    return {
        "verdict": summary["verdict"], "summary": summary, "headline": headline(summary, run_decision(stored)),
        "run": stored.run, "gates": ordered_gates,
        "why": [g for g in ordered_gates if g.message and (g.outcome != SKIP or g.gate == FIVE_PERCENT_RULE)],
        "interval_svg": interval_chart(summary["uplift"], summary["low"], summary["high"], summary["threshold"],
                                       summary["relative"], summary["rule_outcome"],
                                       axis_label=_uplift_axis(summary)),
        "approaches": approaches, "ceiling": ceiling,
        "score_svg": bar_chart([(a["name"], a["key_test"], a["role"]) for a in approaches["rows"]],
                               label=f"{summary['key'] or 'key metric'} on test"
                               + (" (tick: best cut of its label scores)" if ticks else ""),
                               ticks=ticks, reference=reference),
        "cost": _cost(stored, summary),
        "curves": loss_curves(stored.curves),
        "flips": _flips(stored.predictions, summary["baseline"], summary["candidate"]),
        "checks": _checks(stored.checks),
        "provenance": _provenance(stored),
        "sweep": sweep_section(sweep, summary["key"]) if sweep else None,
    }


NO_SIGNAL_AUC = 0.6  # below this, a prompt's label scores barely rank the classes


def _prompt_ceiling(approach_rows: list[dict], metrics: dict, predictions: list[dict], summary: dict) -> dict | None:
    """Can a prompt do better? For label-scored accuracy: each approach's test score beside its
    label scores' separation (AUC) and the best cut of them (a ceiling for any calibration),
    against always answering the most common label; then what that says, in sentences.
    approach_rows: the approaches table's rows (name and role: baseline, best or candidate)."""
    if summary["key"] != "accuracy":
        return None
    test = {a["name"]: metrics[a["name"]]["test"] for a in approach_rows
            if is_finite(metrics.get(a["name"], {}).get("test", {}).get("label_auc"))}
    baselines = [a["name"] for a in approach_rows if a["role"] != "candidate" and a["name"] in test]
    if not baselines:
        return None
    rows = [{"name": a["name"], "role": a["role"], "test": finite_or_none(test[a["name"]].get("accuracy")),
             "auc": finite_or_none(test[a["name"]].get("label_auc")),
             "ceiling": finite_or_none(test[a["name"]].get("best_threshold_accuracy"))}
            for a in approach_rows if a["name"] in test]
    prior = finite_or_none(test[baselines[0]].get("majority_class_rate"))
    shown = summary["baseline"] or baselines[0]
    answers = Counter(p.get("reference") for p in predictions if p.get("approach") == shown)
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


def _approaches(stored: StoredRun, summary: dict) -> dict:
    metrics = stored.metrics
    rows_by_name = {a.name: a for a in stored.approaches}
    names = [a.name for a in stored.approaches if a.kind != "candidate"]
    names += [a.name for a in stored.approaches if a.kind == "candidate"]
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
        a = rows_by_name.get(approach)
        role = ("candidate" if (a and a.kind == "candidate") or approach == summary["candidate"]
                else "best" if approach == summary["baseline"] else "baseline")
        rows.append({"name": approach, "kind": a.kind if a else "?", "role": role,
                     "values": [[metrics.get(approach, {}).get(s, {}).get(m) for s in splits] for m in metric_names],
                     "key_test": stored.score(approach),
                     "prompt_tokens": a and a.prompt_tokens, "p50": a and a.latency_p50_ms,
                     "p95": a and a.latency_p95_ms, "train_seconds": a and a.train_seconds,
                     "config": config_view(a.config if a else None, approach)})
    return {"metrics": metric_names, "splits": splits, "rows": rows}


CONFIG_BRIEF_KEYS = 4    # settings named on the approaches table's one line; the rest fold away


def config_view(config: Any, name: str) -> dict | None:
    """An approach's config as one short line of its first few settings, and the whole of it
    (system prompt and few-shot examples included) as indented JSON for a collapsed <details>."""
    if not config:
        return None
    brief = []
    for k, v in config.items():
        if len(brief) == CONFIG_BRIEF_KEYS:
            break
        if v is None or isinstance(v, (dict, list)) or k in ("system_prompt", "shots", "seed") or \
                (k == "name" and v == name):
            continue
        brief.append(f"{k}={shorten(str(v), 32)}")
    return {"brief": ", ".join(brief), "count": len(config),
            "full": json.dumps(config, indent=2, ensure_ascii=False, default=str)}


def _cost(stored: StoredRun, summary: dict) -> dict:
    base, cand = stored.approach(summary["baseline"]), stored.approach(summary["candidate"])
    prov = stored.run.provenance
    hardware = prov.get("hardware") or {}
    device = hardware.get("gpu") or hardware.get("device") or prov.get("device")
    return {"train_seconds": cand and cand.train_seconds, "device": device or (cand.config.get("device") if cand else None),
            "base_tokens": base and base.prompt_tokens, "cand_tokens": cand and cand.prompt_tokens,
            "base_p50": base and base.latency_p50_ms, "cand_p50": cand and cand.latency_p50_ms,
            "base_p95": base and base.latency_p95_ms, "cand_p95": cand and cand.latency_p95_ms}


def loss_curves(rows: list[CurvePoint]) -> list[dict]:
    """One chart per approach of its training and validation loss by step (stored curve rows),
    on a log axis when the loss spans a decade or more, with each epoch's end marked."""
    by_approach: dict[str, dict[str, list]] = {}
    epochs: dict[str, list[tuple[float, float]]] = {}
    for c in rows:
        by_approach.setdefault(c.approach, {}).setdefault(c.split, []).append((c.step, c.loss))
        if is_finite(c.epoch) and is_finite(c.step) and c.epoch > 0:
            epochs.setdefault(c.approach, []).append((c.step, c.epoch))
    charts = []
    for approach, splits in by_approach.items():
        series = [{"label": f"{split} loss", "points": sorted(pts, key=lambda p: (p[0] is None, p[0] or 0)),
                   "color": _SPLIT_COLORS.get(split), "markers": split != "train"}
                  for split, pts in sorted(splits.items(), key=lambda kv: kv[0] != "train")]
        log_y = wants_log_axis([y for s in series for _, y in s["points"] if is_finite(y)])
        svg = line_chart(series, x_label="training step", y_label="loss (log scale)" if log_y else "loss",
                         title=f"{approach}: training and validation loss", log_y=log_y,
                         x_marks=epoch_marks(epochs.get(approach, [])), width=720, height=300)
        charts.append({"approach": approach, "svg": svg})
    return charts


def epoch_marks(points: list[tuple[float, float]]) -> list[tuple[float, str]]:
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
        b, c = finite_or_none(base[i]["score"]), finite_or_none(cand[i]["score"])
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
        lines = c.get("lines") or []
        shown = ", ".join(str(x) for x in lines[:MAX_CHECK_LINES])
        if len(lines) > MAX_CHECK_LINES:
            shown += f" … (+{len(lines) - MAX_CHECK_LINES:,} more)"
        out.append({"name": c.get("name"), "level": c.get("level"), "message": c.get("message"), "lines": shown})
    return out


def _provenance(stored: StoredRun) -> dict:
    run = stored.run
    prov = run.provenance
    versions = prov.get("versions") or {}
    hardware = prov.get("hardware") or {}
    seeds = prov.get("seeds") or {}
    if not seeds and prov.get("seed") is not None:
        seeds = {"seed": prov.get("seed")}
    if not hardware and prov.get("device"):
        hardware = {"device": prov.get("device")}
    adapters = [{"approach": a.name, "path": a.adapter_path, "sha256": a.adapter_sha256}
                for a in stored.approaches if a.adapter_path or a.adapter_sha256]
    known = {"git_commit", "versions", "hardware", "seeds", "seed", "device"}
    extra = {k: v for k, v in prov.items() if k not in known}
    config = run.config
    return {
        "items": [("run id", run.run_id, False), ("spec file", run.spec_file, False),
                  ("started", fmt_when(run.started_at), False), ("finished", fmt_when(run.finished_at), False),
                  ("git commit", prov.get("git_commit"), True),
                  ("task", run.task, False), ("key metric", run.key_metric, False),
                  ("model", run.model, False), ("model sha256", run.model_sha256, True),
                  ("data", run.data_path, False), ("data sha256", run.data_sha256, True),
                  ("test split sha256", run.test_sha256, True)],
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


def index_row(page: dict, href: str | None) -> dict:
    """An experiment's row on the index, from its page's context (href None: no page was written)."""
    s = page.get("summary")
    return {"name": page["name"], "href": href, "refused": page.get("refused"), "verdict": page["verdict"],
            "summary": s, "gates": page.get("gates", []), "sparkline": page["sparkline"], "runs": page["runs"],
            "complete_runs": page["complete_runs"],
            "latest_status": page["latest_status"], "latest_started": page["latest_started"],
            "interval_svg": interval_chart(s["uplift"], s["low"], s["high"], s["threshold"], s["relative"],
                                           s["rule_outcome"], compact=True) if s else None}
