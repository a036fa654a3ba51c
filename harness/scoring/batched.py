"""Batched scoring: label log-likelihoods for classification, greedy generation otherwise.

Classification never generates: each allowed label is scored by its log-likelihood after
the prompt and the best one wins, so a prediction is never an invalid label. Prompts are
left-padded, so every label sits at the end of its row and only the last few positions
need logits. A prefix shared by every prompt (the system prompt and few-shot examples)
is run once and its key/value cache reused by every batch.
"""
from __future__ import annotations

import copy
import time
from typing import Callable

import torch

from harness.scoring.scored import Scored

PREFIX_CACHE_MIN_TOKENS = 64  # below this, copying the cache costs more than recomputing it


def _cache_arg() -> str:
    # transformers 5.2x renamed forward's `past_key_values` to `cache`.
    import inspect

    from transformers import LlamaForCausalLM

    return "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


CACHE_ARG = _cache_arg()


def generated_label(text: str, labels: list[str]) -> str | None:
    """The label a generated answer gives, if it gives one: the whole answer, or its start
    followed by punctuation or space ("1", "1.", "Positive - because ..."); else None."""
    answer = text.strip().strip("\"'`*").strip().lower()
    for label in sorted(labels, key=len, reverse=True):
        low = label.lower()
        if answer == low or (answer.startswith(low) and not answer[len(low)].isalnum()):
            return label
    return None


def render(tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _common_prefix(sequences: list[list[int]]) -> int:
    shortest = min(len(s) for s in sequences)
    n = 0
    while n < shortest - 1 and all(s[n] == sequences[0][n] for s in sequences):  # leave >= 1 token each
        n += 1
    return n


def _label_ids(tokenizer, prompt: str, label: str) -> list[int]:
    full = tokenizer(prompt + label, add_special_tokens=False)["input_ids"]
    head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if full[:len(head)] != head or len(full) == len(head):
        raise ValueError(f"label {label!r} does not tokenize as a continuation of the prompt")
    return full[len(head):]


class _Runner:
    """Runs left-padded batches of token rows after an optional shared, cached prefix."""

    def __init__(self, model, tokenizer, rows: list[list[int]], use_prefix_cache: bool):
        self.model, self.pad = model, tokenizer.pad_token_id
        self.device = next(model.parameters()).device
        self.prefix_len = _common_prefix(rows) if use_prefix_cache and len(rows) > 1 else 0
        if self.prefix_len < PREFIX_CACHE_MIN_TOKENS:
            self.prefix_len = 0
        self.cache = None
        if self.prefix_len:
            ids = torch.tensor([rows[0][:self.prefix_len]], device=self.device)
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
            self.cache = out.cache if hasattr(out, "cache") else out.past_key_values

    def logits(self, rows: list[list[int]], keep: int) -> torch.Tensor:
        """Logits of the last `keep` positions of each (left-padded) row: (batch, keep, vocab)."""
        suffixes = [r[self.prefix_len:] for r in rows]
        width = max(len(s) for s in suffixes)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, s in enumerate(suffixes):
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, width - len(s):] = 1
        # Positions count real tokens only, so padding between prefix and suffix changes nothing.
        positions = (self.prefix_len + mask.cumsum(-1) - 1).clamp(min=0)
        kwargs = {}
        if self.cache is not None:
            cache = copy.deepcopy(self.cache)
            cache.batch_repeat_interleave(len(rows))
            mask = torch.cat([torch.ones((len(rows), self.prefix_len), dtype=torch.long), mask], dim=1)
            kwargs[CACHE_ARG] = cache
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                         position_ids=positions.to(self.device), use_cache=self.cache is not None,
                         logits_to_keep=keep, **kwargs)
        return out.logits.float()


def _batches(order: list[int], size: int):
    for start in range(0, len(order), size):
        yield order[start:start + size]


@torch.inference_mode()
def score_labels(model, tokenizer, prompts: list[str], labels: list[str], *, batch_size: int = 16,
                 use_prefix_cache: bool = True, progress: Callable[[int, int], None] | None = None) -> Scored:
    """Predict, for each rendered prompt, the label with the highest log-likelihood."""
    model.eval()
    rows = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    label_ids = {label: _label_ids(tokenizer, prompts[0], label) for label in labels}
    single = all(len(ids) == 1 for ids in label_ids.values())
    runner = _Runner(model, tokenizer, rows, use_prefix_cache)
    n = len(prompts)
    logprobs: list[dict[str, float]] = [{} for _ in range(n)]
    latencies = [0.0] * n
    order = sorted(range(n), key=lambda i: len(rows[i]))  # similar lengths together: little padding
    done = 0
    for batch in _batches(order, batch_size):
        start = time.perf_counter()
        if single:
            # One forward per prompt: the next-token distribution ranks every label at once.
            last = runner.logits([rows[i] for i in batch], keep=1)[:, -1].log_softmax(-1)
            for j, i in enumerate(batch):
                logprobs[i] = {lab: last[j, ids[0]].item() for lab, ids in label_ids.items()}
        else:
            for label, ids in label_ids.items():
                keep = len(ids) + 1
                logits = runner.logits([rows[i] + ids for i in batch], keep=keep)[:, :-1].log_softmax(-1)
                target = torch.tensor(ids, device=logits.device)
                picked = logits.gather(-1, target.expand(len(batch), -1).unsqueeze(-1)).squeeze(-1)
                for j, i in enumerate(batch):
                    logprobs[i][label] = picked[j].sum().item()
        elapsed_ms = (time.perf_counter() - start) * 1000
        for i in batch:
            latencies[i] = elapsed_ms / len(batch)
        done += len(batch)
        if progress:
            progress(done, n)
    predictions = [max(lp, key=lp.get) for lp in logprobs]
    return Scored(predictions, latencies, [len(r) for r in rows], label_logprobs=logprobs)


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[str], *, max_new_tokens: int, batch_size: int = 16,
             progress: Callable[[int, int], None] | None = None) -> Scored:
    """Greedy, batched generation, sorted by length; stops at the end of the answer."""
    model.eval()
    device = next(model.parameters()).device
    rows = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    n = len(prompts)
    outputs, latencies, generated = [""] * n, [0.0] * n, [0] * n
    order = sorted(range(n), key=lambda i: len(rows[i]))
    done = 0
    for batch in _batches(order, batch_size):
        width = max(len(rows[i]) for i in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, i in enumerate(batch):
            ids[j, width - len(rows[i]):] = torch.tensor(rows[i])
            mask[j, width - len(rows[i]):] = 1
        start = time.perf_counter()
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
        elapsed_ms = (time.perf_counter() - start) * 1000
        for j, i in enumerate(batch):
            new = out[j, width:].tolist()
            if tokenizer.eos_token_id in new:
                new = new[:new.index(tokenizer.eos_token_id)]
            outputs[i] = tokenizer.decode(new, skip_special_tokens=True).strip()
            generated[i] = len(new)
            latencies[i] = elapsed_ms / len(batch)
        done += len(batch)
        if progress:
            progress(done, n)
    return Scored(outputs, latencies, [len(r) for r in rows], generated_tokens=generated)


@torch.inference_mode()
def score_continuations(model, tokenizer, prompts: list[str], continuations: list[str], *, batch_size: int = 16,
                        progress: Callable[[int, int], None] | None = None) -> tuple[list[float], list[int]]:
    """Each continuation's log-likelihood after its prompt (summed over its tokens) and its
    token count: what the perplexity of the references is made of. Left-padded batches, so
    every continuation ends at the same position and one slice of logits covers them all."""
    model.eval()
    n = len(prompts)
    pieces = []
    for prompt, text in zip(prompts, continuations):
        head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        try:
            tail = _label_ids(tokenizer, prompt, text) if text else []
        except ValueError:  # merges across the boundary: score the reference's own tokens
            tail = tokenizer(text, add_special_tokens=False)["input_ids"]
        pieces.append((head, tail))
    runner = _Runner(model, tokenizer, [h + t for h, t in pieces], use_prefix_cache=True)
    loglik, counts = [0.0] * n, [len(t) for _, t in pieces]
    order = sorted(range(n), key=lambda i: len(pieces[i][0]) + counts[i])
    done = 0
    for batch in _batches(order, batch_size):
        keep = max(counts[i] for i in batch) + 1
        if keep > 1:
            logits = runner.logits([pieces[i][0] + pieces[i][1] for i in batch], keep=keep).log_softmax(-1)
            for j, i in enumerate(batch):
                if counts[i]:
                    # the tokens of row j are its last counts[i] ids, predicted by the positions just before
                    predicted = logits[j, keep - 1 - counts[i]:keep - 1]
                    target = torch.tensor(pieces[i][1], device=predicted.device)
                    loglik[i] = predicted.gather(-1, target.unsqueeze(-1)).sum().item()
        done += len(batch)
        if progress:
            progress(done, n)
    return loglik, counts
