"""The plugin as an installed package: pytest finds it by its entry point, in a directory with no
conftest.py; its options, ini options and markers; and what it changes for sessions that run
no experiment (under pytest-xdist: only spec files are kept whole on one worker)."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_plugin import OUTCOMES_CONFTEST, SPEC
from tiny import write_classification_jsonl

REPO = Path(__file__).resolve().parents[1]

BASELINES_ONLY = """
from harness import Experiment, baselines

experiment = Experiment(name="outside", data="data/d.jsonl", model={model!r}, metric="accuracy",
                        split=(24, 8, 16), baselines=[baselines.zero_shot("baselines/system.md")])
"""


def test_the_wheel_declares_the_pytest_plugin(tmp_path):
    """What `pip install finetune-harness` gets: a pytest11 entry point named after the module (so a
    conftest.py that also lists "harness.plugin" finds it loaded) and the Framework classifier."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("finetune_harness-*.whl")  # the distribution's name, not PyPI's other `harness`
    with zipfile.ZipFile(wheel) as z:
        info = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
        meta = z.read(info.replace("entry_points.txt", "METADATA")).decode()
        entry_points = z.read(info).decode()
    assert "[pytest11]\nharness.plugin = harness.plugin" in entry_points
    assert "harness = harness.cli:main" in entry_points
    assert "Classifier: Framework :: Pytest" in meta
    assert "\nName: finetune-harness\n" in meta
    assert {n.split("/")[0] for n in z.namelist() if not n.startswith("finetune_harness-")} == {"harness"}


def test_a_directory_outside_the_repository_needs_only_experiments_and_baselines(heavy_modules, tmp_path,
                                                                                tiny_model_dir):
    """No conftest.py, no ini file: the installed plugin collects the spec, runs it, and writes the
    store and the report under the directory it ran in; the header says where and on what."""
    from importlib.metadata import entry_points

    assert any(e.value == "harness.plugin" for e in entry_points(group="pytest11")), \
        "the harness is not installed with its entry point: run `pip install -e .` (scripts/setup.sh does)"
    (tmp_path / "experiments").mkdir()
    (tmp_path / "baselines").mkdir()
    (tmp_path / "data").mkdir()
    write_classification_jsonl(tmp_path / "data" / "d.jsonl", n=48)
    (tmp_path / "baselines" / "system.md").write_text("answer with the label only: 1 or 0.")
    (tmp_path / "experiments" / "test_outside.py").write_text(BASELINES_ONLY.format(model=str(tiny_model_dir)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run([sys.executable, "-m", "pytest", "experiments/", "-p", "no:cacheprovider", "-rA"],
                          cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert f"harness: store {tmp_path / '.harness' / 'harness.duckdb'}, reports {tmp_path / 'reports'}, device " \
           in out
    assert "harness verdicts" in out and "outside  data_quality" in out
    assert (tmp_path / ".harness" / "harness.duckdb").is_file()
    assert any((tmp_path / "reports").glob("*.html"))


@pytest.fixture
def faked(pytester, tiny_model_dir):
    """A spec whose gates are set by hand (test_plugin.OUTCOMES_CONFTEST): the plugin's own
    behaviour, no engine run."""
    pytester.makeconftest(OUTCOMES_CONFTEST)
    pytester.makepyfile(test_toy=SPEC.format(model=str(tiny_model_dir), extra="").split("\n\ndef test_user")[0]
                        + "\n\ndef test_plain():\n    pass\n")
    return pytester


def test_gate_items_carry_the_harness_marker(faked):
    """`-m "not harness"` is a fast lane: the user's own tests, no experiment."""
    fast = faked.runpytest("-m", "not harness", "--strict-markers", "--harness-no-report")
    fast.assert_outcomes(passed=1, deselected=4)
    gates = faked.runpytest("-m", "harness", "--strict-markers", "-rx", "--harness-no-report")
    gates.assert_outcomes(passed=3, xfailed=1, deselected=1)


def test_every_option_has_the_harness_prefix_and_the_old_spellings_warn(faked):
    help_text = faked.runpytest("--help").stdout.str()
    assert "--harness-sweep, --sweep" in help_text and "--harness-sweep-storage=URL, --sweep-storage=URL" in help_text
    new = faked.runpytest("--harness-sweep", "--harness-no-report", "-k", "data_quality")
    new.assert_outcomes(passed=1, deselected=4)
    assert "deprecated" not in new.stdout.str()
    old = faked.runpytest("--sweep", "--sweep-storage=sqlite:///x.db", "--harness-no-report", "-k", "data_quality")
    old.assert_outcomes(passed=1, deselected=4)
    out = old.stdout.str()
    assert "--sweep is deprecated: spell it --harness-sweep" in out
    assert "--sweep-storage is deprecated: spell it --harness-sweep-storage" in out


def test_the_store_and_reports_paths_come_from_the_ini_file_unless_given(faked):
    faked.makeini("[pytest]\nharness_store = ci/store.duckdb\nharness_reports = ci/html\n")
    header = faked.runpytest("--collect-only", "-q").stdout.str() + faked.runpytest("--co").stdout.str()
    assert f"harness: store {faked.path / 'ci' / 'store.duckdb'}, reports {faked.path / 'ci' / 'html'}" in header
    given = faked.runpytest("--co", "--harness-store", "elsewhere.duckdb").stdout.str()
    assert "harness: store elsewhere.duckdb, reports" in given


WORKER_PROPERTY = """

def pytest_runtest_setup(item):  # every item, gate items too, says which worker ran it
    import os
    item.user_properties.append(("worker", os.environ.get("PYTEST_XDIST_WORKER")))
"""


def test_under_xdist_only_spec_files_are_kept_on_one_worker(faked):
    """The spec file's items all go to one worker (its experiment runs once there); a file of
    plain tests is spread over the workers as -n spreads tests, not forced onto one."""
    import xml.etree.ElementTree as ET

    pytest.importorskip("xdist")
    faked.makeconftest(OUTCOMES_CONFTEST + WORKER_PROPERTY)
    faked.makepyfile(test_plain_many="\n".join(f"def test_{i}():\n    import time\n    time.sleep(0.3)\n"
                                               for i in range(12)))
    result = faked.runpytest("-n", "2", "-p", "no:cacheprovider", "--harness-no-report", "--junitxml=j.xml")
    result.assert_outcomes(passed=3 + 1 + 12, xfailed=1)
    workers: dict[str, set] = {}
    for case in ET.parse(faked.path / "j.xml").iter("testcase"):
        prop = case.find("properties/property[@name='worker']")
        workers.setdefault(case.get("classname").split(".")[0], set()).add(prop.get("value"))
    assert workers["test_plain_many"] == {"gw0", "gw1"}, workers
    assert len(workers["test_toy"]) == 1, workers


def test_a_gate_item_is_known_by_its_node_id():
    """What the scheduler keeps together: `path::experiment::gate` items, not other three-part ids."""
    from harness.plugin import _is_gate_nodeid

    assert _is_gate_nodeid("experiments/test_toy.py::toy::five_percent_rule")
    assert not _is_gate_nodeid("experiments/test_toy.py::test_user_check")
    assert not _is_gate_nodeid("tests/test_a.py::TestX::test_y")
