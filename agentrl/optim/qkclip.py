"""QK-Clip per head, applied after each optimizer step (K2 §2.1, Algorithm 1 lines 8-17; k2.md §1.4).

    S_max^h = max pre-softmax logit of head h over the step's forward passes (MaxLogitTracker, running max over
              micro-batches), then all-reduce(MAX) over ranks when torch.distributed is initialised
    gamma_h = tau / S_max^h   for heads with S_max^h > tau (default tau = 100); other heads are left alone
    q_nope rows *= sqrt(gamma_h), q_rope rows *= gamma_h, k_nope rows of kv_b_proj *= sqrt(gamma_h)

The clip runs on the *updated* weights W_t with S_max measured on W_{t-1} during the same step's forward, as K2
does; it never changes the current step's forward or backward. The shared rotary key, value rows and latent
projections are never touched (row map: `model/qkclip_rows.py`). After applying, the tracker is reset for the
next step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agentrl.errors import ConfigError
from model.maxlogit import MaxLogitTracker
from model.qkclip_rows import MLAHeadDims, mla_dims, qkclip_row_scales, query_weight


class QKClip:
    """Reads S_max from a `MaxLogitTracker`, reduces it, clips the heads above tau and returns per-step stats."""

    def __init__(self, tracker: MaxLogitTracker, tau: float = 100.0, process_group=None) -> None:
        if not tau > 0:
            raise ConfigError(f"QK-Clip threshold tau must be > 0, got {tau}")
        self.tracker = tracker
        self.tau = float(tau)
        self.process_group = process_group
        self.dims: list[MLAHeadDims] = [
            mla_dims(attn, where=f"attention layer {i}") for i, attn in enumerate(tracker.attn_modules)
        ]

    def reduced_smax(self) -> Tensor:
        """[layers, heads] S_max since the last reset, max-reduced over ranks when distributed."""
        smax_LH = self.tracker.smax()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # NCCL reduces device tensors only; the weights' device works for every backend.
            device = query_weight(self.tracker.attn_modules[0]).device
            smax_LH = smax_LH.to(device)
            torch.distributed.all_reduce(smax_LH, op=torch.distributed.ReduceOp.MAX, group=self.process_group)
            smax_LH = smax_LH.cpu()
        return smax_LH

    @torch.no_grad()
    def apply(self, smax_LH: Tensor | None = None) -> dict[str, float | int | list[float]]:
        """Clip every head with S_max > tau, reset the tracker, and return stats.

        Stats: `qk_clip/heads_clipped` (this step), `qk_clip/max_logit` (over all layers) and
        `qk_clip/max_logit_per_layer` (S_max before clipping; -inf where no forward ran since the last reset).
        """
        if smax_LH is None:
            smax_LH = self.reduced_smax()
        if smax_LH.shape != (len(self.dims), self.dims[0].num_heads):
            raise ValueError(f"S_max must have shape ({len(self.dims)}, heads), got {tuple(smax_LH.shape)}")
        clipped_total = 0
        for attn, dims, smax_H in zip(self.tracker.attn_modules, self.dims, smax_LH, strict=True):
            clip_H = smax_H > self.tau
            if not bool(clip_H.any()):
                continue
            clipped_total += int(clip_H.sum())
            gamma_H = torch.where(
                clip_H, self.tau / smax_H.double(), torch.ones_like(smax_H, dtype=torch.float64)
            )
            q_scale, kv_scale = qkclip_row_scales(gamma_H, dims)
            q_weight = query_weight(attn)
            kv_weight = attn.kv_b_proj.weight
            q_weight.mul_(q_scale.to(q_weight.device, torch.float32)[:, None])
            kv_weight.mul_(kv_scale.to(kv_weight.device, torch.float32)[:, None])
        self.tracker.reset()
        per_layer = [float(v) for v in smax_LH.amax(dim=1)]
        return {
            "qk_clip/heads_clipped": clipped_total,
            "qk_clip/max_logit": max(per_layer),
            "qk_clip/max_logit_per_layer": per_layer,
        }
