"""The prompting stage: chat messages for each approach, few-shot examples, retrieved passages,
sentence embeddings for both, and the calibration of label scores.
"""
