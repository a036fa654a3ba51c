"""The engine: runs an experiment through the stages and records it. Private: the public
entry points are `pytest experiments/` (harness.plugin) and the `harness` command.
"""
from harness._engine.evaluate import Approach
from harness._engine.run import Result, run_experiment, run_sweep

__all__ = ["Approach", "Result", "run_experiment", "run_sweep"]
