"""Kind-structured initial embeddings for one-token entity values (the CPU demo's closed value pools).

A from-scratch policy copies a value from its context into a tool call with an attention head that must find
"the token of the kind this argument wants" (a place for `court`, a client name for `client`). At random
initialisation nothing in a value token's embedding says which kind it is, so each kind's retrieval pattern is
learned from that kind's own, rare, copy events. Here every token of one pool starts from a shared random
direction plus its own random part:

    e_t ← sqrt(1 − w) · e_t + sqrt(w) · k_kind,   k_kind ~ N(0, σ²), σ = the embedding's init std

so the norm statistics stay those of the init and the kind is linearly readable from step 0. Not in K2 (its
tokenizer has no value pools); a demo-scale choice, measured in BENCHMARKS.md ("Eighth session").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def share_kind_directions(
    model: Any, tokenizer: Any, kinds: Mapping[str, Sequence[str]], weight: float, seed: int = 0
) -> dict[str, int]:
    """Mix a per-kind random direction into the input embedding of each kind's tokens (the output embedding too
    when tied); values that are not single tokens of `tokenizer` are skipped. Returns tokens changed per kind."""
    import torch

    if not 0 <= weight < 1:
        raise ValueError(f"kind weight must be in [0, 1), got {weight}")
    emb_VH = model.get_input_embeddings().weight
    vocab = tokenizer.get_vocab()
    generator = torch.Generator().manual_seed(seed)
    std = float(emb_VH.detach().std())
    changed = {}
    with torch.no_grad():
        for kind in sorted(kinds):
            ids = sorted({vocab[v] for v in kinds[kind] if v in vocab})
            direction_H = torch.randn(emb_VH.shape[1], generator=generator) * std
            if ids and weight > 0:
                emb_VH[ids] = (1 - weight) ** 0.5 * emb_VH[ids] + weight**0.5 * direction_H.to(emb_VH.dtype)
            changed[kind] = len(ids)
    return changed
