"""Exact and near-duplicate removal for trajectories (MinHash + LSH over word 3-grams of the dialog).

Exact duplicates share the SHA-1 of their canonical messages JSON. Near duplicates have an estimated Jaccard
similarity of word 3-gram sets >= `threshold`; candidates come from LSH banding so the cost stays linear. Two
trajectories of the same template with different entity values are *not* near duplicates (the values recur in
most turns), which is what we want: the values are the learning signal. Shingle hashes use crc32, so the result
does not depend on PYTHONHASHSEED.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

_WORD = re.compile(r"\w+|[^\w\s]")
_MASK32 = np.uint64(0xFFFFFFFF)


def dialog_text(messages: Sequence[dict[str, Any]]) -> str:
    parts = []
    for m in messages:
        parts.append(str(m.get("content") or ""))
        for c in m.get("tool_calls") or []:
            parts.append(f"{c['function']['name']} {c['function']['arguments']}")
    return "\n".join(parts)


def exact_key(messages: Sequence[dict[str, Any]]) -> str:
    return hashlib.sha1(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class MinHasher:
    def __init__(self, num_perm: int = 64, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
        self.b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)

    def signature(self, text: str) -> np.ndarray:
        words = _WORD.findall(text.lower())
        grams = {" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))}
        h = np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint64, count=len(grams))
        # multiply-shift hashing: wraps mod 2**64, keep the high 32 bits
        return (((h[:, None] * self.a[None, :] + self.b[None, :]) >> np.uint64(32)) & _MASK32).min(axis=0)


class Deduper:
    """Streaming dedup: `add(record)` returns False for an exact or near duplicate of an earlier record."""

    def __init__(
        self, *, near: bool = True, threshold: float = 0.9, num_perm: int = 64, bands: int = 16
    ) -> None:
        self.threshold = threshold
        self.hasher = MinHasher(num_perm) if near else None
        self.rows = max(1, num_perm // bands)
        self.nbands = num_perm // self.rows
        self.seen: set[str] = set()
        self.buckets: dict[tuple[int, bytes], list[int]] = {}
        self.sigs: list[np.ndarray] = []
        self.counts = {"exact_duplicates": 0, "near_duplicates": 0}

    def add(self, record: dict[str, Any]) -> bool:
        key = exact_key(record["messages"])
        if key in self.seen:
            self.counts["exact_duplicates"] += 1
            return False
        self.seen.add(key)
        if self.hasher is None:
            return True
        sig = self.hasher.signature(dialog_text(record["messages"]))
        bands = [(b, sig[b * self.rows : (b + 1) * self.rows].tobytes()) for b in range(self.nbands)]
        cands = {j for band in bands for j in self.buckets.get(band, ())}
        if any(float(np.mean(self.sigs[j] == sig)) >= self.threshold for j in cands):
            self.counts["near_duplicates"] += 1
            return False
        self.sigs.append(sig)
        for band in bands:
            self.buckets.setdefault(band, []).append(len(self.sigs) - 1)
        return True


def dedup(records: Sequence[dict[str, Any]], **kw: Any) -> tuple[list[int], dict[str, int]]:
    """Indices of the records to keep (first occurrence wins) and the counts of removed duplicates."""
    d = Deduper(**kw)
    keep = [i for i, r in enumerate(records) if d.add(r)]
    return keep, d.counts
