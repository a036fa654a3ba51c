"""Retrieval for the retrieval baseline: the k knowledge passages most similar to an input.

For a knowledge task the guides' first answer is "retrieve before you fine-tune": if the model
lacks the facts, put them in the prompt. This module gives that answer its fair chance.

    knowledge  a JSONL of passages, {"text": ...} per line with optional "id" and "title"; or a
               .txt/.md file, or a folder of them, split into paragraphs at blank lines
    index      the passages' MiniLM embeddings (harness/prompting/embed.py), built once and cached under
               cache_dir()/retrieval as <key>.npy + <key>.json, where the key hashes the source's
               content and the embedding model: a changed source has a new key, so it is rebuilt
    retrieval  cosine similarity of normalised embeddings (a dot product), top k, most similar first
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from harness.data import Sample
from harness.errors import DataError
from harness.files import write_atomically

INDEX_VERSION = "1"  # bump when what is embedded for a passage changes
KNOWLEDGE_SUFFIXES = (".txt", ".md")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_EXAMPLE_LINE = '{"id": "p1", "title": "...", "text": "..."}'


@dataclass(frozen=True)
class Passage:
    """One retrievable piece of knowledge."""

    id: str
    text: str
    title: str = ""

    @property
    def key(self) -> str:
        """What a calibrated twin groups prompts by (a few-shot example's `key` plays the same part)."""
        return self.id

    @property
    def embedded(self) -> str:
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass(frozen=True)
class Knowledge:
    """A loaded knowledge source: its passages and the sha256 of its content."""

    path: str
    passages: list[Passage]
    sha256: str


def load_knowledge(path: str | Path, root: Path | None = None) -> Knowledge:
    """Read a knowledge source (JSONL of passages, a .txt/.md file, or a folder of them)."""
    shown = str(path)
    full = root / path if root is not None and not Path(path).is_absolute() else Path(path)
    if full.is_dir():
        files = sorted(p for p in full.rglob("*") if p.is_file() and p.suffix in KNOWLEDGE_SUFFIXES)
        if not files:
            raise DataError(f"knowledge folder {shown} has no .txt or .md files; add passage files or name a "
                            f"JSONL of passages")
        digest, passages = hashlib.sha256(), []
        for f in files:
            name = f.relative_to(full).as_posix()
            raw = f.read_bytes()
            digest.update(name.encode() + b"\x1f" + raw + b"\x1e")
            passages += _paragraphs(raw, f"{shown}/{name}", name)
        return Knowledge(shown, passages, digest.hexdigest())
    if not full.is_file():
        raise DataError(f"knowledge source {shown} not found; give a JSONL of passages or a folder of .txt/.md "
                        f"files (paths are relative to the project root)")
    raw = full.read_bytes()
    if full.suffix in KNOWLEDGE_SUFFIXES:
        passages = _paragraphs(raw, shown, full.name)
    elif full.suffix == ".jsonl":
        passages = _jsonl_passages(raw, shown)
    else:
        raise DataError(f"knowledge source {shown}: expected a .jsonl file of passages, a .txt/.md file or a folder "
                        f"of them (got a {full.suffix or 'suffix-less'} file)")
    return Knowledge(shown, passages, hashlib.sha256(raw).hexdigest())


def _decoded(raw: bytes, shown: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"knowledge file {shown}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None


def _paragraphs(raw: bytes, shown: str, name: str) -> list[Passage]:
    """A text file's passages: one per paragraph (blank-line separated); ids `name`, or `name#2` when several."""
    parts = [p.strip() for p in _PARAGRAPH_BREAK.split(_decoded(raw, shown).replace("\r\n", "\n"))]
    parts = [p for p in parts if p]
    if not parts:
        raise DataError(f"knowledge file {shown} is empty; add text or delete it")
    if len(parts) == 1:
        return [Passage(name, parts[0])]
    return [Passage(f"{name}#{i}", text) for i, text in enumerate(parts, 1)]


def _jsonl_passages(raw: bytes, shown: str) -> list[Passage]:
    passages, first_line = [], {}
    for n, line in enumerate(_decoded(raw, shown).splitlines(), 1):
        if not line.strip():
            continue
        where = f"knowledge file {shown} line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg}); each line must be an object like "
                            f"{_EXAMPLE_LINE}") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            got = f"keys {', '.join(map(str, row))}" if isinstance(row, dict) else type(row).__name__
            raise DataError(f"{where}: needs a non-empty \"text\" string (got {got}); each line must be an object "
                            f"like {_EXAMPLE_LINE}")
        pid, title = row.get("id", str(n)), row.get("title", "")
        if not isinstance(pid, (str, int)) or isinstance(pid, bool) or not isinstance(title, str):
            raise DataError(f"{where}: \"id\" must be a string or an integer and \"title\" a string "
                            f"(got id {pid!r}, title {title!r})")
        pid = str(pid)
        if pid in first_line:
            raise DataError(f"{where}: id {pid!r} is already used on line {first_line[pid]}; give every passage its "
                            f"own id (or none: the line number is used)")
        first_line[pid] = n
        passages.append(Passage(pid, row["text"].strip(), title.strip()))
    if not passages:
        raise DataError(f"knowledge file {shown} has no passages; add lines like {_EXAMPLE_LINE}")
    return passages


class PassageIndex:
    """A knowledge source's passages and their L2-normalised embeddings (one float32 row each);
    `sha256` names the index (source content and embedding model)."""

    def __init__(self, knowledge: Knowledge, vectors: np.ndarray, sha256: str):
        self.knowledge, self.vectors, self.sha256 = knowledge, vectors, sha256
        self.passages = knowledge.passages

    def search(self, query: np.ndarray, k: int) -> list[Passage]:
        """The k passages most similar to one normalised query vector, most similar first."""
        similarity = self.vectors @ query
        order = np.argsort(-similarity, kind="stable")[:k]  # ties: the earlier passage first
        return [self.passages[i] for i in order]


def index_key(knowledge: Knowledge, model_id: str) -> str:
    return hashlib.sha256(json.dumps([INDEX_VERSION, knowledge.sha256, model_id]).encode()).hexdigest()


def build_index(knowledge: Knowledge, embed: Callable[[list[str]], object], model_id: str, folder: Path,
                log: Callable[[str], None] = lambda _: None) -> PassageIndex:
    """The knowledge's index: read from `folder` when this source and model were embedded before,
    else embedded now and saved there (each file written whole, then renamed into place)."""
    key = index_key(knowledge, model_id)
    vectors_file, meta_file = folder / f"{key}.npy", folder / f"{key}.json"
    ids = [p.id for p in knowledge.passages]
    try:
        meta = json.loads(meta_file.read_text())
        vectors = np.load(vectors_file)
        if meta["ids"] == ids and vectors.shape[0] == len(ids):
            log(f"retrieval index for {knowledge.path} ({len(ids)} passages) reused from {vectors_file}")
            return PassageIndex(knowledge, vectors, key)
    except (OSError, ValueError, KeyError):
        pass  # not built yet, or unreadable: build it
    log(f"retrieval: embedding {len(ids)} passages of {knowledge.path}")
    vectors = np.asarray(_as_numpy(embed([p.embedded for p in knowledge.passages])), dtype=np.float32)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(vectors_file, lambda f: np.save(f, vectors))
        # the JSON last: a reader finds it only once the vectors beside it are complete
        meta = {"source": knowledge.path, "source_sha256": knowledge.sha256, "model": model_id, "ids": ids}
        write_atomically(meta_file, lambda f: f.write(json.dumps(meta).encode()))
    except OSError as e:
        log(f"retrieval: index not cached ({e}); it is rebuilt next run")
    return PassageIndex(knowledge, vectors, key)


def _as_numpy(vectors) -> np.ndarray:
    return vectors.numpy() if hasattr(vectors, "numpy") else np.asarray(vectors)


class Retriever:
    """Input -> its top-k passages. Queries are embedded by `embed` (harness.prompting.embed.Embedder
    remembers every text, so a split embedded in one batch beforehand costs nothing here)."""

    def __init__(self, index: PassageIndex, embed: Callable[[list[str]], object]):
        self.index, self.embed = index, embed

    def __call__(self, sample: Sample, k: int) -> list[Passage]:
        query = _as_numpy(self.embed([sample.input_text]))[0].astype(np.float32)
        return self.index.search(query, k)

    def summary(self, k: int) -> dict:
        """What a run's config records instead of every row's passage ids."""
        return {"k": k, "passages": len(self.index.passages), "index_sha256": self.index.sha256}
