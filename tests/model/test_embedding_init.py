"""`share_kind_directions`: values of one pool start close together, everything else is untouched."""

from __future__ import annotations

import pytest
import torch

from model.checkpoint import build_model
from model.embedding_init import share_kind_directions
from model.tokenizer import default_corpus, train_tokenizer

KINDS = {"name": ["Lonu", "Degu", "Kani", "Zuse"], "place": ["Zitas", "Hevis", "Sabi", "Rugo"]}


@pytest.fixture(scope="module")
def tokenizer():
    values = [v for vs in KINDS.values() for v in vs]
    return train_tokenizer(default_corpus(), vocab_size=512, isolate_spaces=True, entities=values)


def _mean_cosine(emb_VH: torch.Tensor, a: list[int], b: list[int]) -> float:
    unit = torch.nn.functional.normalize(emb_VH, dim=-1)
    sims = unit[a] @ unit[b].T
    if a == b:
        sims = sims[~torch.eye(len(a), dtype=torch.bool)]
    return float(sims.mean())


def test_one_kind_shares_a_direction_and_other_tokens_are_untouched(tokenizer):
    model = build_model("k2-tiny", tokenizer, seed=0, tie_word_embeddings=True)
    before_VH = model.get_input_embeddings().weight.detach().clone()
    changed = share_kind_directions(model, tokenizer, {**KINDS, "code:X": ["NOT-A-TOKEN"]}, weight=0.5)
    assert changed == {"name": 4, "place": 4, "code:X": 0}
    emb_VH = model.get_input_embeddings().weight.detach()
    vocab = tokenizer.get_vocab()
    names, places = ([vocab[v] for v in KINDS[k]] for k in ("name", "place"))
    assert _mean_cosine(before_VH, names, names) < 0.2  # random at init
    assert _mean_cosine(emb_VH, names, names) > 0.35 and _mean_cosine(emb_VH, places, places) > 0.35
    assert abs(_mean_cosine(emb_VH, names, places)) < 0.2  # two kinds get two directions
    others = [i for i in range(emb_VH.shape[0]) if i not in names + places]
    assert torch.equal(emb_VH[others], before_VH[others])
    # the norms keep the init's scale
    ratio = emb_VH[names].norm(dim=-1).mean() / before_VH[others].norm(dim=-1).mean()
    assert 0.6 < float(ratio) < 1.4
    # tied output embedding moves with it
    assert torch.equal(model.get_output_embeddings().weight, model.get_input_embeddings().weight)


def test_weight_out_of_range_is_rejected(tokenizer):
    model = build_model("k2-tiny", tokenizer, seed=0)
    with pytest.raises(ValueError, match="kind weight"):
        share_kind_directions(model, tokenizer, KINDS, weight=1.0)
