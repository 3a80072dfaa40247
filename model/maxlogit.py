"""Per-head max attention logit tracking for QK-Clip (K2 §2.1; k2.md §1.4, §2.4).

S_max^h is the maximum *input to softmax* of head h over a step's batch: (q·k)·scaling over the positions that
reach the softmax (causal- and padding-masked entries excluded), with the exact scale the kernel applies (for
DeepseekV3 that is qk_head_dim^-0.5, times mscale² under YaRN).

We register an attention function `agentrl_maxlogit` through transformers' `AttentionInterface`. While a forward
is recorded it runs one of two strategies (`MaxLogitTracker(strategy=...)`):

- `"fused"`: build the logits once, per query block, and take both the per-head max and the softmax·V from that
  one tensor (the math that `sdpa`'s math backend runs, in fp32 for bf16/fp16 inputs as that backend does on
  CPU, with a safe softmax so fully masked rows give zeros as in sdpa). On CPU this is what sdpa runs for MLA anyway (its fused kernel needs equal q/k and v head dims; MLA has
  96 vs 32 in k2-tiny), so the max costs one extra read of a cache-resident block instead of a second QK^T pass.
  Outputs equal sdpa to float rounding (~1e-6), not bitwise.
- `"sdpa"`: call the same `sdpa_attention_forward` (bitwise-identical outputs) and compute the max in a separate
  fp32 QK^T pass. Kept for accelerators, where sdpa's flash/memory-efficient kernels never materialise the logits
  and a second pass beats giving them up.

`"auto"` (the default) picks `"fused"` on CPU and `"sdpa"` elsewhere. Forwards that are not recorded (no_grad
scoring and eval passes, unless the tracker asks for them) call `sdpa_attention_forward` unchanged, and switching
back to `sdpa` when tracking is off makes the disabled cost exactly zero. The mask function is registered under
the same name too: without it transformers silently drops causal masking (platform-notes.md).

Deviation: an additive float mask contributes only its -inf/min entries (as exclusions); finite additive biases are
not part of q·k and are not added to S_max.
"""

from __future__ import annotations

from typing import Any

import torch

ATTN_NAME = "agentrl_maxlogit"
STRATEGIES = ("auto", "fused", "sdpa")
_QUERY_CHUNK = 512
# Fused strategy: logits are built in query blocks of at most this many elements (b * H * rows * kv; 4 MiB in
# fp32), so a block stays cache-resident while it is masked, reduced, softmaxed and multiplied by V. Whole k2-tiny
# forward at 1 thread, 4 x 1024 tokens, vs sdpa: 1M-element blocks -21%, 4M -16%, one 16M block +2%; at 4 x 256
# tokens the whole 1M-element tensor is one block.
_FUSED_BLOCK_ELEMENTS = 1 << 20


def register_attention() -> None:
    """Register the tracking attention and its mask function with transformers (idempotent)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(ATTN_NAME, maxlogit_attention_forward)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)


def resolve_strategy(name: str, device: torch.device) -> str:
    """ "auto" -> "fused" on CPU, "sdpa" elsewhere; "fused" and "sdpa" pass through."""
    if name not in STRATEGIES:
        raise ValueError(f"max-logit strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "auto":
        return "fused" if device.type == "cpu" else "sdpa"
    return name


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


def _is_causal(module: Any, is_causal: bool | None) -> bool:
    return bool(is_causal if is_causal is not None else getattr(module, "is_causal", True))


def _accumulate(module: Any, head_max_H: torch.Tensor) -> None:
    prev = getattr(module, "_agentrl_smax", None)
    module._agentrl_smax = head_max_H if prev is None else torch.maximum(prev, head_max_H)


def _record(
    module: Any, query: torch.Tensor, key: torch.Tensor, attention_mask, scaling: float, is_causal
) -> None:
    """Strategy "sdpa": a separate fp32 QK^T pass, in query chunks, reduced to a per-head max."""
    # query [b, H, q, d], key [b, H, kv, d]
    q_len, kv_len = query.shape[2], key.shape[2]
    causal = _is_causal(module, is_causal)
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
    _accumulate(module, head_max_H)


def _query_rows(mask: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows [start, stop) of a [.., q, kv] mask; a mask broadcast over queries (q dim of 1) is used as is."""
    return mask if mask.shape[-2] == 1 else mask[..., start:stop, :]


def fused_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    with_max: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention with sdpa's semantics that also returns the per-head max logit [H] (fp32), from one QK^T.

    Returns (output [b, q, H, dv] as `sdpa_attention_forward` does, head_max [H]). Logits are built per query
    block; each block is masked in place, reduced to its per-head max, then fed to a softmax (fully masked rows
    give zeros, as in sdpa) and multiplied by V. Gradients flow as through eager attention. `with_max=False` skips
    the reduction (head_max stays -inf): the bench uses it to price the max alone.
    """
    from transformers.integrations.sdpa_attention import repeat_kv

    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out_dtype = query.dtype
    if out_dtype in (torch.bfloat16, torch.float16):
        # Reduced-precision inputs: logits, softmax and PV in fp32, as sdpa's CPU math backend does (bf16 logits
        # would put ~1e-1 errors on the output, 10x sdpa's).
        query, key, value = query.float(), key.float(), value.float()
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    batch, heads, q_len, _ = query.shape
    kv_len = key.shape[2]
    causal = _is_causal(module, is_causal)
    if attention_mask is None and causal and q_len > 1 and kv_len > q_len:
        key, value = key[:, :, :q_len], value[:, :, :q_len]  # as sdpa_attention_forward crops
        kv_len = q_len
    allowed = _allowed_mask(attention_mask, q_len, kv_len, causal, query.device)
    blocked = None if allowed is None else ~allowed
    additive = attention_mask if attention_mask is not None and attention_mask.dtype != torch.bool else None
    # A query row with no allowed key must give zeros (sdpa's safe softmax). Only a given mask can leave one (the
    # causal mask always allows the diagonal), and checking the [b, 1, q, kv] mask once is much cheaper than
    # `_safe_softmax` on every [b, H, q, kv] block (3.5x a plain softmax on k2-tiny's blocks).
    empty_rows = blocked is not None and attention_mask is not None and bool(blocked.all(dim=-1).any())
    rows = max(1, _FUSED_BLOCK_ELEMENTS // max(1, batch * heads * kv_len))
    key_T = key.transpose(-1, -2)
    # Scale the [b, H, q, d] queries rather than the [b, H, q, kv] logits: one pass over the smaller tensor.
    query = query * scale
    head_max_H = torch.full((heads,), float("-inf"), dtype=torch.float32, device=query.device)
    outs = []
    for start in range(0, q_len, rows):
        stop = min(start + rows, q_len)
        logits = torch.matmul(query[:, :, start:stop], key_T)
        if blocked is not None:  # in place: matmul's backward needs its inputs, not its output
            logits.masked_fill_(_query_rows(blocked, start, stop), float("-inf"))
        if with_max:
            head_max_H = torch.maximum(head_max_H, logits.detach().amax(dim=(0, 2, 3)).float())
        if additive is not None:
            logits = logits + _query_rows(additive, start, stop)
        probs = torch.ops.aten._safe_softmax(logits, -1) if empty_rows else torch.softmax(logits, -1)
        if dropout > 0.0:
            probs = torch.nn.functional.dropout(probs, p=dropout, training=True)
        outs.append(torch.matmul(probs, value))
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return out.transpose(1, 2).to(out_dtype).contiguous(), head_max_H


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

    # Only training forwards count toward a step's S_max (K2: "during the forward pass of the same step"); scoring
    # and eval passes under no_grad are skipped unless the tracker asks for them.
    if torch.is_grad_enabled() or getattr(module, "_agentrl_track_no_grad", False):
        strategy = resolve_strategy(getattr(module, "_agentrl_strategy", "auto"), query.device)
        # The fused path implements plain masked attention; anything sdpa_attention_forward adds (paged caches,
        # position biases, attention-weight outputs) goes through sdpa itself.
        plain = not any(kwargs.get(k) is not None for k in ("cache", "position_bias")) and not kwargs.get(
            "output_attentions", False
        )
        if strategy == "fused" and plain:
            out, head_max_H = fused_attention_forward(
                module,
                query,
                key,
                value,
                attention_mask,
                dropout=dropout,
                scaling=scaling,
                is_causal=is_causal,
            )
            _accumulate(module, head_max_H)
            return out, None
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
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
    `strategy` picks how recorded forwards compute the max (module docstring): "auto", "fused" or "sdpa".
    """

    def __init__(self, model: torch.nn.Module, track_no_grad: bool = False, strategy: str = "auto") -> None:
        resolve_strategy(strategy, torch.device("cpu"))  # validates the name
        self.model = model
        self.attn_modules = [m for m in model.modules() if type(m).__name__.endswith("Attention")]
        if not self.attn_modules:
            raise ValueError("model has no attention modules to track")
        self.track_no_grad = track_no_grad
        self.strategy = strategy
        self._configure_modules()
        self.enabled = False

    def _configure_modules(self) -> None:
        for module in self.attn_modules:
            module._agentrl_track_no_grad = self.track_no_grad
            module._agentrl_strategy = self.strategy

    def enable(self) -> None:
        self._configure_modules()  # this tracker's settings win if another tracker touched the same model
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
