"""Export the gated winner: merge its LoRA adapter into the base weights.

    harness export EXPERIMENT OUT_DIR [--force] [--base dequantized|original]

The latest complete run of EXPERIMENT that trained a candidate is exported, and only if its
verdict (`judge.decision`) is Fine-tune: the five-percent rule and every other gate PASS or
SKIP. An INCONCLUSIVE the spec allowed lets CI go on but does not make a run exportable;
`force=True` exports it anyway and says so in the export's record.

The adapter is never merged into 4-bit weights: peft would have to re-quantize W + BA to
NF4, the LoRA update is small next to the 4-bit quantization step so much of it would
round away, and the result would still need bitsandbytes to load. The merge happens in
full precision, into one of two bases:

  "dequantized" (default): the NF4 base the adapter was trained and evaluated on, expanded
      back to full-precision tensors (transformers' `dequantize()`), so W_nf4 + BA is exactly
      the candidate the gates passed, as a plain checkpoint.
  "original": the checkpoint's own full-precision weights. W + BA was never evaluated: the
      adapter learned to correct the NF4-rounded W, not W, and the two can disagree on many
      rows (docs/decision.md has the measurement).

The check loads the saved folder with plain transformers and compares it with base +
adapter (the same base): max last-position logit difference within a tolerance, the same
next-token argmax at every prompt position, and the same task predictions. As information,
the record also counts agreement with the 4-bit candidate's stored test predictions.

The merged folder is written next to OUT_DIR under a temporary name and renamed into place
only after it has been reloaded and checked, so a failed or killed export never leaves
something that looks complete. OUT_DIR must be new, empty, or a previous export (it holds
harness-export.json), which is replaced.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from harness.errors import HarnessError
from harness.files import adapter_sha256
from harness.judge import decision
from harness.judge.outcomes import PASS, SKIP
from harness.store.record import ApproachRecord, Run, StoredRun

RECORD = "harness-export.json"
# Largest last-position logit difference accepted between the merged model and base +
# adapter. fp32: W + BA computed once vs Wx + B(Ax) differ only by float rounding (~1e-5
# on logits of magnitude ~10). Half precision rounds the merged weights to 8 (bf16) or 11
# (fp16) significant bits, so a logit near 20 moves by up to a few spacings of 0.125 / 0.016.
TOLERANCE = {"float32": 1e-3, "bfloat16": 0.5, "float16": 0.1}
MAX_NEW_TOKENS = 64  # cap on generation during the check


@dataclass
class ExportResult:
    out_dir: str
    experiment: str
    run_id: str
    model: str
    base_sha256: str
    adapter_path: str
    adapter_sha256: str
    merged_sha256: str
    dtype: str
    base: str                          # "dequantized" (the NF4 base as trained) or "original"
    rows: int                          # test rows compared
    prompts_from: str                  # "data" (rebuilt exactly) or "input" (stored input column only)
    max_abs_logit_diff: float          # last prompt position, full vocabulary
    tolerance: float
    token_argmax_agreement: float      # share of prompt positions whose next-token argmax agrees
    predictions_equal: int             # task predictions (label or greedy text) equal to base + adapter
    agreement_with_4bit: int | None    # ...equal to the stored predictions of the evaluated 4-bit candidate
    forced: bool = False
    failed_gates: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def find_candidate(store, experiment: str) -> tuple[StoredRun, ApproachRecord]:
    """(the run, its candidate) of the latest complete run that trained a candidate."""
    runs = store.stored_runs(experiment, "complete")
    if not runs:
        if store.runs(experiment):
            raise HarnessError(f"{experiment}: no complete run in {store.path} (see `harness runs {experiment}`); "
                               f"run `pytest` on its spec again")
        known = sorted({r.experiment for r in store.runs()})
        raise HarnessError(f"no runs of experiment {experiment!r} in {store.path}"
                           + (f" (it has: {', '.join(known)})" if known else "")
                           + "; run `pytest experiments/` first or pass --store PATH")
    for stored in reversed(runs):
        if stored.candidate is not None and stored.candidate.adapter_path:
            return stored, stored.candidate
    raise HarnessError(f"{experiment}: no complete run trained a candidate (latest: {runs[-1].run.run_id}, baselines "
                       f"only); add candidate=QLoRA(...) to the spec and run it")


def _prompts(run: Run, candidate: ApproachRecord, rows: list[dict], root: Path) -> tuple[list[list[dict]], str]:
    """The candidate's chat messages for stored prediction rows.

    Rebuilt exactly from the run's data file when it is still there (rows matched by their
    content key), with the candidate's system prompt as the run stored it; otherwise from the
    stored `input` column as a single user turn (plus that system prompt), which is the
    conversation's last user message.
    """
    from harness import data
    from harness.prompting import prompts

    system = _system_prompt(candidate.config, root)
    by_key = {}
    data_path = run.data_path
    if data_path and (root / data_path).is_file():
        try:
            by_key = {s.key: s for s in data.load(root / data_path).samples}
        except HarnessError:
            by_key = {}
    if by_key and all(r.get("example_key") in by_key for r in rows):
        return [prompts.candidate_messages(by_key[r["example_key"]], system) for r in rows], "data"
    head = [{"role": "system", "content": system}] if system else []
    return [head + [{"role": "user", "content": r["input"]}] for r in rows], "input"


def _system_prompt(config: dict, root: Path) -> str | None:
    """The candidate's system prompt as the run used it: its text, stored with the run (beside
    `system_prompt_file`). A run recorded before the text was stored has only the file's path;
    that file is read now, as it is today."""
    if config.get("system_prompt") is not None:
        return config["system_prompt"]
    path = config.get("system_prompt_file")
    if path and (root / path).is_file():
        return (root / path).read_text(encoding="utf-8").strip()
    return None


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


BASES = ("dequantized", "original")


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _load_base(resolved, base: str, dtype: str, trust: bool, device: str):
    """The base model in full precision: the dequantized NF4 weights, or the checkpoint's own."""
    from transformers import AutoModelForCausalLM

    from harness import models

    kwargs = dict(dtype=_torch_dtype(dtype), use_safetensors=True, trust_remote_code=trust, device_map={"": device})
    if base == "original":
        return AutoModelForCausalLM.from_pretrained(resolved.path, **kwargs)
    # Quantized exactly as training loaded it (NF4, double quantization), then expanded back.
    quantized = AutoModelForCausalLM.from_pretrained(resolved.path, quantization_config=models.quantization_config(),
                                                     **kwargs)
    return quantized.dequantize(dtype=_torch_dtype(dtype))


def _checkpoint_dtype(path: str) -> str:
    """The dtype a checkpoint declares in config.json (float32 when it does not say)."""
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return "float32"
    declared = str(config.get("dtype") or config.get("torch_dtype") or "float32").replace("torch.", "")
    return declared if declared in TOLERANCE else "float32"


def _outputs(model, tokenizer, rendered: list[str], task: str, labels: list[str], max_new_tokens: int,
             batch_size: int = 8) -> dict:
    """What the check compares: last-position logits, every position's argmax, task predictions."""
    import torch

    from harness.scoring import batched as scoring

    device = next(model.parameters()).device
    last, argmax = [], []
    with torch.inference_mode():
        for start in range(0, len(rendered), batch_size):
            rows = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in rendered[start:start + batch_size]]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, r in enumerate(rows):
                ids[j, width - len(r):] = torch.tensor(r)
                mask[j, width - len(r):] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           position_ids=positions.to(device)).logits.float().cpu()
            last.append(logits[:, -1])
            for j, r in enumerate(rows):
                argmax.append(logits[j, width - len(r):].argmax(-1))
    tokenizer.padding_side = "left"
    if task == "classification":
        predictions = scoring.score_labels(model, tokenizer, rendered, labels, batch_size=batch_size).predictions
    else:
        predictions = scoring.generate(model, tokenizer, rendered, max_new_tokens=max_new_tokens,
                                       batch_size=batch_size).predictions
    return {"last": torch.cat(last), "argmax": argmax, "predictions": predictions}


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise HarnessError(f"{out} exists and is not a folder; choose another OUT_DIR")
    if out.is_dir() and any(out.iterdir()) and not (out / RECORD).is_file():
        raise HarnessError(f"{out} is not empty and is not a previous export (no {RECORD}); "
                           f"choose a new or empty folder")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Replace `out` (absent, empty, or a previous export) with `tmp` by renames."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)  # put the previous export back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export(store, experiment: str, out_dir: str | Path, *, force: bool = False, sample: int = 16,
           log: Callable[[str], None] = print, root: str | Path = ".", dtype: str | None = None,
           base: str = "dequantized") -> ExportResult:
    """Merge the gated winner of `experiment` into its base model and save it to `out_dir`.

    sample: test rows on which the merged model is checked against base + adapter.
    root: the project root that the run's data and prompt paths are relative to.
    dtype: "float32", "bfloat16" or "float16" for the merge and the saved weights; None: the
        dtype the harness computed in when training ("dequantized") or the dtype the checkpoint
        declares ("original"); float32 for the embedded SmolLM2 on CPU.
    base: "dequantized" (the NF4 weights the adapter was trained on) or "original"; see above.
    """
    from harness import models

    root, out = Path(root), Path(out_dir).expanduser().absolute()
    stored, candidate, failed = _gated_winner(store, experiment, force)
    _check_out_dir(out)
    resolved, adapter_sha = _unchanged_inputs(experiment, stored.run, candidate)
    rows = _check_rows(store, stored.run, candidate, sample, root)
    if base not in BASES:
        raise HarnessError(f"base must be one of {', '.join(BASES)} (got {base!r})")
    dtype = dtype or (_dtype_name(models.compute_dtype()) if base == "dequantized"
                      else _checkpoint_dtype(resolved.path))
    if dtype not in TOLERANCE:
        raise HarnessError(f"dtype must be one of {', '.join(TOLERANCE)} (got {dtype!r})")
    if failed:
        log(f"{experiment}: exporting run {stored.run.run_id} despite failed gates "
            f"({', '.join(g.gate for g in failed)}): --force")
    result = _merge_check_and_save(stored, candidate, resolved, adapter_sha, rows, out, base, dtype, failed, log)
    if result.agreement_with_4bit is not None and result.agreement_with_4bit < 0.9 * result.rows:
        log(f"{experiment}: warning: the export agrees with the evaluated 4-bit candidate on only "
            f"{result.agreement_with_4bit} of {result.rows} test rows"
            + ("; export with base='dequantized' to ship the model the gates passed" if base == "original" else ""))
    log(f"{experiment}: exported to {out}: max logit difference {result.max_abs_logit_diff:.2g} (tolerance "
        f"{result.tolerance:g}), {result.predictions_equal}/{result.rows} predictions equal to base + adapter"
        + (f", {result.agreement_with_4bit}/{result.rows} equal to the evaluated 4-bit candidate"
           if result.agreement_with_4bit is not None else ""))
    return result


def _gated_winner(store, experiment: str, force: bool) -> tuple[StoredRun, ApproachRecord, list]:
    """(the run, its candidate, the gates that did not pass): the latest run that trained a
    candidate, refused unless `judge.decision` says it may be exported or `force` is given."""
    stored, candidate = find_candidate(store, experiment)
    found = decision.decide(stored.gates)
    failed = [] if found.exportable else [g for g in stored.gates if g.outcome not in (PASS, SKIP)]
    if not found.exportable and not force:
        listed = "; ".join(f"{g.gate} {g.outcome}{' (allowed by the spec)' if decision.allowed(g) else ''}: "
                           f"{_short(g.message)}" for g in failed)
        raise HarnessError(f"{experiment}: run {stored.run.run_id}'s verdict is {found.verdict}, not "
                           f"{decision.FINE_TUNE} ({listed}); export refused; pass --force to export it anyway")
    return stored, candidate, failed


def _unchanged_inputs(experiment: str, run: Run, candidate: ApproachRecord):
    """(the resolved base model, the adapter's sha256), refusing an adapter or base weights that
    are gone or changed since the run evaluated them."""
    from harness import models

    adapter_path = candidate.adapter_path
    if not (Path(adapter_path) / "adapter_config.json").is_file():
        raise HarnessError(f"{experiment}: the adapter of run {run.run_id} is gone from {adapter_path}; "
                           f"run the experiment again to retrain it")
    found_sha = adapter_sha256(adapter_path)
    if candidate.adapter_sha256 and found_sha != candidate.adapter_sha256:
        raise HarnessError(f"{experiment}: adapter {adapter_path} changed since run {run.run_id} (sha256 "
                           f"{found_sha[:12]}, recorded {candidate.adapter_sha256[:12]}); run the experiment "
                           f"again to evaluate what would be exported")
    resolved = models.resolve(run.model)
    if run.model_sha256 and resolved.sha256 != run.model_sha256:
        raise HarnessError(f"{experiment}: base model {run.model} now has weights sha256 {resolved.sha256[:12]}, "
                           f"but run {run.run_id} trained on {run.model_sha256[:12]}; run the experiment again")
    return resolved, found_sha


@dataclass
class _CheckRows:
    """The test rows the merged model is checked on: stored predictions, their chat messages
    (and where those came from: "data" or "input"), and the label set to score."""

    picked: list[dict]
    messages: list[list[dict]]
    prompts_from: str
    labels: list[str]


def _check_rows(store, run: Run, candidate: ApproachRecord, sample: int, root: Path) -> _CheckRows:
    preds = store.rows("predictions", run.run_id, approach=candidate.name, split="test") or \
        store.rows("predictions", run.run_id, approach=candidate.name)
    if not preds:
        raise HarnessError(f"{run.experiment}: run {run.run_id} stored no candidate predictions to check the "
                           f"export on")
    step = max(1, len(preds) // max(1, sample))
    picked = preds[::step][:sample]  # spread over the split, deterministic
    messages, prompts_from = _prompts(run, candidate, picked, root)
    everything = store.rows("predictions", run.run_id)
    labels = sorted({p["reference"].strip() for p in everything if p["reference"] is not None}
                    | {p["prediction"].strip() for p in everything if p["prediction"] is not None})
    return _CheckRows(picked, messages, prompts_from, labels)


def _merge_check_and_save(stored: StoredRun, candidate: ApproachRecord, resolved, adapter_sha: str,
                          rows: _CheckRows, out: Path, base: str, dtype: str, failed: list,
                          log: Callable[[str], None]) -> ExportResult:
    """Merge base + adapter, save it under a temporary name, reload it with plain transformers,
    compare its outputs with base + adapter on the check rows, and only then move it into place."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from harness import models
    from harness.scoring import batched as scoring

    run, experiment, adapter_path = stored.run, stored.run.experiment, candidate.adapter_path
    trust = bool(run.config.get("trust_remote_code", False))
    task = run.task or "classification"
    tokenizer = models.load_tokenizer(resolved, trust_remote_code=trust)
    tokenizer.padding_side = "left"
    rendered = [scoring.render(tokenizer, m) for m in rows.messages]
    longest = max((len(tokenizer(p["reference"] or "", add_special_tokens=False)["input_ids"]) for p in rows.picked),
                  default=8)
    max_new = min(MAX_NEW_TOKENS, longest + 8)
    device = models.device()

    log(f"{experiment}: loading {run.model} ({base} weights, {dtype}) with adapter {adapter_path} (run {run.run_id})")
    base_model = _load_base(resolved, base, dtype, trust, device)
    peft_model = PeftModel.from_pretrained(base_model, adapter_path).eval()
    reference = _outputs(peft_model, tokenizer, rendered, task, rows.labels, max_new)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        log(f"{experiment}: merging the adapter (merge_and_unload) and saving to {out}")
        merged = peft_model.merge_and_unload()
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del merged, peft_model, base_model
        # The check loads the folder as any user would: plain transformers, no peft, no harness.
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype="auto", use_safetensors=True,
                                                        trust_remote_code=trust, device_map={"": device}).eval()
        got = _outputs(reloaded, tokenizer, rendered, task, rows.labels, max_new)
        del reloaded
        n = len(rows.picked)
        diff = float((got["last"] - reference["last"]).abs().max())
        positions = sum(len(a) for a in reference["argmax"])
        agreeing = sum(int((a == b).sum()) for a, b in zip(reference["argmax"], got["argmax"]))
        equal = sum(a == b for a, b in zip(reference["predictions"], got["predictions"]))
        tolerance = TOLERANCE[dtype]
        if diff > tolerance or equal < n:
            raise HarnessError(f"{experiment}: the merged model does not match base + adapter on {n} test "
                               f"rows (max logit difference {diff:.3g}, tolerance {tolerance:g}; {equal} of "
                               f"{n} predictions equal); nothing was written to {out}")
        with_4bit = None
        if rows.prompts_from == "data":
            with_4bit = sum(p.strip() == (row["prediction"] or "").strip() for p, row in zip(got["predictions"],
                                                                                          rows.picked))
        result = ExportResult(
            out_dir=str(out), experiment=experiment, run_id=run.run_id, model=run.model, base_sha256=resolved.sha256,
            adapter_path=adapter_path, adapter_sha256=adapter_sha, merged_sha256=adapter_sha256(tmp), dtype=dtype,
            base=base, rows=n, prompts_from=rows.prompts_from, max_abs_logit_diff=diff, tolerance=tolerance,
            token_argmax_agreement=agreeing / positions if positions else 1.0, predictions_equal=equal,
            agreement_with_4bit=with_4bit, forced=bool(failed), failed_gates=[g.gate for g in failed])
        record = {**result.to_dict(), "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "task": task, "key_metric": run.key_metric, "gates": {g.gate: g.outcome for g in stored.gates},
                  "versions": _versions(), "torch_device": device, "torch_version": torch.__version__}
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    from harness import DISTRIBUTION

    versions = {}
    for lib in ("harness", "torch", "transformers", "peft"):
        try:
            versions[lib] = md.version(DISTRIBUTION if lib == "harness" else lib)
        except md.PackageNotFoundError:
            pass
    return versions
