"""The `harness` command.

    harness report [--store PATH] [--out DIR] [--gpu-hour-price P --calls N]
                                                 rebuild the HTML reports from the store
    harness runs [EXPERIMENT] [--store PATH]     list recorded runs and their verdicts
    harness summary [EXPERIMENT] [--run ID] [--format md|json]
                                                 each experiment's latest run (or one run) as markdown
                                                 for a job summary or pull request, or as results.json
    harness compare [EXPERIMENT] --base REF [--head REF] [--format md|json]
                                                 a run against another (REF: a run id, or a git branch
                                                 or commit); exit 1 when a gate got worse
    harness data check FILE [--task T] [--columns input=COL,output=COL] [--labels A,B] [--val F --test F]
                                                 check a data file; exit 1 when an error-level check fails
    harness estimate [MODEL ...] [--method qlora|lora|full|all]
                                                 memory needed to fine-tune, checked against this machine
    harness export EXPERIMENT OUT_DIR [--force]  merge the gated winner's adapter into its base model
    harness sweep SPEC [--experiment NAME] [--storage URL] [--trials N]
                                                 run (or join) the spec's hyperparameter sweep as a worker
    harness trials [EXPERIMENT] [--store PATH]   list sweep trials: parameters, state, val metric, cost

A user's mistake ends with one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys

from harness.errors import HarnessError
from harness.store import DEFAULT_PATH


def _report(args) -> int:
    from harness.report import write_reports

    pages = write_reports(_open(args.store), args.out, gpu_hour_price=args.gpu_hour_price, calls=args.calls)
    for page in pages:
        print(page)
    return 0


def _estimate(args) -> int:
    from harness.candidate import estimate

    methods = list(estimate.METHODS) if args.method == "all" else [args.method]
    text, fits = estimate.command(args.model, methods, batch_size=args.batch_size, seq_len=args.seq_len, r=args.r,
                                  optimizer=args.optimizer, compute_dtype=args.dtype,
                                  gradient_checkpointing=args.gradient_checkpointing, device=args.device,
                                  as_json=args.json)
    print(text)
    return 0 if fits else 1


def _export(args) -> int:
    from harness.export import export

    result = export(_open(args.store), args.experiment, args.out_dir, force=args.force, sample=args.sample,
                    base=args.base, dtype=args.dtype, log=lambda m: print(f"harness: {m}", file=sys.stderr))
    print(result.out_dir)
    return 0


def load_experiments(spec_path: str, root: str = "."):
    """The Experiments a spec file declares, imported the way pytest would (by path)."""
    import importlib.util
    from pathlib import Path

    from harness.spec.experiment import Experiment

    path = Path(spec_path)
    if not path.is_file():
        raise HarnessError(f"spec file {spec_path} not found")
    module_spec = importlib.util.spec_from_file_location(f"harness_spec_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    found = [v for v in vars(module).values() if isinstance(v, Experiment)]
    relative = str(path.resolve().relative_to(Path(root).resolve())) \
        if path.resolve().is_relative_to(Path(root).resolve()) else str(path)
    for experiment in found:
        object.__setattr__(experiment, "spec_file", relative)
    return found


def _sweep(args) -> int:
    from harness._engine import run_sweep

    experiments = [e for e in load_experiments(args.spec, args.root) if e.sweep is not None
                   and (args.experiment is None or e.name == args.experiment)]
    if not experiments:
        which = f"an experiment named {args.experiment!r} with" if args.experiment else "an Experiment with"
        raise HarnessError(f"{args.spec} declares no {which} sweep=Sweep(...)")
    from harness.store import Store

    store = Store(args.store)  # a sweep may be the first thing recorded
    for experiment in experiments:
        study = run_sweep(experiment, store, root=args.root, storage=args.storage, trials=args.trials,
                          log=lambda m: print(f"harness: {m}", file=sys.stderr))
        best = study.best_trial if any(t.state.name == "COMPLETE" for t in study.trials) else None
        print(f"{experiment.name}: study {study.study_name}: {len(study.trials)} trials; "
              + (f"best #{best.number} {best.value:.4f} {best.params}" if best else "no complete trial"))
    return 0


def _trials(args) -> int:
    from harness.candidate.sweep import describe

    store = _open(args.store)
    trials = store.trials(experiment=args.experiment)
    if args.json:
        from dataclasses import asdict

        from harness.report.format import json_plain

        print(json.dumps([json_plain(asdict(t)) for t in trials], indent=2, allow_nan=False))
        return 0
    if not trials:
        print("no sweep trials recorded" + (f" for {args.experiment!r}" if args.experiment else ""))
        return 0
    for t in trials:
        params = describe(t.params, sep=" ")
        value = f"{t.key_metric} {t.value:.4f}" if t.value is not None else "-"
        seconds = f"{t.seconds:.0f}s" if t.seconds is not None else "-"
        print(f"{t.study}  #{t.number:<3} {t.state:<8} {value:<18} {t.steps or 0:>5} steps {seconds:>7}  "
              f"{params}" + (f"  ({t.error})" if t.error else ""))
    return 0


def _runs(args) -> int:
    store = _open(args.store)
    runs = store.stored_runs(args.experiment)
    from harness.judge import decision

    if args.json:
        print(json.dumps([{"run_id": s.run.run_id, "experiment": s.run.experiment, "status": s.run.status,
                           "started_at": s.run.started_at.isoformat(), "error": s.run.error,
                           "commit": s.run.provenance.get("git_commit"),
                           "verdict": decision.decide(s.gates, status=s.run.status).verdict,
                           "gates": {g.gate: g.outcome for g in s.gates}} for s in runs], indent=2))
        return 0
    if not runs:
        print("no runs recorded" + (f" for {args.experiment!r}" if args.experiment else ""))
        return 0

    for stored in runs:
        run, gates = stored.run, stored.gates
        verdict = decision.decide(gates, status=run.status).verdict
        outcomes = " ".join(f"{g.gate}={g.outcome}" + ("(allowed)" if decision.allowed(g) else "") for g in gates)
        print(f"{run.run_id}  {run.experiment:<20} {run.status:<9} {verdict:<15} {outcomes or run.error or ''}")
    return 0


def _summary(args) -> int:
    from harness.report import results

    store = _open(args.store)
    if args.run:
        runs = store.stored_runs(run_id=args.run)
        if not runs:
            raise HarnessError(f"no run {args.run!r} in {args.store}; `harness runs` lists them")
    else:
        runs = results.latest_runs(store, [args.experiment] if args.experiment else None)
        if args.experiment and not runs:
            raise HarnessError(f"no runs of {args.experiment!r} in {args.store}; `harness runs` lists them")
    found = results.results(runs, gpu_hour_price=args.gpu_hour_price, calls=args.calls)
    print(json.dumps(found, indent=2, allow_nan=False) if args.format == "json" else results.markdown(found), end="")
    if args.format == "json":
        print()
    return 0


def _compare(args) -> int:
    from harness.report import compare, results

    store = _open(args.store)
    names = [args.experiment] if args.experiment else None
    if names is None:  # both refs run ids: their experiment; git refs need it named
        names = [compare.resolve(store, None, args.base, root=args.root).run.experiment]
    found = []
    for name in names:
        base = compare.resolve(store, name, args.base, root=args.root)
        if args.head:
            head = compare.resolve(store, name, args.head, root=args.root)
        else:
            latest = results.latest_runs(store, [name])
            if not latest:
                raise HarnessError(f"no runs of {name!r} in {args.store}; `harness runs` lists them")
            head = latest[0]
        if base.run.experiment != head.run.experiment:
            raise HarnessError(f"{args.base} is a run of {base.run.experiment!r}, {args.head} of "
                               f"{head.run.experiment!r}: compare runs of one experiment")
        found.append(compare.compare(store, base, head))
    print(json.dumps(found, indent=2, allow_nan=False) if args.format == "json" else compare.markdown(found))
    return 1 if any(c["worse"] for c in found) else 0


def _data_check(args) -> int:
    import time

    from harness import data

    started = time.perf_counter()
    columns = data.parse_columns(args.columns) if args.columns else None
    labels = [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels else None
    if not 0 < args.near_threshold <= 1:
        raise HarnessError(f"--near-threshold must be in (0, 1] (got {args.near_threshold}); 0.7 is the default")
    if args.show < 1:
        raise HarnessError(f"--show must be at least 1 (got {args.show})")
    if (args.val or args.test) and not args.test:
        raise HarnessError("--val needs --test too: FILE is train, --val and --test are the held-out files")
    from harness.data import tables

    if args.redact and (tables.is_table(args.file) or tables.is_split_table(args.file)):
        raise HarnessError(f"--redact writes a redacted copy of a JSONL, CSV or TSV file; {args.file} is a table "
                           f"(export it with Dataset.to_json first)")
    held_in_file = tables.is_split_table(args.file)  # a DatasetDict folder: its splits are train, val, test
    if held_in_file and args.test:
        raise HarnessError(f"{args.file} holds its own splits; drop --val and --test")
    split_files = bool(args.test) or held_in_file
    held_out_files = {"val": args.val, "test": args.test} if split_files else {}
    source = {"train": args.file, **{k: v for k, v in held_out_files.items() if v}} if args.test else args.file
    stage = data.prepare(source, split=_spec_default("split"), seed=args.seed, kind=args.task, allowed_labels=labels,
                         max_rows=args.max_rows, columns=columns, near_threshold=args.near_threshold)
    dataset = stage.datasets["train" if split_files else "data"]
    quality = stage.quality
    if split_files:  # an experiment checks the quality of a single file only; the command checks FILE too
        quality = data.quality_checks(dataset, stage.kind, labels=labels, near_threshold=args.near_threshold)
    checks = [data.Check("parse", "info", f"{len(dataset.samples):,} samples read ({dataset.format})",
                         seconds=dataset.seconds)] + dataset.checks + quality
    files: dict[int, str] = {}  # id(check) -> the file its lines are in, when not FILE
    for name in held_out_files:
        for c in stage.datasets[name].checks if name in stage.datasets else []:
            checks.append(_renamed(c, f"{name}: {c.message}"))
            files[id(checks[-1])] = stage.datasets[name].path
    checks += stage.leakage
    held_out = stage.splits.val + stage.splits.test if stage.splits is not None else []
    refusal = stage.refusal if stage.unseen_labels else None  # a split that failed is told in _split_how
    if args.json:
        print(json.dumps({"file": dataset.path, "format": dataset.format, "samples": len(dataset.samples),
                          "task": stage.kind, "sha256": dataset.sha256, "leakage": _split_how(args, stage),
                          "refusal": refusal, "passed": not refusal and not any(c.level == "error" for c in checks),
                          "checks": [{"name": c.name, "level": c.level, "message": c.message, "lines": c.lines,
                                      "file": files.get(id(c), dataset.path), "examples": c.examples,
                                      "seconds": c.seconds} for c in checks]}, indent=2))
    else:
        _print_report(args, dataset, stage.kind, checks, files, _split_how(args, stage), held_out, refusal,
                      time.perf_counter() - started)
    if args.redact:
        count = data.redact_file(args.file, args.redact)
        print(f"\nwrote {args.redact}: {count:,} value(s) redacted", file=sys.stderr if args.json else sys.stdout)
    return 1 if refusal or any(c.level == "error" for c in checks) else 0


def _split_how(args, stage) -> str:
    """Which splits the leakage checks compared, or why there were none."""
    if "train" in stage.datasets:
        return "train = FILE, " + ", ".join(f"{k} = {stage.datasets[k].path}" for k in ("val", "test")
                                            if k in stage.datasets)
    if stage.splits is not None:
        return (f"the harness's own split of FILE ({_split_text(_spec_default('split'))}, seed {args.seed}); "
                f"pass --val/--test for split files")
    return f"skipped: {stage.split_error or 'an error-level check failed, and an experiment stops before splitting'}"


def _spec_default(field: str):
    """An Experiment field's default: the command simulates what a spec that leaves it out gets."""
    from dataclasses import fields

    from harness.spec.experiment import Experiment

    return next(f.default for f in fields(Experiment) if f.name == field)


def _split_text(split: tuple) -> str:
    """(0.8, 0.1, 0.1) -> "80/10/10"; row counts stay counts."""
    if all(isinstance(x, int) for x in split):
        return "/".join(map(str, split)) + " rows"
    return "/".join(f"{round(x * 100, 1):g}" for x in split)


def _renamed(check, message: str):
    from dataclasses import replace

    return replace(check, message=message)


def _print_report(args, dataset, kind: str, checks: list, files: dict, leakage_how: str, held_out: list,
                  refusal: str | None, seconds: float) -> None:
    from functools import cache
    from pathlib import Path

    @cache
    def raw(path: str) -> list[str]:
        """The file's lines, for rows that did not load; a table's rows have no raw text to show."""
        if dataset.unit != "line" or not Path(path).is_file():
            return []
        return Path(path).read_bytes().decode("utf-8", errors="replace").split("\n")

    by_line = {s.line: s.input_text for s in dataset.samples}
    held = {s.line: s.input_text for s in held_out if s.source != Path(args.file).name}

    def text(check, line: int, twin: bool = False) -> str:
        """The row's input when it loaded, else the raw line, shortened to fit."""
        if id(check) in files:
            table, lines = {}, raw(files[id(check)])
        else:
            table = held if check.name in ("leakage", "near_leakage") and held and not twin else by_line
            lines = raw(args.file)
        shown = table.get(line) or (lines[line - 1] if 0 < line <= len(lines) else "")
        shown = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in " ".join(shown.split()))
        return shown if len(shown) <= 72 else shown[:71] + "…"

    errors = [c for c in checks if c.level == "error"]
    warnings = [c for c in checks if c.level == "warning"]
    inferred = "" if args.task or args.labels else " (inferred; set it with --task)"
    print(f"{dataset.path}: {dataset.format}, {len(dataset.samples):,} samples, task {kind}{inferred}, "
          f"sha256 {dataset.sha256[:12]}")
    print(f"leakage: {leakage_how}")
    if refusal:
        print(refusal)
    print()
    width = max(len(c.name) for c in checks)
    print(f"{'check':<{width}}  {'level':<7}  {'rows':>6}  {'seconds':>7}  finding")
    for c in checks:
        print(f"{c.name:<{width}}  {c.level:<7}  {len(c.lines) or '-':>6}  {c.seconds:>7.2f}  {c.message}")
    for c in errors + warnings:
        if not c.lines:
            continue
        examples = c.examples or [(line, "") for line in c.lines]
        shown = examples[:args.show]
        where = f" in {files[id(c)]}" if id(c) in files else ""
        print(f"\n{c.name} ({c.level}): {len(c.lines):,} row(s){where}, {len(shown)} shown")
        note_width = max(len(n) for _, n in shown)
        print(f"  {dataset.unit:>6}  {'what':<{note_width}}  text")
        for line, note in shown:
            print(f"  {line:>6}  {note:<{note_width}}  {text(c, line)}")
            if c.name in ("near_duplicates", "label_conflicts", "near_leakage") and line in c.twins:
                twin = c.twins[line]
                print(f"  {twin:>6}  {'(its twin)':<{note_width}}  {text(c, twin, twin=True)}")
        if len(c.lines) > len(shown):
            more = ", ".join(map(str, c.lines[:20])) + (", …" if len(c.lines) > 20 else "")
            print(f"  all {dataset.unit}s: {more}")
    verdict = "FAIL: an error-level check failed" if errors else \
        "FAIL: an experiment would stop on its labels" if refusal else "PASS: no error-level check failed"
    print(f"\n{verdict} ({len(errors)} error(s), {len(warnings)} warning(s)); {seconds:.1f}s in all")


def _open(path: str):
    from pathlib import Path

    from harness.store import Store

    if path != ":memory:" and not Path(path).exists():
        raise HarnessError(f"store {path} does not exist; run `pytest experiments/` first or pass --store PATH")
    return Store(path)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (via HarnessError) rather than usage text and exit."""

    def error(self, message: str):
        raise HarnessError(f"{self.prog}: {message}; see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    from harness.data import DATASET_KINDS, NEAR_THRESHOLD

    parser = _Parser(prog="harness", description="Decide, with evidence, whether fine-tuning "
                                     "an LLM beats prompting it. Experiments run with `pytest experiments/`.")
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="rebuild the HTML reports from the store")
    report.add_argument("--store", default=DEFAULT_PATH, help=f"DuckDB store (default {DEFAULT_PATH})")
    report.add_argument("--out", default="reports", help="output folder (default reports)")
    report.add_argument("--gpu-hour-price", type=float, help="price of one device-hour, for the cost view "
                        "(default: each spec's gpu_hour_price)")
    report.add_argument("--calls", type=int, help="call volume for the cost view (default: each spec's calls)")
    report.set_defaults(func=_report)
    runs = sub.add_parser("runs", help="list recorded runs and their verdicts")
    runs.add_argument("experiment", nargs="?", help="only this experiment")
    runs.add_argument("--store", default=DEFAULT_PATH, help=f"DuckDB store (default {DEFAULT_PATH})")
    runs.add_argument("--json", action="store_true", help="as JSON")
    runs.set_defaults(func=_runs)
    summary = sub.add_parser("summary", help="each experiment's latest run (or one run) as markdown for a CI job "
                             "summary or a pull-request comment, or as results.json")
    summary.add_argument("experiment", nargs="?", help="only this experiment")
    summary.add_argument("--run", help="this run id instead (see `harness runs`)")
    summary.add_argument("--format", choices=["md", "json"], default="md", help="markdown (default) or JSON "
                         "(results.json's schema: harness/report/results.schema.json)")
    summary.add_argument("--store", default=DEFAULT_PATH, help=f"DuckDB store (default {DEFAULT_PATH})")
    summary.add_argument("--gpu-hour-price", type=float, help="price of one device-hour, for the cost view "
                         "(default: each spec's gpu_hour_price)")
    summary.add_argument("--calls", type=int, help="call volume for the cost view (default: each spec's calls)")
    summary.set_defaults(func=_summary)
    comp = sub.add_parser("compare", help="a run against another, per gate and per approach (metric change with a "
                          "paired interval, rows fixed and broken); exit 1 when a gate got worse")
    comp.add_argument("experiment", nargs="?", help="the experiment (needed when a REF is a git ref)")
    comp.add_argument("--base", required=True, metavar="REF", help="a run id, or a git branch, tag or commit: the "
                      "latest complete run recorded at that commit")
    comp.add_argument("--head", metavar="REF", help="as --base (default: the experiment's latest run)")
    comp.add_argument("--format", choices=["md", "json"], default="md", help="markdown (default) or JSON")
    comp.add_argument("--store", default=DEFAULT_PATH, help=f"DuckDB store (default {DEFAULT_PATH})")
    comp.add_argument("--root", default=".", help="git checkout that git refs are resolved in (default .)")
    comp.set_defaults(func=_compare)
    data = sub.add_parser("data", help="check data files")
    data_sub = data.add_subparsers(dest="data_command", metavar="check", required=True)
    check = data_sub.add_parser("check", help="check a data file: format, schema, duplicates, leakage, labels, "
                                "size, PII (see docs/data-checks.md); exit 1 when an error-level check fails")
    check.add_argument("file", help="a .jsonl, .csv, .tsv or .parquet file, or a folder written by save_to_disk "
                       "(the train file when --test is given; a DatasetDict folder's splits are checked as splits)")
    check.add_argument("--task", choices=DATASET_KINDS, help="task type, for the size guide and label checks "
                       "(default: inferred from the answers)")
    check.add_argument("--columns", help="column mapping for rows in no chat format, e.g. "
                       "input=question,output=right_answer (input=a+b joins columns)")
    check.add_argument("--labels", help="the allowed labels, comma-separated; other labels become errors")
    check.add_argument("--val", help="validation file checked for leakage against FILE (needs --test)")
    check.add_argument("--test", help="test file checked for leakage against FILE")
    check.add_argument("--seed", type=int, default=_spec_default("seed"),
                       help=f"seed of the simulated split (default {_spec_default('seed')}, as in a spec)")
    check.add_argument("--near-threshold", type=float, default=NEAR_THRESHOLD,
                       help=f"similarity that counts as a near duplicate (default {NEAR_THRESHOLD})")
    check.add_argument("--show", type=int, default=5, help="lines shown per failing check (default 5)")
    check.add_argument("--max-rows", type=int, help="read only the first N samples")
    check.add_argument("--redact", metavar="OUT", help="also write a copy of FILE with personal data redacted")
    check.add_argument("--json", action="store_true", help="the checks as JSON (exit status as without it)")
    check.set_defaults(func=_data_check)
    est = sub.add_parser("estimate", help="memory to fine-tune a model, by component, checked against this "
                         "machine; exit 1 when an estimate does not fit")
    est.add_argument("model", nargs="*", default=["all"], help="'all' (the 1B/7B/13B/70B Llama classes), a reference "
                     "shape (smollm2-135m, llama-1b, llama-7b, llama-13b, llama-70b), a checkpoint folder or a "
                     "model= name (default all)")
    est.add_argument("--method", choices=["qlora", "lora", "full", "all"], default="qlora",
                     help="fine-tuning method (default qlora)")
    est.add_argument("--batch-size", type=int, default=8, help="per-device batch size (default 8)")
    est.add_argument("--seq-len", type=int, default=512, help="tokens per row, i.e. max_length (default 512)")
    est.add_argument("--r", type=int, default=16, help="LoRA rank (default 16)")
    est.add_argument("--optimizer", choices=["adamw", "adamw_8bit", "sgd"], default="adamw",
                     help="optimizer state to count (default adamw)")
    est.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], help="compute dtype (default bf16 on CUDA, "
                     "fp32 on CPU, as the harness trains)")
    est.add_argument("--gradient-checkpointing", action="store_true", help="keep only each layer's input")
    est.add_argument("--device", help="check against cuda, cuda:N or cpu (default cuda when present)")
    est.add_argument("--json", action="store_true", help="as JSON: bytes by component and the fit of each estimate")
    est.set_defaults(func=_estimate)
    exp = sub.add_parser("export", help="merge the gated winner's adapter into its base model and save it")
    exp.add_argument("experiment", help="experiment name; its latest complete run with a candidate is exported")
    exp.add_argument("out_dir", help="new or empty folder (or a previous export, which is replaced)")
    exp.add_argument("--store", default=DEFAULT_PATH, help=f"DuckDB store (default {DEFAULT_PATH})")
    exp.add_argument("--force", action="store_true", help="export even though a gate did not pass")
    exp.add_argument("--sample", type=int, default=16, help="test rows the merged model is checked on (default 16)")
    exp.add_argument("--base", choices=["dequantized", "original"], default="dequantized",
                     help="merge into the NF4 base as trained (default) or the checkpoint's original weights")
    exp.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                     help="dtype of the merged weights (default: the training compute dtype)")
    exp.set_defaults(func=_export)
    _add_sweep_commands(sub)
    return parser


def _add_sweep_commands(sub) -> None:
    sweep = sub.add_parser("sweep", help="run or join a spec's hyperparameter sweep (an Optuna study) as one worker")
    sweep.add_argument("spec", help="spec file, e.g. experiments/test_sarcasm.py")
    sweep.add_argument("--experiment", help="only this experiment of the spec")
    sweep.add_argument("--store", default=DEFAULT_PATH, help=f"DuckDB store (default {DEFAULT_PATH})")
    sweep.add_argument("--storage", help="Optuna storage URL shared by workers, e.g. postgresql://user:pw@host/db "
                                         "(default: a journal file beside the store)")
    sweep.add_argument("--trials", type=int, help="trial budget (complete + pruned; default: the spec's)")
    sweep.add_argument("--root", default=".", help="project root the spec's paths are relative to (default .)")
    sweep.set_defaults(func=_sweep)
    trials = sub.add_parser("trials", help="list sweep trials with their parameters, state, val metric and cost")
    trials.add_argument("experiment", nargs="?", help="only this experiment")
    trials.add_argument("--store", default=DEFAULT_PATH, help=f"DuckDB store (default {DEFAULT_PATH})")
    trials.add_argument("--json", action="store_true", help="as JSON")
    trials.set_defaults(func=_trials)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except HarnessError as e:
        print(f"harness: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
