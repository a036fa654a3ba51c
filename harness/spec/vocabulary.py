"""The words a spec may use for its choices, owned by the spec; the stages that implement
them import them from here (so declaring an experiment loads none of those stages)."""

SHOT_STRATEGIES = ("random", "balanced", "nearest")  # how few-shot examples are chosen (prompting.shots)
CALIBRATION_METHODS = ("contextual", "batch")        # how label scores are calibrated (prompting.calibration)
