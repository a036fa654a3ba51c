import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from tiny import build_model_dir

    return build_model_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def heavy_modules():
    """Import once, before pytester's per-test sys.modules snapshot: bitsandbytes registers
    torch ops at import time and fails if a pytester run imports it a second time."""
    import bitsandbytes  # noqa: F401
    import datasets  # noqa: F401
    import evaluate  # noqa: F401
    import harness.candidate.train  # noqa: F401
    import peft  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    # trl and transformers import submodules lazily: load the ones training uses now, or a
    # pytester run would import them inside its snapshot and later tests would meet a second
    # copy of SFTConfig that pickle (checkpoint saving) refuses.
    from peft import LoraConfig, PeftModel, prepare_model_for_kbit_training  # noqa: F401
    from transformers import EarlyStoppingCallback, Trainer, TrainerCallback  # noqa: F401
    from trl import SFTConfig, SFTTrainer  # noqa: F401

    import harness._engine  # noqa: F401
    import harness.report  # noqa: F401
