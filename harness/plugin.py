"""The pytest plugin: Experiments declared in experiments/*.py become gate items.

    experiments/test_sarcasm.py::sarcasm::data_quality
    experiments/test_sarcasm.py::sarcasm::five_percent_rule
    experiments/test_sarcasm.py::sarcasm::overfit

The experiment runs once, when its first item runs; every gate item then reads its
verdict. A `result` fixture gives user tests in the same file the scores, predictions
and curves. At the end of the session a summary table is printed and the HTML reports
are rebuilt from the store.

Installed with the package (a `pytest11` entry point), so a repository needs no conftest.py.
It changes nothing for sessions that collect no experiment: torch threads are shared between
pytest-xdist workers when an experiment runs, and under xdist only spec files are kept whole
on one worker (`pytest_xdist_make_scheduler`); other tests are spread as the chosen --dist spreads them.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.judge import decision, power
from harness.judge.outcomes import DATA_QUALITY, FIVE_PERCENT_RULE, GATES, REGRESSION, GateResult
from harness.spec.experiment import Experiment

VERDICT_PROPERTY = "harness_verdict"


# old spelling -> the option under the harness prefix; the old one still works, with a warning
_RENAMED = {"--sweep": "--harness-sweep", "--sweep-storage": "--harness-sweep-storage"}


def pytest_addoption(parser):
    group = parser.getgroup("harness", "fine-tuning experiments (harness)")
    group.addoption("--harness-store", default=None, metavar="PATH",
                    help="DuckDB store for runs (default: the harness_store ini option, else "
                         "<rootdir>/.harness/harness.duckdb)")
    group.addoption("--harness-reports", default=None, metavar="DIR",
                    help="where HTML reports are written (default: the harness_reports ini option, else <rootdir>/reports)")
    parser.addini("harness_store", "DuckDB store for runs, relative to the ini file (--harness-store overrides)",
                  default="")
    parser.addini("harness_reports", "where HTML reports are written, relative to the ini file "
                  "(--harness-reports overrides)", default="")
    group.addoption("--harness-results", default=None, metavar="PATH",
                    help="where the session's results.json is written (default: results.json in the reports "
                         "folder); with GITHUB_STEP_SUMMARY set, its markdown is appended there too")
    group.addoption("--harness-no-report", action="store_true", default=False,
                    help="do not rebuild the HTML reports at the end of the session")
    group.addoption("--harness-strict", action="store_true", default=False,
                    help="fail on an INCONCLUSIVE gate even where the spec allows it (allow_inconclusive); "
                         "without it such a gate is an xfail")
    group.addoption("--harness-gpu-hour-price", type=float, default=None, metavar="USD",
                    help="price of one device-hour, for the cost view (overrides the spec's gpu_hour_price)")
    group.addoption("--harness-sweep", "--sweep", dest="harness_sweep", action="store_true", default=False,
                    help="run each experiment's Sweep (an Optuna study) first; its best trial becomes the candidate. "
                         "Without it a stored best trial of the same study is reused (--sweep: deprecated spelling)")
    group.addoption("--harness-sweep-storage", "--sweep-storage", dest="harness_sweep_storage", default=None,
                    metavar="URL",
                    help="Optuna storage shared by sweep workers, e.g. postgresql://user:pw@host/db "
                         "(default: a journal file beside the store; --sweep-storage: deprecated spelling)")
    group.addoption("--harness-calls", type=int, default=None, metavar="N",
                    help="call volume for the cost view (overrides the spec's calls)")
    group.addoption("--harness-holm", action="store_true", default=False,
                    help="judge the five-percent rules of every experiment in this session as one family "
                         "(Holm's step-down: the chance of any false PASS stays at 2.5%%); every experiment "
                         "runs before the first rule is reported")
    group.addoption("--harness-events", default=None, metavar="PATH",
                    help="append every engine event of the session to PATH as one JSON line each, timed from the "
                         "session's start, with a line where each run and the report rendering start and end "
                         "(bench/stages.py sums them into stages)")


class _EventLog:
    """--harness-events: one JSON line per engine event of the session, and plugin-level lines
    (kinds "plugin.*") where the session, each run and the report rendering start and end; t is
    seconds since the session started. Without a path it writes nothing."""

    def __init__(self, path: str | None, worker: str | None = None):
        self.started, self.worker = time.perf_counter(), worker
        self.file = open(path, "a", encoding="utf-8") if path else None  # closed at unconfigure
        self.write("plugin.session_started")

    def write(self, kind: str, experiment: str | None = None, text: str = "", fields: dict | None = None) -> None:
        if self.file is None:
            return
        line = {"t": round(time.perf_counter() - self.started, 6), "experiment": experiment, "kind": kind,
                "text": text, "fields": fields or {}}
        if self.worker:  # pytest-xdist: each worker appends its own timeline
            line["worker"] = self.worker
        self.file.write(json.dumps(line, default=str) + "\n")
        self.file.flush()

    def event(self, event) -> None:
        self.write(event.kind, event.experiment, event.text, event.fields)

    def close(self) -> None:
        if self.file is not None:
            self.write("plugin.session_finished")
            self.file.close()
            self.file = None


def _path(config, what: str, default: Path) -> Path:
    """--harness-WHAT (relative to the working directory, as typed), else the harness_WHAT ini
    option (relative to the ini file, as pytest reads ini paths), else the default."""
    if config.getoption(f"--harness-{what}"):
        return Path(config.getoption(f"--harness-{what}"))
    value = config.getini(f"harness_{what}")
    if value:
        return Path(config.inipath.parent if config.inipath else config.rootpath) / value
    return default


class _Session:
    """Per-pytest-session state: the store, and each experiment's result or error."""

    def __init__(self, config):
        self.config = config
        root = Path(config.rootpath)
        self.root = root
        self.store_path = _path(config, "store", root / ".harness" / "harness.duckdb")
        self.reports_dir = _path(config, "reports", root / "reports")
        self._store = None
        self.outcomes: dict[str, object] = {}  # experiment name -> Result or exception
        self.verdicts: list[dict] = []
        self.ran = False
        self.family: list[Experiment] | None = None  # --harness-holm: the experiments judged together
        self.events = _EventLog(config.getoption("--harness-events"),
                                getattr(config, "workerinput", {}).get("workerid"))

    @property
    def store(self):
        if self._store is None:
            from harness.store import Store

            self._store = Store(self.store_path)
        return self._store

    def log(self, message: str) -> None:
        reporter = self.config.pluginmanager.getplugin("terminalreporter")
        capture = self.config.pluginmanager.getplugin("capturemanager")
        if reporter is None or capture is None:
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"  [harness] {message}")

    def result(self, experiment: Experiment):
        if self.family and any(e.name == experiment.name for e in self.family):
            self._judge_family()
        self._run(experiment)
        outcome = self.outcomes[experiment.name]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _run(self, experiment: Experiment) -> None:
        if experiment.name in self.outcomes:
            return
        from harness._engine import run_experiment

        self.ran = True
        _share_cores_between_workers(self.config)
        self.log(f"running experiment {experiment.name!r} ({experiment.spec_file})")
        self.events.write("plugin.run_started", experiment.name, fields={"spec_file": experiment.spec_file})
        try:
            self.outcomes[experiment.name] = run_experiment(
                experiment, self.store, root=self.root, log=self.log, sweep=self.config.getoption("--harness-sweep"),
                sweep_storage=self.config.getoption("--harness-sweep-storage"), on_event=self.events.event)
        except Exception as e:  # kept, so every gate item of the experiment reports the same cause
            self.outcomes[experiment.name] = e
        finally:  # also after a Ctrl-C, so that the log says where the time went until then
            outcome = self.outcomes.get(experiment.name, KeyboardInterrupt())
            self.events.write("plugin.run_finished", experiment.name, fields={
                "outcome": type(outcome).__name__ if isinstance(outcome, BaseException) else "complete"})

    def _judge_family(self) -> None:
        """--harness-holm: run every experiment of the family, then re-judge their five-percent
        rules together (harness/judge/family.py), in the store and in each result alike."""
        from harness.judge import family

        members, self.family = self.family, None
        for experiment in members:
            self._run(experiment)
        results = {e.name: self.outcomes[e.name] for e in members if not isinstance(self.outcomes[e.name], Exception)}
        judged = family.holm({name: r.gates[FIVE_PERCENT_RULE] for name, r in results.items()})
        changed = [(results[name].run_id, rule) for name, rule in judged.items()
                   if rule is not results[name].gates[FIVE_PERCENT_RULE]]
        self.store.rejudge(changed)
        for name, rule in judged.items():
            results[name].gates[FIVE_PERCENT_RULE] = rule
        if changed:
            self.log(f"Holm across {len(family.members(judged))} experiments: "
                     + ", ".join(f"{name} {rule.outcome}" for name, rule in judged.items()))


def pytest_configure(config):
    if config.getoption("--harness-holm", False) and (hasattr(config, "workerinput")
                                                     or getattr(config.option, "numprocesses", None)):
        raise pytest.UsageError("--harness-holm judges every experiment of the session together, in one process; "
                                "drop -n (pytest-xdist) or drop --harness-holm")
    config.addinivalue_line("markers", "harness: a gate item of a harness experiment (deselect with -m 'not harness')")
    for old, new in _RENAMED.items():
        if any(arg == old or arg.startswith(old + "=") for arg in config.invocation_params.args):
            config.issue_config_time_warning(pytest.PytestDeprecationWarning(
                f"{old} is deprecated: spell it {new} (every harness option starts with --harness-)"), stacklevel=2)
    config._harness = _Session(config)
    _active.append(config._harness)


def pytest_report_header(config):
    state = config._harness
    return [f"harness: store {state.store_path}, reports {state.reports_dir}, {_device()}"]


def _device() -> str:
    """What experiments would run on, without importing torch where nothing needs it yet."""
    import shutil
    import sys

    from harness import machine

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return f"device cuda ({torch.cuda.get_device_name(0)})"
    if torch is None and shutil.which("nvidia-smi"):
        return "device cuda if torch sees the GPU nvidia-smi found"
    flags = ", ".join(machine.cpu_flags()) or "none of " + "/".join(machine.FLAGS)
    return f"device cpu ({machine.cpu_name()}, {machine.usable_cores()} cores; {flags})"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist: an experiment runs once per process, so every item of a spec file (its gate
    items and the user tests that read its `result`) must go to one worker. --dist load, the
    default of -n, would spread them and run the experiment on several workers at once. Spec
    files go whole to one worker; every other test is scheduled as the chosen --dist would
    (load and worksteal as loadgroup does, one test at a time). loadfile and each are kept:
    both already keep a file together."""
    dist = config.getvalue("dist")
    if dist not in ("load", "loadscope", "loadgroup", "worksteal"):
        return None
    from xdist.scheduler import LoadGroupScheduling, LoadScopeScheduling

    return _spec_files_together(LoadScopeScheduling if dist == "loadscope" else LoadGroupScheduling)(config, log)


def _spec_files_together(base):
    class SpecFilesTogether(base):
        def schedule(self):
            collection = next(iter(self.registered_collections.values()), [])
            self.spec_files = {nodeid.split("::", 1)[0] for nodeid in collection if _is_gate_nodeid(nodeid)}
            super().schedule()

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path in getattr(self, "spec_files", ()) else super()._split_scope(nodeid)

    return SpecFilesTogether


def _is_gate_nodeid(nodeid: str) -> bool:
    """`path::experiment::gate`, as ExperimentNode and GateItem name their items."""
    parts = nodeid.split("::")
    return len(parts) == 3 and parts[2] in GATES


def _share_cores_between_workers(config) -> None:
    """Under pytest-xdist, give each worker's torch its share of the cores: N workers with
    every core each run many times slower than one (OpenMP threads fight over the cores)."""
    if not hasattr(config, "workerinput"):
        return
    import os
    import sys

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def pytest_collection_finish(session):
    """--harness-holm: the family is every selected experiment with a candidate, in order."""
    if session.config.getoption("--harness-holm"):
        found = {item.experiment.name: item.experiment for item in session.items
                 if isinstance(item, GateItem) and item.experiment.candidate is not None}
        session.config._harness.family = list(found.values())


def pytest_pycollect_makeitem(collector, name, obj):
    if isinstance(obj, Experiment):
        spec_file = str(Path(collector.path).relative_to(collector.config.rootpath)) \
            if Path(collector.path).is_relative_to(collector.config.rootpath) else str(collector.path)
        object.__setattr__(obj, "spec_file", spec_file)
        return ExperimentNode.from_parent(collector, name=obj.name, experiment=obj)
    return None


class ExperimentNode(pytest.Collector):
    def __init__(self, *, experiment: Experiment, **kwargs):
        super().__init__(**kwargs)
        self.experiment = experiment

    def collect(self):
        gates = GATES if self.experiment.candidate else (DATA_QUALITY, FIVE_PERCENT_RULE)
        if not (self.experiment.regression or self.experiment.forgetting):
            gates = tuple(g for g in gates if g != REGRESSION)
        for gate in gates:
            item = GateItem.from_parent(self, name=gate, gate=gate, experiment=self.experiment)
            item.add_marker("harness")
            yield item


class GateFailed(Exception):
    def __init__(self, gate: GateResult):
        super().__init__(f"{gate.gate} {gate.outcome}: {gate.message}")
        self.gate = gate


def act_on(gate: GateResult, *, strict: bool = False) -> None:
    """Turn a gate's outcome into its pytest item's, as `judge.decision` says: return (passed),
    skip, xfail (an allowed INCONCLUSIVE: CI goes on, and the finding shows) or fail.
    strict (--harness-strict): an allowed INCONCLUSIVE fails too."""
    shown = decision.item_outcome(gate)
    if shown == decision.ITEM_SKIPPED:
        pytest.skip(f"{gate.gate}: {gate.message}")
    if shown == decision.ITEM_XFAILED and not strict:
        pytest.xfail(f"{decision.policy_note(gate)}; {gate.message}")
    if shown != decision.ITEM_PASSED:
        raise GateFailed(gate)


class GateItem(pytest.Item):
    def __init__(self, *, gate: str, experiment: Experiment, **kwargs):
        super().__init__(**kwargs)
        self.gate, self.experiment = gate, experiment

    def runtest(self):
        result = self.config._harness.result(self.experiment)
        gate = result.gates[self.gate]
        shown = decision.item_outcome(gate)
        self.user_properties.append((VERDICT_PROPERTY, json.dumps(
            {"experiment": self.experiment.name, "gate": self.gate, "outcome": gate.outcome,
             "item": shown, "message": gate.message})))
        act_on(gate, strict=self.config.getoption("--harness-strict"))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (GateFailed, HarnessError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"{self.experiment.name}::{self.gate}"


@pytest.fixture
def result(request):
    """The Result of the Experiment declared in the requesting test's module (run once per session)."""
    found = [v for v in vars(request.module).values() if isinstance(v, Experiment)]
    if len(found) != 1:
        raise HarnessError(f"{request.module.__file__}: the result fixture needs exactly one Experiment at module "
                           f"level (found {len(found)})")
    try:
        return request.config._harness.result(found[0])
    except HarnessError as e:
        pytest.fail(f"experiment {found[0].name!r} did not run: {e}", pytrace=False)


_SPEC_ERROR = re.compile(r"harness\.errors\.(\w+Error): (.+)")


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """A spec that refuses to build fails collection with its one-line message, not a traceback."""
    report = yield
    if report.failed and report.longrepr is not None:
        match = _SPEC_ERROR.search(str(report.longrepr))
        if match:
            report.longrepr = f"{collector.nodeid}: {match.group(2)}"
    return report


_active: list[_Session] = []  # the running session's state; logreport hooks get no config


def pytest_runtest_logreport(report):
    """Collect verdicts from reports, so the summary also works for pytest-xdist workers' items."""
    if report.when != "call" or not _active:
        return
    for key, value in report.user_properties:
        if key == VERDICT_PROPERTY:
            _active[-1].verdicts.append(json.loads(value))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state = config._harness
    if state.verdicts:
        terminalreporter.section("harness verdicts")
        width = max(len(v["experiment"]) for v in state.verdicts)
        for v in state.verdicts:
            shown = v["outcome"] + (" (xfail)" if v.get("item") == decision.ITEM_XFAILED else "")
            terminalreporter.write_line(f"{v['experiment']:<{width}}  {v['gate']:<18} {shown:<19} {v['message']}")
        _cost_summary(terminalreporter, config, state)
    if hasattr(config, "workerinput"):
        return
    if state.verdicts and state.store_path.exists():
        _write_results(terminalreporter, config, state)
    if config.getoption("--harness-no-report"):
        return
    if state.ran or (state.verdicts and state.store_path.exists()):
        from harness.report import write_reports

        state.events.write("plugin.report_started")
        try:
            pages = write_reports(state.store, state.reports_dir,
                                  gpu_hour_price=config.getoption("--harness-gpu-hour-price"),
                                  calls=config.getoption("--harness-calls"))
            terminalreporter.write_line(f"harness: store {state.store_path}; report {pages[0] if pages else '-'}")
        except HarnessError as e:
            terminalreporter.write_line(f"harness: report not written: {e}")
        except Exception as e:  # a report bug must not hide the verdicts above; the store is intact
            terminalreporter.write_line(f"harness: report not written ({type(e).__name__}: {e}); "
                                        f"the store is intact, rebuild with `harness report`")
        finally:
            state.events.write("plugin.report_finished")


def _write_results(terminalreporter, config, state) -> None:
    """results.json for the experiments of this session (each one's latest run), and the same as
    markdown in GitHub's job summary when GITHUB_STEP_SUMMARY names a file."""
    import os

    from harness.report import results

    runs = results.latest_runs(state.store, dict.fromkeys(v["experiment"] for v in state.verdicts))
    if not runs:
        return
    found = results.results(runs, gpu_hour_price=config.getoption("--harness-gpu-hour-price"),
                            calls=config.getoption("--harness-calls"))
    path = results.write(config.getoption("--harness-results") or state.reports_dir / "results.json", found)
    terminalreporter.write_line(f"harness: results {path}")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(results.markdown(found))


def pytest_unconfigure(config):
    state = getattr(config, "_harness", None)
    if state is not None:
        state.events.close()


def _cost_summary(terminalreporter, config, state) -> None:
    """Each experiment's verdict (naming any INCONCLUSIVE the spec let through), its
    recommendation and, given a price, the cost view."""
    from harness.judge import recommendation

    for name in dict.fromkeys(v["experiment"] for v in state.verdicts):
        complete = state.store.stored_runs(name, "complete")
        if not complete:
            continue
        stored = complete[-1]
        found = decision.decide(stored.gates)
        terminalreporter.write_line(f"{name}: verdict: {found.verdict} ({found.reason})")
        planned = found.rule.details.get("planned") if found.rule is not None else None
        if planned:
            terminalreporter.write_line(f"{name}:   before training: {power.PowerStatement(**planned).text()}")
        for note in decision.allowed_notes(found):
            terminalreporter.write_line(f"{name}:   {note}")
        view, recommended = recommendation.for_run(stored,
                                                   gpu_hour_price=config.getoption("--harness-gpu-hour-price"),
                                                   calls=config.getoption("--harness-calls"))
        for line in recommendation.format_summary(view, recommended):
            terminalreporter.write_line(f"{name}: {line}")
