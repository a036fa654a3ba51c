"""harness: decide, with evidence, whether fine-tuning an LLM beats prompting it.

    from harness import Experiment, QLoRA, baselines

Importing this package is cheap: torch and transformers load only when an experiment runs.
"""
from harness.spec import baselines
from harness.spec.experiment import Experiment, QLoRA, Sweep

__all__ = ["Experiment", "QLoRA", "Sweep", "baselines"]
__version__ = "0.1.0"
DISTRIBUTION = "finetune-harness"  # the name on PyPI (`harness` there is someone else's); the import name is harness
