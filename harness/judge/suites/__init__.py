"""General-capability suites shipped with the harness, as data files.

`mmlu_slice.jsonl` is the "mmlu" suite of `harness.judge.regression`: a fixed, stratified slice of
the MMLU test set made by `make_mmlu_slice.py` in this folder (see ATTRIBUTION.md).
"""
