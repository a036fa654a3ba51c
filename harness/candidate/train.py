"""QLoRA training: 4-bit NF4 base + peft LoRA, trained by trl's SFTTrainer on the answers only.

Examples become prompt/completion conversations, so trl computes the loss on the
assistant's answer alone. Validation loss is measured before training (step 0) and at
every evaluation, with each val row's own loss, giving the curves the overfit gate reads.
"""
from __future__ import annotations

import contextlib
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.files import adapter_sha256
from harness.spec.experiment import QLoRA


@dataclass
class Trained:
    adapter_path: str
    adapter_sha256: str
    # {step, epoch, split: train|val, loss}; a val point also has row_losses: each val row's mean
    # completion-token loss at that evaluation (None where not measured), in the eval set's order
    curves: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    trainable_params: int = 0
    total_params: int = 0
    device: str = "cpu"
    # the step whose weights were delivered: early stopping's best checkpoint, else the last step;
    # None for an adapter cached before this was kept
    kept_step: int | None = None
    # each train row's mean completion-token loss as it was trained on, in the epoch up to the kept
    # step (dropout on, weights moving through the epoch): the overfit gate's fit-gap warning
    # compares it with the val rows at the kept step. None without validation, for a resumed run
    # and for an adapter cached before this was kept
    train_row_losses: list[float] | None = None

    def summary(self) -> dict:
        """What the adapter cache keeps beside the adapter (everything but its path and hash)."""
        return {"curves": self.curves, "seconds": self.seconds, "steps": self.steps,
                "trainable_params": self.trainable_params, "total_params": self.total_params, "device": self.device,
                "kept_step": self.kept_step, "train_row_losses": self.train_row_losses}


def conversation(messages: list[dict], answer: str) -> dict:
    """One training row in trl's conversational prompt/completion form."""
    return {"prompt": messages, "completion": [{"role": "assistant", "content": answer}]}


def _progress_callback(log: Callable[[str], None], name: str):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """One line per logging step: where training is, its loss, and time left."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or state.max_steps == 0:
                return
            elapsed = time.perf_counter() - self.start
            eta = elapsed / max(state.global_step, 1) * (state.max_steps - state.global_step)
            what = (f"loss {logs['loss']:.4f}" if "loss" in logs else
                    f"val loss {logs['eval_loss']:.4f}" if "eval_loss" in logs else None)
            if what:
                log(f"{name}: step {state.global_step}/{state.max_steps} epoch {state.epoch or 0:.2f} {what} "
                    f"({elapsed:.0f}s elapsed, ~{eta:.0f}s left)")

    return Progress()


class _RowLosses:
    """Each evaluation's per-row validation losses, and each training step's per-row train losses,
    read off the forward passes training and evaluation run anyway (no extra pass, no logits
    kept): a forward hook on the model sums each row's completion token losses (-log p of every
    label that is not -100, the tokens eval_loss averages) and divides by their count. A row's
    loss is the mean over its own tokens; eval_loss weights tokens (per batch), so their means
    differ by how much long and short answers differ in loss.

    trl's fused LM head returns the per-token log-probabilities (`log_probs`, `label_mask`); a
    forward that returns logits instead (another trl) is read from them and the labels. After
    every evaluation (`on_evaluate`) the rows are attached to its log-history entry as
    `eval_row_losses`, so they reach the checkpoints' trainer_state.json and survive a resume. A
    count that does not match the eval set (several devices, or a stray forward) keeps none."""

    def __init__(self, model, expected_rows: int):
        self.expected, self.rows, self.last = expected_rows, [], None
        self.training_rows, self.train_by_step = [], {}  # rows of the step under way; step -> its rows
        self.handle = model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        import torch

        log_probs, mask = getattr(output, "log_probs", None), getattr(output, "label_mask", None)
        with torch.no_grad():
            if log_probs is None or mask is None:
                logits, labels = getattr(output, "logits", None), kwargs.get("labels")
                if logits is None or labels is None:
                    return  # a forward without labels (trl's logits pass for metrics): not a loss
                labels = labels[:, 1:].to(logits.device)  # token t predicts label t + 1
                mask = labels != -100
                log_probs = -torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2),
                                                               labels.clamp(min=0), reduction="none")
            mask = mask.to(log_probs.device)
            sums = (-log_probs.float() * mask).sum(dim=1).tolist()
            counts = mask.sum(dim=1).tolist()
        (self.training_rows if module.training else self.rows).extend(s / c if c else None
                                                                      for s, c in zip(sums, counts))

    def train_rows_up_to(self, step: int, steps_per_epoch: int) -> list[float] | None:
        """The per-row train losses of the epoch that ends at `step` (each train row once, as it
        was trained on), or None when those steps were not all seen (a resumed run)."""
        window = range(max(1, step - steps_per_epoch + 1), step + 1)
        if not window or any(s not in self.train_by_step for s in window):
            return None
        return [r for s in window for r in self.train_by_step[s] if r is not None]

    def callback(self):
        from transformers import TrainerCallback

        recorder = self

        class AttachRowLosses(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                recorder.train_by_step[state.global_step], recorder.training_rows = recorder.training_rows, []

            def on_evaluate(self, args, state, control, metrics=None, **kwargs):
                rows, recorder.rows = recorder.rows, []
                one_device = args.world_size == 1 and args.n_gpu <= 1  # else rows arrive per device
                recorder.last = rows if len(rows) == recorder.expected and one_device else None
                entry = state.log_history[-1] if state.log_history else {}
                if recorder.last is not None and "eval_loss" in entry and entry.get("step") == state.global_step:
                    entry["eval_row_losses"] = recorder.last

        return AttachRowLosses()

    def remove(self) -> None:
        self.handle.remove()


@contextlib.contextmanager
def answer_tokens_only_lm_head():
    """While training: trl's fused LM head scores only the positions that carry loss (the answer's
    tokens) on CPU too, as it already does on CUDA.

    trl (1.x) projects every position through the vocabulary off CUDA/XPU, so that tile shapes
    stay fixed where a compiler would recompile on each new count (Neuron); eager CPU torch
    recompiles nothing. The log-probabilities of the answer tokens, and so the loss, its
    gradient and the per-row val losses, are the same either way (tests/test_train.py); the
    work is not: with a one-token label after a 40-token prompt, the full-vocabulary head was
    43% of a QLoRA step on SmolLM2 (bench/bench_train.py --lm-head). Does nothing on a trl
    without the switch (the test says so)."""
    try:
        from trl.trainer import utils as trl_utils
    except ImportError:
        yield False
        return
    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        yield False
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield True
    finally:
        trl_utils._use_triton = original


CHECKPOINT_FILES = ("trainer_state.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt")


def last_complete_checkpoint(folder: Path, *, log: Callable[[str], None] = print, name: str = "candidate"):
    """The newest checkpoint-N folder whose files are all there and readable, or None.

    transformers writes a checkpoint file by file, so a process killed while saving leaves a
    folder with some files missing or cut short: it is skipped (and said so), never resumed."""
    import json
    import zipfile

    from safetensors import safe_open

    def complete(path: Path) -> bool:
        try:
            if not all((path / f).is_file() for f in CHECKPOINT_FILES):
                return False
            json.loads((path / "trainer_state.json").read_text())
            with safe_open(str(path / "adapter_model.safetensors"), "pt") as weights:
                for key in weights.keys():
                    weights.get_tensor(key)
            for archive in ("optimizer.pt", "scheduler.pt"):  # torch.save writes zip archives
                with zipfile.ZipFile(path / archive) as z:
                    if z.testzip() is not None:
                        return False
            return True
        except Exception:  # any part that cannot be read means the checkpoint is not complete
            return False

    found = sorted((p for p in Path(folder).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for path in found:
        if complete(path):
            return path
        log(f"{name}: skipping {path.name}: half-written (a process stopped while saving it)")
    return None


def train(model, tokenizer, spec: QLoRA, train_rows: list[dict], val_rows: list[dict], output_dir: str | Path,
          *, log: Callable[[str], None] = print, name: str = "candidate",
          callbacks: list | tuple = (), resume: bool = True) -> tuple[object, Trained]:
    """Train LoRA adapters on a (quantized) base model; returns the peft model and what happened.

    `callbacks` are extra transformers TrainerCallbacks (a sweep's pruning callback).
    resume: continue from the last complete checkpoint in `output_dir` (a run killed part way
    and started again with the same output_dir); a half-written checkpoint is skipped."""
    with answer_tokens_only_lm_head():
        return _train(model, tokenizer, spec, train_rows, val_rows, Path(output_dir), log=log, name=name,
                      callbacks=callbacks, resume=resume)


def _train(model, tokenizer, spec: QLoRA, train_rows: list[dict], val_rows: list[dict], output_dir: Path, *,
           log: Callable[[str], None], name: str, callbacks, resume: bool) -> tuple[object, Trained]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import EarlyStoppingCallback
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    checkpointing = cuda if spec.gradient_checkpointing is None else spec.gradient_checkpointing
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_quantized", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    steps_per_epoch = math.ceil(len(train_rows) / (spec.batch_size * spec.gradient_accumulation_steps))
    total_steps = math.ceil(steps_per_epoch * spec.epochs)
    eval_every = max(1, steps_per_epoch // spec.evals_per_epoch)
    early_stopping = bool(spec.early_stopping_patience) and bool(val_rows)
    args = SFTConfig(
        output_dir=str(output_dir / "trainer"),
        per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.batch_size * 2,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        num_train_epochs=spec.epochs,
        learning_rate=spec.learning_rate,
        lr_scheduler_type=spec.lr_scheduler,
        warmup_steps=spec.warmup_ratio,  # transformers 5: a float below 1 is a ratio of total steps
        weight_decay=spec.weight_decay,
        max_length=spec.max_length,
        logging_steps=max(1, min(10, steps_per_epoch // 4)),
        eval_strategy="steps" if val_rows else "no",
        eval_steps=eval_every,
        # A checkpoint at every evaluation (or epoch, without validation): a killed run resumes
        # from the last complete one, and early stopping reloads the best at the end.
        save_strategy="steps" if resume or early_stopping else "no",
        save_steps=eval_every if val_rows else steps_per_epoch,
        save_total_limit=2,
        load_best_model_at_end=early_stopping,
        metric_for_best_model="eval_loss" if early_stopping else None,
        greater_is_better=False if early_stopping else None,
        report_to=[],
        seed=spec.seed,
        data_seed=spec.seed,
        bf16=bf16,
        fp16=cuda and not bf16,
        use_cpu=not cuda,
        gradient_checkpointing=checkpointing,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    lora = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, task_type="CAUSAL_LM",
                      target_modules=list(spec.target_modules) if isinstance(spec.target_modules, tuple)
                      else spec.target_modules)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(train_rows),
                         eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
                         processing_class=tokenizer, peft_config=lora,
                         callbacks=[_progress_callback(log, name), *callbacks] + (
                             [EarlyStoppingCallback(early_stopping_patience=spec.early_stopping_patience)]
                             if early_stopping else []))
    # With tqdm off, transformers prints every log dict to stdout; the progress callback says it better.
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    recorder = _RowLosses(trainer.model, len(trainer.eval_dataset)) if val_rows else None
    if recorder is not None:
        trainer.add_callback(recorder.callback())
    trainable, total = trainer.model.get_nb_trainable_parameters()
    log(f"{name}: QLoRA r={spec.r} alpha={spec.alpha} lr={spec.learning_rate:g} epochs={spec.epochs:g}: "
        f"{trainable:,} trainable of {total:,} parameters, {total_steps} steps on {'cuda' if cuda else 'cpu'}")
    curves = []
    if val_rows:
        start_loss = trainer.evaluate()["eval_loss"]
        curves.append({"step": 0, "epoch": 0.0, "split": "val", "loss": start_loss, "row_losses": recorder.last})
        log(f"{name}: val loss before training {start_loss:.4f}")
    checkpoint = last_complete_checkpoint(output_dir / "trainer", log=log, name=name) if resume else None
    if checkpoint is not None:
        log(f"{name}: resuming from {checkpoint.name} (a previous attempt stopped there)")
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - start
    step = kept_step = trainer.state.global_step
    if early_stopping:
        best = trainer.state.best_model_checkpoint
        if best is not None:  # load_best_model_at_end reloaded it
            kept_step = int(Path(best).name.split("-")[-1])
        log(f"{name}: kept the best checkpoint ({best}, val loss {trainer.state.best_metric:.4f}); "
            f"stopped at step {step} of {total_steps}")
    elif val_rows and not any(h.get("step") == step and "eval_loss" in h for h in trainer.state.log_history):
        trainer.evaluate()  # the curve should end where training ended
    for entry in trainer.state.log_history:
        if "loss" in entry:
            curves.append({"step": entry["step"], "epoch": entry.get("epoch"), "split": "train", "loss": entry["loss"]})
        if "eval_loss" in entry:
            curves.append({"step": entry["step"], "epoch": entry.get("epoch"), "split": "val",
                           "loss": entry["eval_loss"], "row_losses": entry.get("eval_row_losses")})
    train_row_losses = None
    if recorder is not None:
        recorder.remove()
        train_row_losses = recorder.train_rows_up_to(kept_step, steps_per_epoch)
    adapter_dir = output_dir / "adapter"
    trainer.model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    shutil.rmtree(output_dir / "trainer", ignore_errors=True)  # checkpoints only served a resume
    peft_model = trainer.model
    peft_model.eval()
    return peft_model, Trained(str(adapter_dir), adapter_sha256(adapter_dir), curves, seconds, trainer.state.global_step,
                               trainable, total, "cuda" if cuda else "cpu", kept_step, train_row_losses)
