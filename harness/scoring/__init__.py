"""The scoring stage: batched label scoring and generation on a model (`batched`, the only module
here that imports torch), the output cache in front of it, the metrics, and how well label
scores separate the classes.
"""
