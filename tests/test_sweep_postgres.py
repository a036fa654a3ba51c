"""Two sweep workers on one Optuna study in a real PostgreSQL server (started here, on loopback).

This is how users scale a sweep beyond one GPU: `harness sweep SPEC --storage postgresql://...`
on each machine. Checked: the trial budget is met, every trial is recorded once in Optuna and
once in DuckDB, none lost, none duplicated, and both workers did trials.
"""
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

TRIALS = 4


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: CI runs as root, so the server runs as `postgres`."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
    return [runuser, "-u", "postgres", "--", *cmd]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (.ci/run installs Debian's postgresql package)")
    pytest.importorskip("psycopg2", reason="install finetune-harness[postgres] (psycopg2-binary, sqlalchemy)")
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server")
    data = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    subprocess.run(_as_postgres_user([initdb, "-D", str(data / "db"), "-A", "trust", "-U", "harness"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data / "db"), "-w", "-l", str(data / "log"), "-o",
                                      f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"]),
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://harness@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data / "db"), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


SPEC = """
from harness import Experiment, QLoRA, Sweep, baselines

shared = Experiment(
    name="shared", data="data.jsonl", model={model!r}, split=(24, 12, 12),
    baselines=[baselines.zero_shot("s.md")], regression=None, forgetting=None,
    underpowered="warn", candidate=QLoRA(batch_size=8, evals_per_epoch=3, warmup_ratio=0.0),
    sweep=Sweep(r=[2, 4, 8], learning_rate=(1e-3, 3e-2), epochs=(1, 2), trials={trials}, pruner=None),
)
"""


def test_two_workers_share_one_study_in_postgresql(tmp_path, tiny_model_dir, postgres_url):
    import optuna

    from harness.store import Store
    from tiny import write_classification_jsonl

    write_classification_jsonl(tmp_path / "data.jsonl", n=48)
    (tmp_path / "s.md").write_text("answer 1 or 0")
    (tmp_path / "spec.py").write_text(SPEC.format(model=str(tiny_model_dir), trials=TRIALS))
    # One thread each: two torch processes on a small machine otherwise fight over its cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "harness.cli", "sweep", "spec.py", "--storage", postgres_url,
               "--store", "h.duckdb"]
    workers = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    outputs = []
    deadline = time.monotonic() + 600
    for worker in workers:
        out, err = worker.communicate(timeout=max(1, deadline - time.monotonic()))
        outputs.append((worker.returncode, out, err))
    for code, out, err in outputs:
        assert code == 0, err[-3000:]

    [summary] = optuna.get_all_study_summaries(storage=postgres_url)
    trials = optuna.load_study(study_name=summary.study_name, storage=postgres_url).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") >= TRIALS and "RUNNING" not in states
    assert len(trials) <= TRIALS + 1  # at most one trial over budget: both workers may start the last one
    assert sorted(t.number for t in trials) == list(range(len(trials)))

    stored = Store(tmp_path / "h.duckdb").trials(study=summary.study_name)
    assert [t.number for t in stored] == [t.number for t in trials]  # each once, none lost
    assert [t.state for t in stored] == states
    for row, trial in zip(stored, trials):
        assert row.value == pytest.approx(trial.value) and row.params == trial.user_attrs["params"]
    pids = {row.worker.rsplit(":", 1)[1] for row in stored}
    assert pids == {str(w.pid) for w in workers}, "both workers should have run trials"
