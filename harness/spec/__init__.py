"""The spec stage: what an experiment declares (`Experiment`, `QLoRA`, `Sweep`, the baselines),
validated when it is built and free of side effects; nothing here imports torch or the data reader.
"""
