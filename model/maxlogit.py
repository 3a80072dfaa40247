"""Per-head max attention logit tracking for QK-Clip (K2 §2.1; k2.md §1.4, §2.4).

S_max^h is the maximum *input to softmax* of head h over a step's batch: (q·k)·scaling over the positions that
reach the softmax (causal- and padding-masked entries excluded), with the exact scale the kernel applies (for
DeepseekV3 that is qk_head_dim^-0.5, times mscale² under YaRN).

We register an attention function `agentrl_maxlogit` through transformers' `AttentionInterface`. It returns
exactly what `sdpa` returns (it calls the same `sdpa_attention_forward`) and, while tracking is enabled, records a
running per-head maximum in fp32 under `torch.no_grad()`. Switching back to `sdpa` when tracking is off makes the
disabled cost exactly zero. The mask function is registered under the same name too: without it transformers
silently drops causal masking (platform-notes.md).

Deviation: an additive float mask contributes only its -inf/min entries (as exclusions); finite additive biases are
not part of q·k and are not added to S_max.
"""

from __future__ import annotations

from typing import Any

import torch

ATTN_NAME = "agentrl_maxlogit"
_QUERY_CHUNK = 512


def register_attention() -> None:
    """Register the tracking attention and its mask function with transformers (idempotent)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(ATTN_NAME, maxlogit_attention_forward)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)


def _allowed_mask(
    attention_mask: torch.Tensor | None, q_len: int, kv_len: int, is_causal: bool, device: torch.device
) -> torch.Tensor | None:
    """Boolean [b|1, 1|H, q, kv] mask of logits that reach the softmax, mirroring sdpa_attention_forward."""
    if attention_mask is None:
        if is_causal and q_len > 1:
            # sdpa's is_causal aligns upper-left; transformers crops keys to q_len in that case.
            idx_q = torch.arange(q_len, device=device)[:, None]
            idx_k = torch.arange(kv_len, device=device)[None, :]
            return (idx_q >= idx_k).view(1, 1, q_len, kv_len)
        return None
    if attention_mask.dtype == torch.bool:
        return attention_mask
    return attention_mask > torch.finfo(attention_mask.dtype).min / 2


def _record(
    module: Any, query: torch.Tensor, key: torch.Tensor, attention_mask, scaling: float, is_causal
) -> None:
    # query [b, H, q, d], key [b, H, kv, d]
    q_len, kv_len = query.shape[2], key.shape[2]
    causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", True))
    if attention_mask is None and causal and q_len > 1 and kv_len > q_len:
        key = key[:, :, :q_len]
        kv_len = q_len
    allowed = _allowed_mask(attention_mask, q_len, kv_len, causal, query.device)
    num_heads = query.shape[1]
    head_max_H = torch.full((num_heads,), float("-inf"), dtype=torch.float32, device=query.device)
    key_f = key.float()
    for start in range(0, q_len, _QUERY_CHUNK):
        stop = min(start + _QUERY_CHUNK, q_len)
        dots_bHqk = torch.matmul(query[:, :, start:stop].float(), key_f.transpose(-1, -2))
        if allowed is not None:
            dots_bHqk.masked_fill_(~allowed[..., start:stop, :], float("-inf"))
        # scaling > 0, so max(scale * x) = scale * max(x): scale the [H] maxima, not the whole score tensor.
        head_max_H = torch.maximum(head_max_H, dots_bHqk.amax(dim=(0, 2, 3)) * scaling)
    prev = getattr(module, "_agentrl_smax", None)
    module._agentrl_smax = head_max_H if prev is None else torch.maximum(prev, head_max_H)


def maxlogit_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """`sdpa` attention that also records the per-head max pre-softmax logit on `module._agentrl_smax`."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    # Only training forwards count toward a step's S_max (K2: "during the forward pass of the same step"); scoring
    # and eval passes under no_grad are skipped unless the tracker asks for them.
    if torch.is_grad_enabled() or getattr(module, "_agentrl_track_no_grad", False):
        with torch.no_grad():
            _record(module, query.detach(), key.detach(), attention_mask, scale, is_causal)
    return sdpa_attention_forward(
        module,
        query,
        key,
        value,
        attention_mask,
        dropout=dropout,
        scaling=scaling,
        is_causal=is_causal,
        **kwargs,
    )


class MaxLogitTracker:
    """Switches a DeepseekV3 model between `sdpa` and the tracking attention, and reads S_max per layer.

    Usage: `tracker = MaxLogitTracker(model); tracker.enable(); ...forward passes...; smax_LH = tracker.smax()`.
    """

    def __init__(self, model: torch.nn.Module, track_no_grad: bool = False) -> None:
        self.model = model
        self.attn_modules = [m for m in model.modules() if type(m).__name__.endswith("Attention")]
        if not self.attn_modules:
            raise ValueError("model has no attention modules to track")
        for module in self.attn_modules:
            module._agentrl_track_no_grad = track_no_grad
        self.enabled = False

    def enable(self) -> None:
        register_attention()
        self.model.set_attn_implementation(ATTN_NAME)
        self.enabled = True

    def disable(self) -> None:
        self.model.set_attn_implementation("sdpa")
        self.enabled = False

    def reset(self) -> None:
        for module in self.attn_modules:
            module._agentrl_smax = None

    def smax(self) -> torch.Tensor:
        """[num_layers, num_heads] fp32 running max since the last reset (-inf where nothing was recorded)."""
        rows = []
        for module in self.attn_modules:
            value = getattr(module, "_agentrl_smax", None)
            if value is None:
                value = torch.full((module.num_heads,), float("-inf"))
            rows.append(value.detach().float().cpu())
        return torch.stack(rows)

    def set_smax(self, smax_LH: torch.Tensor) -> None:
        """Overwrite the recorded maxima, e.g. after an all-reduce(MAX) across ranks."""
        for module, row in zip(self.attn_modules, smax_LH, strict=True):
            module._agentrl_smax = row.to(torch.float32)
