"""`MuonClipConfig`: the optimizer's typed config (wired to a model by `agentrl.optim.build.build_muonclip`).

Defaults are K2's where K2 states them (lr 2e-4 peak, weight decay 0.1, tau 100, NS5 coefficients) and Moonlight's
where K2 is silent (Nesterov momentum 0.95, AdamW betas (0.9, 0.95) and eps 1e-8 with Muon's lr and wd, bias
update rate 1e-3). See docs/optim.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agentrl.optim.muon import NS_COEFFICIENTS


class MuonClipConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    lr: float = Field(2e-4, ge=0)
    """Learning rate of both halves (Muon's update is RMS-matched to AdamW, so one lr serves both)."""
    weight_decay: float = Field(0.1, ge=0)
    """Decoupled weight decay, applied as W *= 1 - lr * wd (plain lr, K2 Algorithm 1)."""
    momentum: float = Field(0.95, ge=0, lt=1)
    """Muon momentum mu (Moonlight; K2 does not state it)."""
    nesterov: bool = True
    """Feed Newton-Schulz the Nesterov look-ahead instead of the momentum buffer (Moonlight)."""
    ns_steps: int = Field(5, ge=1, le=20)
    """Newton-Schulz iterations."""
    ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS
    """Quintic Newton-Schulz coefficients (a, b, c)."""
    ns_dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """Newton-Schulz compute dtype; auto = bf16 on CUDA (K2), fp32 on CPU (no fast bf16 matmul there)."""
    adamw_lr: float | None = Field(None, ge=0)
    """AdamW lr; None = `lr`."""
    adamw_weight_decay: float | None = Field(None, ge=0)
    """AdamW weight decay; None = `weight_decay` (Moonlight: decaying RMSNorm gains mattered for stability)."""
    adamw_betas: tuple[float, float] = (0.9, 0.95)
    """AdamW (beta1, beta2)."""
    adamw_eps: float = Field(1e-8, gt=0)
    """AdamW epsilon."""
    router: Literal["muon", "adamw"] = "muon"
    """Which half trains the MoE router weight `mlp.gate.weight` (K2 does not say; Moonlight's rule is Muon)."""
    qk_clip: bool = True
    """Apply QK-Clip after every step (needs an MLA model)."""
    qk_clip_tau: float = Field(100.0, gt=0)
    """QK-Clip threshold tau on the per-head max pre-softmax logit (K2: 100)."""
    bias_update_rate: float = Field(1e-3, ge=0)
    """Aux-loss-free balancing rate u for `e_score_correction_bias`; 0 disables."""
