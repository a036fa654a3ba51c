"""Batched scoring: label log-likelihoods for classification, greedy generation otherwise.

Classification never generates: each allowed label is scored by its log-likelihood after
the prompt and the best one wins, so a prediction is never an invalid label. Prompts are
left-padded, so every label sits at the end of its row and only the last few positions
need logits. A prefix shared by every prompt (the system prompt and few-shot examples)
is run once and its key/value cache reused by every batch. Continuations that share a whole
prompt (a suite question's four options) run after one pass of it.
"""
from __future__ import annotations

import copy
import time
from collections import defaultdict
from typing import Callable

import torch

from harness.scoring.scored import Scored

PREFIX_CACHE_MIN_TOKENS = 64  # below this, copying the cache costs more than recomputing it
# A batch runs its distinct heads in a forward of their own only if that saves this many token
# positions: on a CPU one more forward of SmolLM2 4-bit costs ~100 ms, what ~50 positions cost
# inside a batch (a forward of 16 rows x 64 tokens took ~2 s). So the forgetting probe's rows
# (one boundary token shared: 15 saved per batch of 16) run whole, as do batches of one row.
SHARED_HEAD_MIN_SAVING = 64


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


def _left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask of rows left-padded to the longest: (batch, width) each."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids, mask


def _cache_of(out):
    return out.cache if hasattr(out, "cache") else out.past_key_values


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
            self.cache = _cache_of(model(input_ids=ids, use_cache=True, logits_to_keep=1))

    def logits(self, rows: list[list[int]], keep: int) -> torch.Tensor:
        """Logits of the last `keep` positions of each (left-padded) row: (batch, keep, vocab)."""
        return self.run(rows, keep)[0]

    def run(self, rows: list[list[int]], keep: int, *, keep_cache: bool = False):
        """(logits of the last `keep` positions, the key/value cache or None, its attention mask).

        With `keep_cache` the cache of prefix and rows comes back, for `after` to run more tokens on."""
        ids, mask = _left_pad([r[self.prefix_len:] for r in rows], self.pad)
        # Positions count real tokens only, so padding between prefix and suffix changes nothing.
        positions = (self.prefix_len + mask.cumsum(-1) - 1).clamp(min=0)
        kwargs = {}
        if self.cache is not None:
            cache = copy.deepcopy(self.cache)
            cache.batch_repeat_interleave(len(rows))
            mask = torch.cat([torch.ones((len(rows), self.prefix_len), dtype=torch.long), mask], dim=1)
            kwargs[CACHE_ARG] = cache
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                         position_ids=positions.to(self.device), use_cache=keep_cache or self.cache is not None,
                         logits_to_keep=keep, **kwargs)
        return out.logits.float(), _cache_of(out) if keep_cache else None, mask

    def after(self, cache, past_mask: torch.Tensor, past_lengths: list[int], rows: list[list[int]],
              keep: int) -> torch.Tensor:
        """Logits of the last `keep` positions of each row, run after its own cached past (one per
        row, `past_mask` wide, `past_lengths` real tokens), left-padded between past and row."""
        ids, mask = _left_pad(rows, self.pad)
        positions = torch.tensor(past_lengths)[:, None] + mask.cumsum(-1) - 1
        out = self.model(input_ids=ids.to(self.device), attention_mask=torch.cat([past_mask, mask], 1).to(self.device),
                         position_ids=positions.to(self.device), use_cache=True, logits_to_keep=keep,
                         **{CACHE_ARG: cache})
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
                        share_prompts: bool = True,
                        progress: Callable[[int, int], None] | None = None) -> tuple[list[float], list[int]]:
    """Each continuation's log-likelihood after its prompt (summed over its tokens) and its
    token count: what the perplexity of the references is made of, and how the capability
    suite's options are ranked.

    Left-padded batches of `batch_size` rows, so every continuation ends at the same position
    and one slice of logits covers them all. With `share_prompts`, a prompt that several rows
    share (a suite question and its four options) is run once and its key/value cache copied
    to each continuation; `share_prompts=False` runs every row whole, as a check of the same
    numbers."""
    model.eval()
    pieces = []
    for prompt, text in zip(prompts, continuations):
        head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        try:
            tail = _label_ids(tokenizer, prompt, text) if text else []
        except ValueError:  # merges across the boundary: score the reference's own tokens
            tail = tokenizer(text, add_special_tokens=False)["input_ids"]
        pieces.append((head, tail))
    n = len(pieces)
    loglik = [0.0] * n
    shared = _batches_worth_sharing(pieces, batch_size) if share_prompts else []
    in_shared = {i for batch in shared for i in batch}
    whole = [i for i in range(n) if i not in in_shared]
    done = 0

    def advance(rows: int) -> None:
        nonlocal done
        done += rows
        if progress:
            progress(done, n)

    if whole:
        _score_whole_rows(model, tokenizer, pieces, whole, batch_size, loglik, advance)
    if shared:
        _score_after_shared_heads(model, tokenizer, pieces, shared, loglik, advance)
    return loglik, [len(t) for _, t in pieces]


def _batches_worth_sharing(pieces: list[tuple[list[int], list[int]]], batch_size: int) -> list[list[int]]:
    """Batches of rows whose heads (prompt tokens) repeat, a head's rows together, shorter heads
    first; only those where running each distinct head once saves SHARED_HEAD_MIN_SAVING tokens."""
    rows_by_head: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, (head, _) in enumerate(pieces):
        rows_by_head[tuple(head)].append(i)
    repeated = sorted((i for rows in rows_by_head.values() if len(rows) > 1 for i in rows),
                      key=lambda i: (len(pieces[i][0]), pieces[i][0]))
    worth = []
    for batch in _batches(repeated, batch_size):
        heads = {tuple(pieces[i][0]) for i in batch}
        if sum(len(pieces[i][0]) for i in batch) - sum(map(len, heads)) >= SHARED_HEAD_MIN_SAVING:
            worth.append(batch)
    return worth


def _score_whole_rows(model, tokenizer, pieces, rows: list[int], batch_size: int, loglik: list[float],
                      advance: Callable[[int], None]) -> None:
    """Score each of `rows` as one row, prompt and continuation together."""
    runner = _Runner(model, tokenizer, [pieces[i][0] + pieces[i][1] for i in rows], use_prefix_cache=True)
    order = sorted(rows, key=lambda i: len(pieces[i][0]) + len(pieces[i][1]))
    for batch in _batches(order, batch_size):
        keep = max(len(pieces[i][1]) for i in batch) + 1
        if keep > 1:
            logits = runner.logits([pieces[i][0] + pieces[i][1] for i in batch], keep=keep).log_softmax(-1)
            for j, i in enumerate(batch):
                tail = pieces[i][1]
                if tail:
                    # the tokens of row j are its last len(tail) ids, predicted by the positions just before
                    predicted = logits[j, keep - 1 - len(tail):keep - 1]
                    target = torch.tensor(tail, device=predicted.device)
                    loglik[i] = predicted.gather(-1, target.unsqueeze(-1)).sum().item()
        advance(len(batch))


def _score_after_shared_heads(model, tokenizer, pieces, batches: list[list[int]], loglik: list[float],
                              advance: Callable[[int], None]) -> None:
    """Score each batch running each of its distinct heads once: a head's last position's logits
    give the first continuation token's log-prob, and its cache, copied once per row, is the past
    the rest of the continuation runs after (only the tokens before the last are run: the last
    predicts nothing scored)."""
    distinct = {tuple(pieces[i][0]): None for batch in batches for i in batch}
    runner = _Runner(model, tokenizer, [list(h) for h in distinct], use_prefix_cache=True)
    for batch in batches:
        slot: dict[tuple[int, ...], int] = {}
        which = [slot.setdefault(tuple(pieces[i][0]), len(slot)) for i in batch]  # row j's head
        heads = [list(h) for h in slot]
        first, cache, head_mask = runner.run(heads, keep=1, keep_cache=True)
        first = first[:, -1].log_softmax(-1)
        rests = [pieces[i][1][:-1] for i in batch]
        keep = max(len(r) for r in rests)
        if keep:
            index = torch.tensor(which)
            cache.reorder_cache(index)  # index_select on the batch axis: one copy per row, groups of any size
            logits = runner.after(cache, head_mask[index], [len(heads[k]) for k in which], rests,
                                  keep=keep).log_softmax(-1)
        for j, i in enumerate(batch):
            tail = pieces[i][1]
            if not tail:
                continue
            loglik[i] = first[which[j], tail[0]].item()
            if len(tail) > 1:
                predicted = logits[j, keep - len(rests[j]):]
                target = torch.tensor(tail[1:], device=predicted.device)
                loglik[i] += predicted.gather(-1, target.unsqueeze(-1)).sum().item()
        advance(len(batch))
