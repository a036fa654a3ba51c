"""Near duplicates: pairs of texts whose 5-byte-shingle Jaccard similarity reaches a threshold.

MinHash signatures and LSH banding find candidate pairs in about linear time; each candidate is
then verified with the exact Jaccard similarity, so no pair below the threshold is reported.
"""
from __future__ import annotations

import numpy as np

SHINGLE = 5          # bytes per shingle: short enough for headlines, long enough to be selective
BANDS, ROWS = 16, 4  # 64 MinHash values; a pair of similarity s becomes a candidate with probability
                     # 1-(1-s^4)^16: 0.9998 at s=0.8, 0.987 at 0.7, 0.64 at 0.5 (then verified exactly)
MAX_BUCKET = 64      # a band bucket bigger than this pairs each member with its next 64 only (sub-quadratic)
TEXT_BYTES = 1 << 22  # text shingled at a time: 4 MiB -> 32 MiB of 64-bit shingles
HASH_BLOCK = 1 << 15  # shingles hashed at a time: 32k x 64 hashes x 8 bytes = 16 MiB of scratch
_RNG = np.random.default_rng(0x5EED)
_MUL = _RNG.integers(1, 2**63, BANDS * ROWS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd multipliers
_ADD = _RNG.integers(0, 2**63, BANDS * ROWS, dtype=np.uint64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads 40-bit shingles over 64 bits (uint64 arithmetic wraps)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _signatures(encoded: list[bytes]) -> np.ndarray:
    """MinHash signature (uint32 x 64) of each text's set of 5-byte shingles."""
    sig = np.empty((len(encoded), BANDS * ROWS), np.uint32)
    i = 0
    while i < len(encoded):  # texts in slices of about TEXT_BYTES, to bound memory on big files
        j, size = i, 0
        while j < len(encoded) and (j == i or size + len(encoded[j]) <= TEXT_BYTES):
            size += len(encoded[j])
            j += 1
        _slice_signatures(encoded[i:j], sig[i:j])
        i = j
    return sig


def _slice_signatures(texts: list[bytes], out: np.ndarray) -> None:
    pad = bytes(SHINGLE - 1)  # zeros between texts: a shingle never spans two texts, a short text is zero-padded
    lens = np.fromiter(map(len, texts), np.int64, len(texts))
    buf = np.frombuffer(pad.join(texts) + bytes(2 * SHINGLE), np.uint8).astype(np.uint64)
    starts = np.cumsum(lens + SHINGLE - 1) - (lens + SHINGLE - 1)
    counts = np.maximum(lens - SHINGLE + 1, 1)  # a text shorter than a shingle is one (zero-padded) shingle
    offsets = np.cumsum(counts) - counts
    owner = np.repeat(np.arange(len(texts)), counts)
    pos = np.arange(counts.sum()) - offsets[owner] + starts[owner]
    window = buf[:len(buf) - SHINGLE].copy()
    for k in range(1, SHINGLE):  # the 5 bytes from each position, as one 40-bit integer
        window <<= np.uint64(8)
        window |= buf[k:len(buf) - SHINGLE + k]
    mixed = _mix(window[pos])
    total = len(mixed)
    # hash in blocks of whole texts, about HASH_BLOCK shingles each
    firsts = np.unique(np.searchsorted(offsets, np.arange(0, total, HASH_BLOCK), side="right") - 1)
    bounds = list(firsts) + [len(texts)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        lo, hi = offsets[a], offsets[b] if b < len(texts) else total
        hashed = np.multiply.outer(_MUL, mixed[lo:hi])  # (64, shingles): hash-major keeps reduceat fast
        hashed += _ADD[:, None]
        hashed >>= np.uint64(32)  # multiply-add-shift: the top 32 bits are the well-mixed ones
        out[a:b] = np.minimum.reduceat(hashed, offsets[a:b] - lo, axis=1).T


def _shingle_set(text: bytes) -> set[bytes]:
    return {text[i:i + SHINGLE] for i in range(max(1, len(text) - SHINGLE + 1))}


def _candidates(sig: np.ndarray) -> np.ndarray:
    """Pairs (i < j) that share at least one LSH band, as an (n, 2) array."""
    n = len(sig)
    wide = sig.astype(np.uint64)
    found = []
    for band in range(BANDS):
        c = wide[:, band * ROWS:(band + 1) * ROWS]
        high, low = (c[:, 0] << np.uint64(32)) | c[:, 1], (c[:, 2] << np.uint64(32)) | c[:, 3]
        key = high * np.uint64(0x9E3779B97F4A7C15) ^ low  # equal bands, equal keys; collisions are verified away
        order = np.argsort(key, kind="stable")
        sk = key[order]
        bounds = np.concatenate(([0], np.flatnonzero(sk[1:] != sk[:-1]) + 1, [n]))
        sizes = np.diff(bounds)
        pairs2 = bounds[:-1][sizes == 2]
        found.append(np.stack([order[pairs2], order[pairs2 + 1]], axis=1))
        for start, size in zip(bounds[:-1][sizes > 2], sizes[sizes > 2]):
            members = np.sort(order[start:start + size])
            if size <= MAX_BUCKET:
                a, b = np.triu_indices(size, 1)
            else:
                a = np.repeat(np.arange(size), MAX_BUCKET)
                b = a + np.tile(np.arange(1, MAX_BUCKET + 1), size)
                a, b = a[b < size], b[b < size]
            found.append(np.stack([members[a], members[b]], axis=1))
    pairs = np.concatenate(found) if found else np.empty((0, 2), np.int64)
    pairs = np.sort(pairs, axis=1)
    return np.unique(pairs[:, 0].astype(np.int64) * n + pairs[:, 1], return_inverse=False)


def near_pairs(texts: list[str], threshold: float, side: list[int] | None = None) -> list[tuple[int, int, float]]:
    """(i, j, similarity) with i < j for texts whose 5-byte-shingle Jaccard similarity >= threshold.

    With `side` (one number per text), only pairs across sides are kept.
    """
    if len(texts) < 2:
        return []
    encoded = [t.encode() for t in texts]
    sig = _signatures(encoded)
    codes = _candidates(sig)
    n = len(texts)
    a, b = codes // n, codes % n
    if side is not None:
        side_arr = np.asarray(side)
        keep = side_arr[a] != side_arr[b]
        a, b = a[keep], b[keep]
    # The signature estimate has a standard deviation of sqrt(s(1-s)/64) <= 0.0625; 0.15 below the
    # threshold keeps the true matches and drops the bulk of chance collisions before the exact check.
    keep = np.zeros(len(a), bool)
    for lo in range(0, len(a), 1 << 18):
        est = (sig[a[lo:lo + (1 << 18)]] == sig[b[lo:lo + (1 << 18)]]).mean(axis=1)
        keep[lo:lo + (1 << 18)] = est >= threshold - 0.15
    sets: dict[int, set[bytes]] = {}
    out = []
    for i, j in zip(a[keep].tolist(), b[keep].tolist()):
        si = sets.get(i) or sets.setdefault(i, _shingle_set(encoded[i]))
        sj = sets.get(j) or sets.setdefault(j, _shingle_set(encoded[j]))
        inter = len(si & sj)
        similarity = inter / (len(si) + len(sj) - inter)
        if similarity >= threshold:
            out.append((i, j, similarity))
    return out
