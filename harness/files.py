"""Writing files so that a reader never sees half of one, and hashing them: one place for both.

Every file the harness writes for others to read (report pages, retrieval indexes, converted
models, exports) goes through `write_atomically`: a temporary file beside the target,
flushed to disk, then renamed over it, so a crash leaves the old file or the new one.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

CHUNK = 1 << 20  # hash 1 MiB at a time: model files are hundreds of MB


def write_atomically(path: str | Path, write: Callable[[BinaryIO], None], *, mode: int = 0o644) -> None:
    """Call write(f) on a temporary binary file beside `path`, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | Path, text: str) -> None:
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def sha256_files(files: Iterable[Path]) -> str:
    """One sha256 over the files' bytes, in the order given."""
    h = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    return sha256_files([Path(path)])


def adapter_sha256(folder: str | Path) -> str:
    """The identity of a LoRA adapter: sha256 over its folder's safetensors files, by name."""
    return sha256_files(sorted(Path(folder).glob("*.safetensors")))
