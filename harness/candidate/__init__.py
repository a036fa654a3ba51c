"""The candidate stage: QLoRA training, the Optuna sweep over its settings, and the memory
estimate checked before either starts.
"""
