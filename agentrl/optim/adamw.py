"""AdamW as a pure function: the half of MuonClip that trains embeddings, lm_head, norms and 1-D parameters.

The math is torch.optim.AdamW's (decoupled weight decay `W *= 1 - lr * wd`, bias-corrected moments, eps added
after the bias-corrected sqrt), written with `torch._foreach_*` ops so one step is a handful of kernel launches.
Defaults follow Moonlight's internal AdamW (betas (0.9, 0.95), eps 1e-8, same lr and wd as Muon; k2.md §1.3).
"""

from __future__ import annotations

import torch
from torch import Tensor


def adamw_step_(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
) -> None:
    """One in-place AdamW step. `steps` holds each parameter's step count *after* this update (1 on the first)."""
    if not params:
        return
    beta1, beta2 = betas
    if weight_decay != 0:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    step_sizes = [-lr / (1 - beta1**step) for step in steps]
    bias2_sqrts = [(1 - beta2**step) ** 0.5 for step in steps]
    denoms = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denoms, bias2_sqrts)
    torch._foreach_add_(denoms, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denoms, step_sizes)
