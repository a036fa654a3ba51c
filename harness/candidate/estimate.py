"""Memory estimates for fine-tuning, before any weights are loaded.

    harness estimate MODEL --method qlora|lora|full

`estimate()` adds up, in bytes, what a training step keeps in memory for a Llama-style
decoder (Llama, Mistral, Qwen2, SmolLM2: the shape fields of their config.json):

    weights      the base model as the method holds it
    adapter      the LoRA A and B matrices (LoRA, QLoRA)
    gradients    one per trainable parameter
    optimizer    AdamW's two moments (and, for full mixed-precision training, the fp32 master copy)
    activations  what autograd keeps for the backward pass, per layer, at the batch and sequence length
    logits       the vocabulary-sized tensors of the loss (tiled by trl, so bounded)
    overhead     the framework: CUDA context and allocator slack, or on CPU the Python process itself

The formulas follow the harness's own training recipe (harness/candidate/train.py): peft keeps
adapters in fp32 (`autocast_adapter_dtype=True`), `prepare_model_for_kbit_training`
upcasts every parameter that is not 4-bit (embeddings, norms, an untied lm_head) to fp32,
transformers' Trainer keeps fp32 gradients for fp32 parameters, and torch's AdamW keeps
two moments in the parameter's dtype. They are estimates: docs/decision.md compares one
with the peak memory measured on a real run.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

GiB = 1024 ** 3
METHODS = ("qlora", "lora", "full")
OPTIMIZERS = ("adamw", "adamw_8bit", "sgd")
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# NF4 with double quantization (QLoRA paper, Dettmers et al. 2023, section 3): 4 bits per
# weight, plus one absmax per block of 64 weights. Double quantization stores that absmax as
# 8 bits, with one fp32 constant per 256 absmax blocks: 8/64 + 32/(64*256) = 0.127 bits per
# weight (instead of 32/64 = 0.5 bits with fp32 absmax). Bytes per weight: (4 + 0.127) / 8.
NF4_BYTES_PER_PARAM = (4 + 8 / 64 + 32 / (64 * 256)) / 8  # = 0.5159

# Framework memory that no formula above covers.
#   cuda: the CUDA context (~0.5 GiB on recent GPUs with lazy module loading), cuBLAS
#         workspaces and the caching allocator's fragmentation: 1 GiB is the usual allowance.
#   cpu:  the Python process: 0.5 GiB resident once torch, transformers, peft, trl and
#         bitsandbytes are imported; at the training peak 0.9-1.1 GiB of the resident set is not
#         tensors the formulas count (libraries, the checkpoint's memory-mapped pages, memory
#         the allocator keeps after freeing). Measured on SmolLM2, see docs/decision.md.
OVERHEAD_BYTES = {"cuda": 1.0 * GiB, "cpu": 0.9 * GiB}


@dataclass(frozen=True)
class Shape:
    """The dimensions of a Llama-style decoder, enough to count every parameter and activation."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied_embeddings: bool
    head_dim: int | None = None      # defaults to hidden // heads
    attention_bias: bool = False     # Qwen2 has q/k/v biases; Llama does not
    mlp_bias: bool = False

    @property
    def d(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def linears(self) -> dict[str, tuple[int, int, bool]]:
        """Each decoder layer's linear layers: name -> (in features, out features, has bias)."""
        h, i, q, kv = self.hidden, self.intermediate, self.heads * self.d, self.kv_heads * self.d
        ab, mb = self.attention_bias, self.mlp_bias
        return {"q_proj": (h, q, ab), "k_proj": (h, kv, ab), "v_proj": (h, kv, ab), "o_proj": (q, h, ab),
                "gate_proj": (h, i, mb), "up_proj": (h, i, mb), "down_proj": (i, h, mb)}

    def linear_params(self) -> int:
        """Parameters of all decoder linear layers (what 4-bit quantization applies to)."""
        per_layer = sum(n_in * n_out + (n_out if bias else 0) for n_in, n_out, bias in self.linears().values())
        return per_layer * self.layers

    def other_params(self) -> int:
        """Embeddings, the lm_head when untied, and the RMSNorm weights (2 per layer + the final one)."""
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return embeddings + self.hidden * (2 * self.layers + 1)

    def params(self) -> int:
        return self.linear_params() + self.other_params()

    def lora_params(self, r: int, target_modules: str | tuple[str, ...] | list[str] = "all-linear") -> int:
        """Trainable LoRA parameters: r * (in + out) for each targeted linear in every layer.

        "all-linear" is peft's meaning: every linear layer except the output head.
        """
        targets = _targets(target_modules)
        return r * sum(n_in + n_out for name, (n_in, n_out, _) in self.linears().items() if name in targets) \
            * self.layers


def _targets(target_modules) -> tuple[str, ...]:
    if target_modules == "all-linear":
        return LLAMA_LINEARS
    names = (target_modules,) if isinstance(target_modules, str) else tuple(target_modules)
    unknown = [n for n in names if n not in LLAMA_LINEARS]
    if unknown:
        raise HarnessError(f"target_modules {unknown} are not linear layers of a Llama-style model; "
                           f"use 'all-linear' or some of {', '.join(LLAMA_LINEARS)}")
    return names


# Reference shapes, from each model's published config.json.
SHAPES: dict[str, Shape] = {
    # SmolLM2-135M-Instruct, the embedded default: 134.5M parameters.
    "smollm2-135m": Shape("smollm2-135m", hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3,
                          vocab=49152, tied_embeddings=True, head_dim=64),
    # meta-llama/Llama-3.2-1B: 1.24B parameters.
    "llama-1b": Shape("llama-1b", hidden=2048, intermediate=8192, layers=16, heads=32, kv_heads=8,
                      vocab=128256, tied_embeddings=True, head_dim=64),
    # meta-llama/Llama-2-7b-hf: 6.74B parameters.
    "llama-7b": Shape("llama-7b", hidden=4096, intermediate=11008, layers=32, heads=32, kv_heads=32,
                      vocab=32000, tied_embeddings=False),
    # meta-llama/Llama-2-13b-hf: 13.0B parameters.
    "llama-13b": Shape("llama-13b", hidden=5120, intermediate=13824, layers=40, heads=40, kv_heads=40,
                       vocab=32000, tied_embeddings=False),
    # meta-llama/Llama-3.1-70B (Llama-3-70B has the same shape): 70.6B parameters.
    "llama-70b": Shape("llama-70b", hidden=8192, intermediate=28672, layers=80, heads=64, kv_heads=8,
                       vocab=128256, tied_embeddings=False),
}
CLASSES = ("llama-1b", "llama-7b", "llama-13b", "llama-70b")  # what `harness estimate all` prints


def shape_from_config(config: dict, name: str = "model") -> Shape:
    """A Shape from a config.json of a Llama-style model (llama, mistral, qwen2, ...)."""
    needed = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    missing = [k for k in needed if k not in config]
    if missing:
        kind = config.get("model_type", "unknown")
        raise HarnessError(f"{name}: config.json (model_type {kind!r}) lacks {', '.join(missing)}; the estimate "
                           f"covers Llama-style decoders (llama, mistral, qwen2); pass one of {', '.join(SHAPES)}")
    return Shape(name, hidden=config["hidden_size"], intermediate=config["intermediate_size"],
                 layers=config["num_hidden_layers"], heads=config["num_attention_heads"],
                 kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
                 vocab=config["vocab_size"], tied_embeddings=bool(config.get("tie_word_embeddings", False)),
                 head_dim=config.get("head_dim"),
                 attention_bias=bool(config.get("attention_bias", config.get("model_type") == "qwen2")),
                 mlp_bias=bool(config.get("mlp_bias", False)))


def shape_of(model: str | Shape | dict) -> Shape:
    """A named shape ("llama-7b"), a config dict, a local checkpoint folder, or any model name
    `harness.models.resolve` knows (the embedded "smollm2-135m-instruct" included)."""
    if isinstance(model, Shape):
        return model
    if isinstance(model, dict):
        return shape_from_config(model)
    if model in SHAPES:
        return SHAPES[model]
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        from harness import models

        try:
            resolved = models.resolve(model)
        except HarnessError as e:
            raise HarnessError(f"{e}; or one of the reference shapes {', '.join(SHAPES)}") from None
        path = Path(resolved.path)
        if not (path / "config.json").is_file():  # a hub id: its config.json alone, from the HF cache or hub
            try:
                from transformers import AutoConfig

                config = AutoConfig.from_pretrained(resolved.path).to_dict()
            except Exception as e:  # offline, gated or misspelled: all end the same way for the user
                raise HarnessError(f"config of {model!r} cannot be read ({str(e).splitlines()[0][:120]}); pass a "
                                   f"local checkpoint folder or one of the reference shapes "
                                   f"{', '.join(SHAPES)}") from None
            return shape_from_config(config.get("text_config") or config, name=model)
    return shape_from_config(json.loads((path / "config.json").read_text()), name=model)


@dataclass
class Estimate:
    """Bytes a training step holds, by component; `total` is what must fit on the device."""

    model: str
    method: str
    batch_size: int
    seq_len: int
    params: int
    trainable: int
    components: dict[str, float]
    settings: dict = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.components.values())

    def gib(self, component: str | None = None) -> float:
        return (self.total if component is None else self.components[component]) / GiB

    def describe(self) -> str:
        """`QLoRA of llama-70b (batch 8 x 512 tokens)`"""
        method = {"qlora": "QLoRA", "lora": "LoRA", "full": "full fine-tuning"}[self.method]
        return f"{method} of {self.model} (batch {self.batch_size} x {self.seq_len} tokens)"


def _as_json(estimates: list[Estimate], device: str, free: float | None, problems: list, not_checked: str | None) -> str:
    import json
    from dataclasses import asdict

    return json.dumps({"device": device, "free_bytes": free, "fit_not_checked": not_checked, "estimates": [
        {**asdict(e), "total_bytes": e.total, "fits": None if free is None else problem is None, "problem": problem}
        for e, problem in zip(estimates, problems)]}, indent=2)


def estimate(config_or_shape: str | Shape | dict, method: str = "qlora", batch_size: int = 8, seq_len: int = 512, *,
             r: int = 16, target_modules: str | tuple[str, ...] | list[str] = "all-linear",
             optimizer: str = "adamw", compute_dtype: str = "bf16", gradient_checkpointing: bool = False,
             lora_dropout: float = 0.05, attention: str = "sdpa", fused_lm_head: bool = True,
             device: str = "cuda") -> Estimate:
    """Memory of one training step of `method` on a model shape, by component (bytes).

    compute_dtype: "bf16" on GPUs (the harness trains in bf16 autocast where supported),
        "fp32" on CPU (what the harness uses there).
    attention: "sdpa" (flash / memory-efficient kernels keep no seq x seq matrix) or "eager"
        (the softmax probabilities are kept: heads * seq^2 per layer).
    fused_lm_head: the loss as trl's SFTTrainer computes it, in vocabulary tiles (True), or
        from fully materialized logits, as a plain transformers Trainer does (False).
    device: "cuda" or "cpu": the framework overhead, and whether trl's loss tiles run in a
        Triton kernel (CUDA) or in torch with temporaries (CPU).
    """
    if method not in METHODS:
        raise HarnessError(f"method must be one of {', '.join(METHODS)} (got {method!r})")
    if optimizer not in OPTIMIZERS:
        raise HarnessError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {optimizer!r})")
    if compute_dtype not in DTYPE_BYTES:
        raise HarnessError(f"compute_dtype must be one of {', '.join(DTYPE_BYTES)} (got {compute_dtype!r})")
    if attention not in ("sdpa", "eager"):
        raise HarnessError(f"attention must be 'sdpa' or 'eager' (got {attention!r})")
    if batch_size < 1 or seq_len < 1:
        raise HarnessError(f"batch_size and seq_len must be positive (got {batch_size}, {seq_len})")
    shape = shape_of(config_or_shape)
    B = DTYPE_BYTES[compute_dtype]
    params = shape.params()
    lora = 0 if method == "full" else shape.lora_params(r, target_modules)
    trainable = params if method == "full" else lora

    if method == "qlora":
        # Decoder linears in NF4; everything else upcast to fp32 by prepare_model_for_kbit_training.
        weights = shape.linear_params() * NF4_BYTES_PER_PARAM + shape.other_params() * 4
    else:
        weights = params * B
    adapter = lora * 4  # peft keeps LoRA weights in fp32 even on a bf16 base

    if method == "full":
        grad_bytes = B
        # ZeRO paper (Rajbhandari et al. 2020, section 3.1): mixed-precision Adam holds an fp32
        # master copy (4) and two fp32 moments (8) = 12 bytes per parameter besides the bf16
        # weights (2) and gradients (2): the "16 bytes per parameter" rule. In fp32 there is
        # no master copy: 4 + 4 + 8 = 16 again.
        master = 4 if B < 4 else 0
        moments = {"adamw": 8, "adamw_8bit": 2, "sgd": 0}[optimizer]
        optimizer_bytes = trainable * (master + moments)
    else:
        grad_bytes = 4  # gradients take the fp32 adapters' dtype
        optimizer_bytes = trainable * {"adamw": 8, "adamw_8bit": 2, "sgd": 0}[optimizer]
    gradients = trainable * grad_bytes

    tokens = batch_size * seq_len
    per_layer = _layer_activation_bytes(shape, tokens, seq_len, batch_size, B, method, r, target_modules,
                                        lora_dropout, attention)
    if gradient_checkpointing:
        # Each layer keeps only its input (the residual stream, B bytes per element); the
        # backward pass recomputes one layer at a time, so one layer's full set is live at peak.
        layers = shape.layers * tokens * shape.hidden * B + per_layer
    else:
        layers = shape.layers * per_layer
    # Final RMSNorm (its fp32 input and normalized output) and the lm_head's input.
    layers += tokens * shape.hidden * (4 + 2 * B)
    if method == "qlora":
        # bitsandbytes dequantizes one 4-bit weight at a time into the compute dtype.
        layers += max(n_in * n_out for n_in, n_out, _ in shape.linears().values()) * B
    if fused_lm_head:
        # trl's SFTTrainer (the harness's trainer) never materializes the tokens x vocab logits:
        # trl.kernels.chunked_logprob projects tiles of at most 4096 tokens x 32768 vocabulary
        # entries into one buffer in the compute dtype, recomputed in backward. On CUDA a Triton
        # kernel folds each tile in place; without Triton (CPU) the torch fallback's backward holds
        # 8 more fp32 tiles at once (y, z, log_p, p, grad, and the three temporaries of
        # `grad += g * (is_target.float() - p)`) plus the boolean is_target. Then the fp32
        # gradient of the hidden states, and for full fine-tuning an fp32 lm_head gradient.
        tile = min(tokens, 4096) * min(shape.vocab, 32768)
        logits = tile * B + (tile * (8 * 4 + 1) if device == "cpu" else 0) + tokens * shape.hidden * 4
        if method == "full":
            logits += shape.vocab * shape.hidden * 4
    else:
        # A plain cross-entropy: logits in the compute dtype, an fp32 upcast when that is not
        # fp32, the fp32 log-softmax it keeps, and the fp32 gradient of the logits in backward.
        logits = tokens * shape.vocab * (B + (4 if B < 4 else 0) + 4 + 4)

    components = {"weights": weights, "adapter": adapter, "gradients": gradients, "optimizer": optimizer_bytes,
                  "activations": layers, "logits": logits, "overhead": OVERHEAD_BYTES["cpu" if device == "cpu"
                                                                                     else "cuda"]}
    settings = {"r": r, "target_modules": target_modules, "optimizer": optimizer, "compute_dtype": compute_dtype,
                "gradient_checkpointing": gradient_checkpointing, "lora_dropout": lora_dropout,
                "attention": attention, "fused_lm_head": fused_lm_head, "device": device}
    return Estimate(shape.name, method, batch_size, seq_len, params, trainable,
                    {k: float(v) for k, v in components.items()}, settings)


def _layer_activation_bytes(shape: Shape, tokens: int, seq_len: int, batch_size: int, B: int, method: str, r: int,
                            target_modules, lora_dropout: float, attention: str) -> float:
    """Bytes autograd keeps for one decoder layer (tokens = batch * seq).

    Counted tensor by tensor, the way "Reducing Activation Recomputation in Large Transformer
    Models" (Korthikanti et al. 2022, section 4.1) counts a GPT layer (34 sbh + 5 a s^2 b bytes
    in fp16), adapted to Llama: RMSNorm instead of LayerNorm, SwiGLU instead of GeLU, grouped
    KV heads, no dropout outside LoRA, and flash attention by default:

      each RMSNorm (2)        fp32 input + normalized output            (4 + B) * sbh
      attention input          the norm's output, read by q/k/v        B * sbh
      q, k, v after RoPE       kept by the attention kernel            B * sb(a + 2g)d
      attention output         o_proj's input                          B * sb a d
      attention probabilities  eager attention only (fp32 + a B copy)  (4 + B) * a s^2 b
      MLP input                the norm's output, read by gate/up      B * sbh
      SwiGLU                   gate out, SiLU out, up out, product     4B * sbi
      LoRA, per target         A's output (s b r); with dropout > 0
                               its own dropped copy of the input and
                               a 1-byte mask                           B * sbr + (B + 1) * sb * in
                               (no dropout, bf16: peft's cast of the
                               input to the fp32 adapter, cast back)   B * sbr + B * sb * in
    """
    h, i, a, g, d = shape.hidden, shape.intermediate, shape.heads, shape.kv_heads, shape.d
    total = 2 * (4 + B) * tokens * h                      # the two RMSNorms
    total += B * tokens * h * 2                           # attention input, MLP input
    total += B * tokens * (a + 2 * g) * d                 # q, k, v
    total += B * tokens * a * d                           # attention output
    if attention == "eager":
        total += (4 + B) * a * seq_len * seq_len * batch_size
    total += 4 * B * tokens * i                           # SwiGLU
    if method != "full":
        for name, (n_in, _, _) in shape.linears().items():
            if name in _targets(target_modules):
                total += B * tokens * r
                if lora_dropout > 0:
                    total += (B + 1) * tokens * n_in
                elif B < 4:  # peft casts the input to the fp32 adapter; autocast casts it back: a copy
                    total += B * tokens * n_in
    return total


def available_memory(device: str = "cuda") -> int:
    """Free bytes on `device`: CUDA's free memory, or on CPU MemAvailable (capped by a cgroup limit)."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise HarnessError(f"device {device} is not available here (torch sees no CUDA GPU); use --device cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        free, _total = torch.cuda.mem_get_info(index)
        return int(free)
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    try:  # a container's memory limit can be far below the host's free memory
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return int(available)


def check_fits(estimate: Estimate, available: float, device: str = "cuda:0") -> str | None:
    """None when the estimate fits in `available` bytes; otherwise a one-line finding with advice."""
    if estimate.total <= available:
        return None
    parts = ", ".join(f"{k} {v / GiB:.1f}" for k, v in estimate.components.items() if v)
    advice = []
    if not estimate.settings.get("gradient_checkpointing"):
        advice.append("gradient checkpointing")
    if estimate.method != "qlora":
        advice.append("QLoRA")
    advice += ["a smaller batch_size", "a shorter max_length"]
    if estimate.method == "qlora" and estimate.components["weights"] > available:
        advice = ["a smaller model (the 4-bit weights alone do not fit)"]
    return (f"{estimate.describe()} needs ~{estimate.gib():.1f} GiB ({parts}) but {device} has "
            f"{available / GiB:.1f} GiB free; use {_or(advice)}")


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}" if n < 10 * size else f"{n / size:.1f}{unit}"
    return str(n)


def format_table(estimates: list[Estimate]) -> str:
    """A plain-text table, GiB per component, one row per estimate."""
    columns = ["weights", "adapter", "gradients", "optimizer", "activations", "logits", "overhead"]
    header = ["model", "method", "batch x seq", "params", "trainable", *columns, "total GiB"]
    rows = [[e.model, e.method, f"{e.batch_size} x {e.seq_len}", _count(e.params),
             f"{_count(e.trainable)} ({e.trainable / e.params:.2%})",
             *[f"{e.components[c] / GiB:.2f}" for c in columns], f"{e.gib():.2f}"] for e in estimates]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    left = {0, 1}
    fmt = lambda row: "  ".join(str(x).ljust(w) if j in left else str(x).rjust(w)
                                for j, (x, w) in enumerate(zip(row, widths)))
    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(row) for row in rows]
    return "\n".join(lines)


def command(models: list[str], methods: list[str], *, batch_size: int = 8, seq_len: int = 512, r: int = 16,
            target_modules="all-linear", optimizer: str = "adamw", compute_dtype: str | None = None,
            gradient_checkpointing: bool = False, device: str | None = None,
            as_json: bool = False) -> tuple[str, bool]:
    """What `harness estimate` prints: the table, then whether each estimate fits `device`
    (as_json: the same as one JSON object, bytes by component and the fit of each).

    models: names as `shape_of` takes them; "all" (or nothing) means the 1B/7B/13B/70B classes.
    device: "cuda", "cuda:N" or "cpu"; None picks CUDA when present. compute_dtype None: bf16
    on CUDA, fp32 on CPU, as the harness trains. Returns (text, every estimate fits).
    """
    if device is None:
        from harness.models import device as default_device

        device = default_device()
    kind = "cpu" if device == "cpu" else "cuda"
    dtype = compute_dtype or ("fp32" if kind == "cpu" else "bf16")
    names = [n for m in (models or ["all"]) for n in (CLASSES if m == "all" else [m])]
    estimates = [estimate(m, method, batch_size, seq_len, r=r, target_modules=target_modules, optimizer=optimizer,
                          compute_dtype=dtype, gradient_checkpointing=gradient_checkpointing, device=kind)
                 for m in names for method in methods]
    lines = [format_table(estimates), ""]
    try:
        free = available_memory(device)
    except HarnessError as e:
        lines.append(f"fit not checked: {e}")
        if as_json:
            return _as_json(estimates, device, None, [None] * len(estimates), str(e)), True
        return "\n".join(lines), True
    fits, problems = True, []
    for e in estimates:
        problem = check_fits(e, free, device)
        problems.append(problem)
        fits = fits and problem is None
        lines.append(problem or f"{e.describe()}: ~{e.gib():.1f} GiB fits in the {free / GiB:.1f} GiB free on {device}")
    if as_json:
        return _as_json(estimates, device, free, problems, None), fits
    lines.append(f"settings: r={r}, target_modules={target_modules}, optimizer={optimizer}, {dtype}, "
                 f"gradient checkpointing {'on' if gradient_checkpointing else 'off'}")
    return "\n".join(lines), fits

