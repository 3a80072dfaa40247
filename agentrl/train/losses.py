"""RL objectives as objects: `objective.loss(batch) -> (scalar, metrics)` (issue #8 §2; k2.md §4.1).

Shape legend: B = sequences in the batch, T = token positions. Per-token log-probs are aligned with `token_ids`
(`logprobs_BT[:, t] = log π(token_t | tokens_<t)`), and `mask_BT` marks the tokens the policy generated.

`K2Objective` (default; K2 §3.2.3, inherited from k1.5 §2.3.2):

    L = mean_i ( r_i − r̄_g(i) − τ·( log π_θ(y_i|x) − log π_old(y_i|x) ) )²

with sequence log-probs (sum over generated tokens), r̄ the mean reward of sample i's group of K samples, and r,
r̄ and π_old constants. Its gradient is −2τ times k1.5's eq. 3, so at θ = θ_old it is REINFORCE with a mean-reward
baseline and the squared log-ratio acts as an ℓ2 trust region. Not specified by K2: τ, K and any length
normalisation; we default to the paper's plain sequence sum (`length_norm=False`).

`PPOClipObjective` (alternative): the clipped surrogate with group-relative advantages A_i = (r_i − r̄_g) / (σ_g + ε)
(GRPO; `scale_by_std=False` gives Dr.GRPO's unscaled form) and an optional KL penalty to a reference policy with
the k3 estimator exp(ref − θ) − (ref − θ) − 1 per token. Token losses are averaged over all generated tokens of the
batch (token-mean, as DAPO/Dr.GRPO), so long responses are not down-weighted per token.

Both accept an importance weight (truncated IS correction for the train/inference mismatch, see `logprobs.py`):
per sequence for K2 (its loss is per sequence), per token for PPO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from agentrl.errors import ConfigError


@dataclass
class RLBatch:
    """The tensors an objective needs. Everything except `logprobs_BT` is treated as a constant."""

    logprobs_BT: Tensor  # π_θ, requires grad
    old_logprobs_BT: Tensor  # π_old (the sampling policy as the trainer scores it)
    mask_BT: Tensor  # 1.0 on generated tokens
    rewards_B: Tensor
    group_B: Tensor  # long, group index per sample (the K samples of one prompt share it)
    ref_logprobs_BT: Tensor | None = None  # reference policy, for the PPO KL term
    is_weight_B: Tensor | None = None  # sequence-level importance weight (K2 objective)
    is_weight_BT: Tensor | None = None  # token-level importance weight (PPO objective)


def group_mean(values_B: Tensor, group_B: Tensor) -> Tensor:
    """Mean of `values_B` over each sample's group, broadcast back to [B]."""
    num_groups = int(group_B.max()) + 1 if group_B.numel() else 0
    sums_G = torch.zeros(num_groups, dtype=values_B.dtype, device=values_B.device).index_add_(
        0, group_B, values_B
    )
    counts_G = torch.zeros(num_groups, dtype=values_B.dtype, device=values_B.device).index_add_(
        0, group_B, torch.ones_like(values_B)
    )
    return (sums_G / counts_G.clamp(min=1))[group_B]


def group_std(values_B: Tensor, group_B: Tensor) -> Tensor:
    """Population standard deviation over each sample's group, broadcast back to [B]."""
    mean_B = group_mean(values_B, group_B)
    return group_mean((values_B - mean_B) ** 2, group_B).sqrt()


class Objective(Protocol):
    name: str
    reduction: (
        str  # "sample" (mean over sequences) or "token" (mean over generated tokens): how to accumulate
    )

    def loss(self, batch: RLBatch) -> tuple[Tensor, dict[str, float]]: ...


class K2Objective:
    """k1.5/K2 squared-residual policy objective with an ℓ2 trust region of strength τ."""

    name = "k2"
    reduction = "sample"

    def __init__(self, tau: float, length_norm: bool = False) -> None:
        if not tau > 0:
            raise ConfigError(f"objective.tau must be > 0 (K2's τ), got {tau}")
        self.tau = float(tau)
        self.length_norm = length_norm
        self.needs_reference = False

    def loss(self, batch: RLBatch) -> tuple[Tensor, dict[str, float]]:
        mask_BT = batch.mask_BT.to(batch.logprobs_BT.dtype)
        seq_lp_B = (batch.logprobs_BT * mask_BT).sum(-1)
        seq_old_B = (batch.old_logprobs_BT.detach() * mask_BT).sum(-1)
        log_ratio_B = seq_lp_B - seq_old_B
        if self.length_norm:
            log_ratio_B = log_ratio_B / mask_BT.sum(-1).clamp(min=1)
        rewards_B = batch.rewards_B.detach().to(seq_lp_B.dtype)
        advantage_B = rewards_B - group_mean(rewards_B, batch.group_B)
        residual_B = advantage_B - self.tau * log_ratio_B
        per_sample_B = residual_B**2
        if batch.is_weight_B is not None:
            per_sample_B = per_sample_B * batch.is_weight_B.detach()
        loss = per_sample_B.mean()
        metrics = {
            "loss/rl": float(loss.detach()),
            "loss/log_ratio_abs_mean": float(log_ratio_B.detach().abs().mean()),
            "loss/advantage_abs_mean": float(advantage_B.abs().mean()),
        }
        return loss, metrics


class PPOClipObjective:
    """PPO clipped surrogate with group-relative advantages and an optional k3 KL penalty to a reference."""

    name = "ppo_clip"
    reduction = "token"

    def __init__(
        self, clip_eps: float = 0.2, kl_coef: float = 0.0, scale_by_std: bool = True, eps: float = 1e-6
    ) -> None:
        if not 0 < clip_eps < 1:
            raise ConfigError(f"objective.clip_eps must be in (0, 1), got {clip_eps}")
        if kl_coef < 0:
            raise ConfigError(f"objective.kl_coef must be >= 0, got {kl_coef}")
        self.clip_eps = float(clip_eps)
        self.kl_coef = float(kl_coef)
        self.scale_by_std = scale_by_std
        self.eps = float(eps)
        self.needs_reference = self.kl_coef > 0

    def loss(self, batch: RLBatch) -> tuple[Tensor, dict[str, float]]:
        mask_BT = batch.mask_BT.to(batch.logprobs_BT.dtype)
        rewards_B = batch.rewards_B.detach().to(batch.logprobs_BT.dtype)
        advantage_B = rewards_B - group_mean(rewards_B, batch.group_B)
        if self.scale_by_std:
            advantage_B = advantage_B / (group_std(rewards_B, batch.group_B) + self.eps)
        log_ratio_BT = (batch.logprobs_BT - batch.old_logprobs_BT.detach()) * mask_BT
        ratio_BT = log_ratio_BT.exp()
        adv_BT = advantage_B[:, None]
        clipped_BT = ratio_BT.clamp(1 - self.clip_eps, 1 + self.clip_eps)
        token_loss_BT = -torch.minimum(ratio_BT * adv_BT, clipped_BT * adv_BT)
        if batch.is_weight_BT is not None:
            token_loss_BT = token_loss_BT * batch.is_weight_BT.detach()
        metrics: dict[str, float] = {}
        if self.kl_coef > 0:
            if batch.ref_logprobs_BT is None:
                raise ValueError("PPOClipObjective with kl_coef > 0 needs ref_logprobs_BT in the batch")
            delta_BT = (batch.ref_logprobs_BT.detach() - batch.logprobs_BT) * mask_BT
            kl_BT = delta_BT.exp() - delta_BT - 1
            token_loss_BT = token_loss_BT + self.kl_coef * kl_BT
            metrics["loss/kl_ref"] = float((kl_BT * mask_BT).sum().detach() / mask_BT.sum().clamp(min=1))
        num_tokens = mask_BT.sum().clamp(min=1)
        loss = (token_loss_BT * mask_BT).sum() / num_tokens
        was_clipped_BT = (ratio_BT - clipped_BT).abs() > 0
        metrics.update(
            {
                "loss/rl": float(loss.detach()),
                "loss/clip_frac": float((was_clipped_BT.float() * mask_BT).sum() / num_tokens),
                "loss/advantage_abs_mean": float(advantage_B.abs().mean()),
            }
        )
        return loss, metrics


class ObjectiveConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: Literal["k2", "ppo_clip"] = "k2"
    """Which objective: `k2` (K2/k1.5 squared residual, the default) or `ppo_clip` (GRPO-style PPO)."""
    tau: float = Field(0.05, gt=0)
    """K2 τ: strength of the ℓ2 trust region on the sequence log-ratio (K2 does not state its value)."""
    length_norm: bool = False
    """K2: divide the sequence log-ratio by the number of generated tokens (not in the paper)."""
    clip_eps: float = Field(0.2, gt=0, lt=1)
    """PPO: ratio clip range."""
    kl_coef: float = Field(0.0, ge=0)
    """PPO: weight of the k3 KL penalty to the reference policy (the initial weights); 0 disables."""
    scale_by_std: bool = True
    """PPO: divide group-relative advantages by the group's reward std (GRPO); False = Dr.GRPO."""

    def build(self) -> Objective:
        builders: dict[str, Any] = {
            "k2": lambda: K2Objective(tau=self.tau, length_norm=self.length_norm),
            "ppo_clip": lambda: PPOClipObjective(
                clip_eps=self.clip_eps, kl_coef=self.kl_coef, scale_by_std=self.scale_by_std
            ),
        }
        return builders[self.name]()
