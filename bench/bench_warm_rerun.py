"""An unchanged rerun of the shipped experiment vs its first (cold) run.

    python bench/bench_warm_rerun.py            # the shipped experiments/ (cold run ~8 min on 2 cores)
    python bench/bench_warm_rerun.py --quick    # a smaller copy of the spec (~1-2 min)

Copies the project (harness/, experiments/, baselines/, conftest.py, pyproject.toml) into a
temporary folder, so edits made elsewhere while it runs cannot change the code between the
two runs, then runs there, twice, with a store of its own:

    pytest experiments/ --harness-store TMP/store/harness.duckdb --harness-reports TMP/reports

The first run is cold: the new store holds no cached outputs or adapters, so every baseline
is scored and the candidate trained. The second run is the same command, unchanged: warm.
The converted model in ~/.cache/harness (or $HARNESS_CACHE) is warm for both runs; it is
shared by every project and built once per machine (run anything once first if it is not).

Prints RATIO warm/cold of the two wall times (each a whole pytest process, start-up
included), measured in this one invocation; the target is <= 5%.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("harness", "experiments", "baselines", "conftest.py", "pyproject.toml")
SPEC = "experiments/test_sarcasm.py"
# --quick: the shipped spec with fewer rows and one epoch (8 training steps instead of 120).
QUICK = {"split=(480, 120, 400)": "split=(64, 32, 64)", "epochs=2": "epochs=1"}


def copy_project(dest: Path, quick: bool) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".harness", ".pytest_cache")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    if quick:
        spec = dest / SPEC
        text = spec.read_text()
        for old, new in QUICK.items():
            if old not in text:
                sys.exit(f"--quick: {SPEC} no longer contains {old!r}; update QUICK in {Path(__file__).name}")
            text = text.replace(old, new)
        spec.write_text(text)


def run(work: Path, label: str) -> tuple[float, int, str]:
    command = [sys.executable, "-m", "pytest", "experiments/", "-v", "-p", "no:cacheprovider",
               "--harness-store", str(work / "store" / "harness.duckdb"), "--harness-reports", str(work / "reports")]
    env = dict(os.environ, PYTHONPATH=str(work), TRANSFORMERS_VERBOSITY="error")
    print(f"{label}: {' '.join(command[1:])}  (load average {os.getloadavg()[0]:.1f})", flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.1f}s, exit code {done.returncode} (load average {os.getloadavg()[0]:.1f})", flush=True)
    return seconds, done.returncode, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller copy of the spec: " +
                        ", ".join(f"{a} -> {b}" for a, b in QUICK.items()))
    parser.add_argument("--keep", action="store_true", help="keep the temporary project and print its path")
    parser.add_argument("--verbose", action="store_true", help="print both pytest outputs")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_warm_rerun-"))
    try:
        copy_project(work, args.quick)
        which = subprocess.run([sys.executable, "-c", "import harness; print(harness.__file__)"], cwd=work,
                               env=dict(os.environ, PYTHONPATH=str(work)), capture_output=True, text=True).stdout
        if not which.startswith(str(work)):
            sys.exit(f"the copy's harness is not the one imported ({which.strip()}); nothing was timed")
        print(f"bench_warm_rerun: {'quick spec' if args.quick else 'shipped spec'} in {work}, "
              f"{os.cpu_count()} CPUs", flush=True)
        cold, cold_rc, cold_out = run(work, "cold")
        warm, warm_rc, warm_out = run(work, "warm")
        if args.verbose:
            print(cold_out, warm_out, sep="\n")
        for name, out in (("cold", cold_out), ("warm", warm_out)):
            lines = [line for line in out.splitlines() if "[harness]" in line]
            cached = sum("outputs from the cache" in line for line in lines)
            reused = any("adapter reused from the cache" in line for line in lines)
            print(f"  {name}: {cached} scoring steps served from the output cache; candidate adapter "
                  f"{'reused from the cache' if reused else 'trained'}")
        summary = re.findall(r"^=+ (.* in [\d.]+s.*) =+$", warm_out, re.M)
        print(f"  pytest outcome: cold exit {cold_rc}, warm exit {warm_rc}"
              f"{' (same)' if cold_rc == warm_rc else ' (DIFFERENT: see --verbose)'}; warm: {summary[-1] if summary else '?'}")
        if cold_rc not in (0, 1) or cold_rc != warm_rc:
            print(cold_out[-3000:], warm_out[-3000:], sep="\n")
        print()
        print(f"RATIO warm/cold = {warm / cold:.3f} ({warm / cold:.1%}; target <= 5%): cold {cold:.1f}s, "
              f"warm {warm:.1f}s{', quick spec' if args.quick else ''}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
