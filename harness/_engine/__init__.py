"""The engine: runs an experiment through the stages and records it. Private: the public
entry points are `pytest experiments/` (harness.plugin) and the `harness` command.
"""
