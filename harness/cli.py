"""The `harness` command.

    harness report [--store PATH] [--out DIR]    rebuild the HTML reports from the store
    harness runs [EXPERIMENT] [--store PATH]     list recorded runs and their verdicts

A user's mistake ends with one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from harness.errors import HarnessError
from harness.store import DEFAULT_PATH


def _report(args) -> int:
    from harness.report import write_reports
    from harness.store import Store

    pages = write_reports(_open(args.store), args.out)
    for page in pages:
        print(page)
    return 0


def _runs(args) -> int:
    store = _open(args.store)
    runs = store.runs(args.experiment)
    if not runs:
        print("no runs recorded" + (f" for {args.experiment!r}" if args.experiment else ""))
        return 0
    for run in runs:
        gates = store.rows("gates", run["run_id"])
        verdicts = " ".join(f"{g['gate']}={g['outcome']}" for g in gates)
        print(f"{run['run_id']}  {run['experiment']:<20} {run['status']:<9} {verdicts or run.get('error') or ''}")
    return 0


def _open(path: str):
    from pathlib import Path

    from harness.store import Store

    if path != ":memory:" and not Path(path).exists():
        raise HarnessError(f"store {path} does not exist; run `pytest experiments/` first or pass --store PATH")
    return Store(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Decide, with evidence, whether fine-tuning "
                                     "an LLM beats prompting it. Experiments run with `pytest experiments/`.")
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="rebuild the HTML reports from the store")
    report.add_argument("--store", default=DEFAULT_PATH, help=f"DuckDB store (default {DEFAULT_PATH})")
    report.add_argument("--out", default="reports", help="output folder (default reports)")
    report.set_defaults(func=_report)
    runs = sub.add_parser("runs", help="list recorded runs and their verdicts")
    runs.add_argument("experiment", nargs="?", help="only this experiment")
    runs.add_argument("--store", default=DEFAULT_PATH, help=f"DuckDB store (default {DEFAULT_PATH})")
    runs.set_defaults(func=_runs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as e:
        print(f"harness: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
