"""The judging stage: the statistics, each gate's verdict, the regression suite's gate, the
pricing of each approach, and the one decision of whether a run passed (`decision`).
"""
