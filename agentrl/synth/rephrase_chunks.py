"""Split a long document into chunks for K2's chunk-wise autoregressive rephrasing.

K2 rewrites long documents piece by piece, each piece conditioned on the rewritten text before it, so a rewrite
never has to fit the whole document into one generation (k2.md §1 "data"). Chunks here are packed from whole
paragraphs up to `max_chars`; a longer paragraph is cut at sentence ends, a longer sentence at spaces, and a
longer word outright. Joining the chunks with blank lines gives back the document's text (modulo whitespace).
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _pieces(text: str, max_chars: int) -> list[str]:
    """Units of at most max_chars: sentences, or words of an over-long sentence, or slices of a long word."""
    out: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if len(sentence) <= max_chars:
            out.append(sentence)
            continue
        for word in sentence.split():
            out += [word[i : i + max_chars] for i in range(0, len(word), max_chars)]
    return [p for p in out if p]


def _pack(units: list[str], max_chars: int, sep: str) -> list[str]:
    chunks: list[str] = []
    cur = ""
    for u in units:
        if cur and len(cur) + len(sep) + len(u) > max_chars:
            chunks.append(cur)
            cur = u
        else:
            cur = f"{cur}{sep}{u}" if cur else u
    if cur:
        chunks.append(cur)
    return chunks


def split_chunks(text: str, max_chars: int) -> list[str]:
    """Chunks of at most `max_chars` characters, in document order; [] for blank text."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    chunks: list[str] = []
    group: list[str] = []  # consecutive paragraphs that fit, packed together
    for para in paragraphs:
        if len(para) > max_chars:  # an oversized paragraph stands alone, cut at sentence/word boundaries
            chunks += _pack(group, max_chars, "\n\n") + _pack(_pieces(para, max_chars), max_chars, " ")
            group = []
        else:
            group.append(para)
    chunks += _pack(group, max_chars, "\n\n")
    return chunks
