"""Wire a `MuonClipConfig` to a model: param groups, QK-Clip on a max-logit tracker, aux-free balancing."""

from __future__ import annotations

import torch

from agentrl.optim.balance import ExpertLoadBalancer, find_routers
from agentrl.optim.config import MuonClipConfig
from agentrl.optim.groups import build_param_groups, check_coverage
from agentrl.optim.optimizer import MuonClip
from agentrl.optim.qkclip import QKClip
from model.maxlogit import MaxLogitTracker


def build_muonclip(
    model: torch.nn.Module, config: MuonClipConfig, tracker: MaxLogitTracker | None = None
) -> MuonClip:
    """MuonClip over every trainable parameter of `model`, with QK-Clip and aux-free balancing per `config`.

    With `config.qk_clip`, a `MaxLogitTracker` (given, or made here) is enabled on the model so every forward
    records S_max. Balancing is set up when `bias_update_rate > 0` and the model has MoE routers.
    """
    groups = build_param_groups(
        model, router=config.router, adamw_lr=config.adamw_lr, adamw_weight_decay=config.adamw_weight_decay
    )
    qk_clip = None
    if config.qk_clip:
        tracker = tracker if tracker is not None else MaxLogitTracker(model)
        qk_clip = QKClip(tracker, tau=config.qk_clip_tau)  # validates MLA before the model is switched
        tracker.enable()
        tracker.reset()
    balancer = None
    if config.bias_update_rate > 0 and find_routers(model):
        balancer = ExpertLoadBalancer(model, rate=config.bias_update_rate)
    optimizer = MuonClip(
        groups,
        lr=config.lr,
        weight_decay=config.weight_decay,
        momentum=config.momentum,
        nesterov=config.nesterov,
        ns_coefficients=config.ns_coefficients,
        ns_steps=config.ns_steps,
        ns_dtype=config.ns_dtype,
        betas=config.adamw_betas,
        eps=config.adamw_eps,
        qk_clip=qk_clip,
        balancer=balancer,
    )
    check_coverage(model, optimizer)
    return optimizer
