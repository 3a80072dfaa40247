"""Which weight rows QK-Clip scales in Multi-head Latent Attention (K2 §2.1, Algorithm 1; k2.md §1.4, §2.3).

HF DeepseekV3 computes, per head h (nope = qk_nope_head_dim, rope = qk_rope_head_dim, v = v_head_dim):

    q = q_b_proj(...).view(H, nope + rope)        -> rows [h*(nope+rope), +nope) are q^C, the next rope rows q^R
    kv = kv_b_proj(...).view(H, nope + v)         -> rows [h*(nope+v), +nope) are k^C, the next v rows are values
    k^R = last rope rows of kv_a_proj_with_mqa    -> one rotary key *shared by all heads*

Every logit of head h is q^C.k^C + q^R.k^R (times the softmax scale). RMSNorm sits before these projections and
RoPE is linear, so scaling q^C and k^C rows by sqrt(gamma) and q^R rows by gamma scales every logit of head h by
exactly gamma, without touching the shared k^R, the values or the latent projections.

This module is pure: it maps per-head gammas to per-row scale vectors (1.0 on untouched rows, so multiplying by
them leaves those rows bitwise unchanged). The applier that reads S_max and all-reduces it lives in
`agentrl/optim/qkclip.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from agentrl.errors import ConfigError


@dataclass(frozen=True)
class MLAHeadDims:
    num_heads: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    @property
    def q_rows_per_head(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def kv_rows_per_head(self) -> int:
        return self.qk_nope_head_dim + self.v_head_dim


def mla_dims(attn: torch.nn.Module, where: str = "attention module") -> MLAHeadDims:
    """Head dims of an MLA attention module; a clear error if the module is not MLA."""
    missing = [name for name in ("kv_b_proj", "kv_a_proj_with_mqa") if getattr(attn, name, None) is None]
    if getattr(attn, "q_b_proj", None) is None and getattr(attn, "q_proj", None) is None:
        missing.append("q_b_proj/q_proj")
    for name in ("num_heads", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
        if not isinstance(getattr(attn, name, None), int):
            missing.append(name)
    if missing:
        raise ConfigError(
            f"QK-Clip needs Multi-head Latent Attention, but {where} ({type(attn).__name__}) has no "
            f"{', '.join(missing)}; disable QK-Clip for this model"
        )
    return MLAHeadDims(attn.num_heads, attn.qk_nope_head_dim, attn.qk_rope_head_dim, attn.v_head_dim)


def query_weight(attn: torch.nn.Module) -> Tensor:
    """The [H*(nope+rope), in] query up-projection: q_b_proj, or q_proj when q_lora_rank is None."""
    proj = attn.q_b_proj if getattr(attn, "q_b_proj", None) is not None else attn.q_proj
    return proj.weight


def head_rows(dims: MLAHeadDims, head: int) -> dict[str, range]:
    """Row ranges of one head: q_nope and q_rope in the query weight, k_nope and v in kv_b_proj."""
    q0, kv0 = head * dims.q_rows_per_head, head * dims.kv_rows_per_head
    return {
        "q_nope": range(q0, q0 + dims.qk_nope_head_dim),
        "q_rope": range(q0 + dims.qk_nope_head_dim, q0 + dims.q_rows_per_head),
        "k_nope": range(kv0, kv0 + dims.qk_nope_head_dim),
        "v": range(kv0 + dims.qk_nope_head_dim, kv0 + dims.kv_rows_per_head),
    }


def qkclip_row_scales(gamma_H: Tensor, dims: MLAHeadDims) -> tuple[Tensor, Tensor]:
    """Per-row multipliers (query weight rows, kv_b_proj rows) for per-head gammas in (0, 1].

    q_nope rows get sqrt(gamma), q_rope rows gamma, k_nope rows sqrt(gamma), value rows 1.
    """
    if gamma_H.shape != (dims.num_heads,):
        raise ValueError(f"gamma must have shape ({dims.num_heads},), got {tuple(gamma_H.shape)}")
    sqrt_H1 = gamma_H.sqrt()[:, None]
    gamma_H1 = gamma_H[:, None]
    ones_v = torch.ones(dims.num_heads, dims.v_head_dim, dtype=gamma_H.dtype, device=gamma_H.device)
    q_scale_HQ = torch.cat(
        [sqrt_H1.expand(-1, dims.qk_nope_head_dim), gamma_H1.expand(-1, dims.qk_rope_head_dim)], dim=1
    )
    kv_scale_HK = torch.cat([sqrt_H1.expand(-1, dims.qk_nope_head_dim), ones_v], dim=1)
    return q_scale_HQ.reshape(-1), kv_scale_HK.reshape(-1)
