"""MuonClip: Muon on matrices + AdamW on the rest, then QK-Clip and aux-free bias updates (K2 Algorithm 1).

A regular `torch.optim.Optimizer`, so TRL's `SFTTrainer(optimizers=(opt, sched))`, LR schedulers, gradient
clipping and `state_dict()` checkpoints work unchanged. Every param group carries `kind`:

- `kind="muon"`: 2-D matrices, or fused 3-D expert stacks with `chunks` matrices per expert along dim 1
  (`experts.gate_up_proj` [E, 2I, H] has chunks=2: gate and up are orthogonalised separately).
- `kind="adamw"`: embeddings, lm_head, norms, biases and other 1-D params.

`step()` updates the parameters, then (when configured) runs `QKClip.apply()` on the updated weights with the
S_max recorded during this step's forward passes, then `ExpertLoadBalancer.update()`. Their per-step stats are
in `last_stats`. Build the usual setup with `agentrl.optim.build.build_muonclip(model, config)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from agentrl.errors import ConfigError
from agentrl.optim.adamw import adamw_step_
from agentrl.optim.balance import ExpertLoadBalancer
from agentrl.optim.muon import (
    NS_COEFFICIENTS,
    NS_EPS,
    NS_STEPS,
    apply_orthogonal_,
    matrix_view,
    muon_momentum_,
    newton_schulz,
    orthogonalize_stacks,
    resolve_ns_dtype,
)
from agentrl.optim.qkclip import QKClip

KINDS = ("muon", "adamw")


class MuonClip(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[dict[str, Any]],
        lr: float = 2e-4,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        ns_steps: int = NS_STEPS,
        ns_eps: float = NS_EPS,
        ns_dtype: str = "auto",
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        *,
        qk_clip: QKClip | None = None,
        balancer: ExpertLoadBalancer | None = None,
    ) -> None:
        if lr < 0 or weight_decay < 0 or not 0 <= momentum < 1:
            raise ConfigError(
                f"MuonClip needs lr >= 0, weight_decay >= 0, 0 <= momentum < 1; got {lr}, {weight_decay}, {momentum}"
            )
        defaults = {
            "kind": None,
            "chunks": 1,
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": tuple(ns_coefficients),
            "ns_steps": ns_steps,
            "ns_eps": ns_eps,
            "ns_dtype": ns_dtype,
            "betas": tuple(betas),
            "eps": eps,
        }
        super().__init__(params, defaults)
        self.qk_clip = qk_clip
        self.balancer = balancer
        self.last_stats: dict[str, Any] = {}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        index = len(self.param_groups) - 1
        label = group.get("name", f"param group {index}")
        if group["kind"] not in KINDS:
            raise ConfigError(
                f"MuonClip {label}: kind must be one of {KINDS}, got {group['kind']!r}; build groups with "
                "agentrl.optim.groups.build_param_groups(model)"
            )
        if group["kind"] == "muon":
            names = group.get("names") or [f"#{i}" for i in range(len(group["params"]))]
            for name, p in zip(names, group["params"], strict=True):
                ok = (p.ndim == 2 and group["chunks"] == 1) or (
                    p.ndim == 3 and p.shape[1] % group["chunks"] == 0
                )
                if not ok:
                    raise ConfigError(
                        f"MuonClip {label}: parameter {name} of shape {tuple(p.shape)} is not a matrix or an expert "
                        f"stack splitting into {group['chunks']} chunks; put it in an adamw group"
                    )

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._muon_groups([group for group in self.param_groups if group["kind"] == "muon"])
        for group in self.param_groups:
            if group["kind"] == "adamw":
                self._adamw_group(group)
        stats: dict[str, Any] = {}
        if self.qk_clip is not None:
            stats.update(self.qk_clip.apply())
        if self.balancer is not None:
            stats.update(self.balancer.update())
        self.last_stats = stats
        return loss

    def _muon_groups(self, groups: list[dict[str, Any]]) -> None:
        """Momentum and weight decay per group; Newton-Schulz per 2-D matrix, and pooled for all expert stacks.

        Expert matrices of every group that share Newton-Schulz settings and device (gate/up halves and down
        projections of all layers) are orthogonalised together by `orthogonalize_stacks`. Groups touch disjoint
        parameters, so the order of the per-group work does not change any result.
        """
        pending: dict[tuple[Any, ...], list[tuple[torch.Tensor, torch.Tensor, float]]] = {}
        for group in groups:
            params, grads, bufs = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse or torch.is_complex(p):
                    raise RuntimeError("MuonClip does not support sparse gradients or complex parameters")
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                params.append(p)
                grads.append(p.grad)
                bufs.append(state["momentum_buffer"])
            if not params:
                continue
            updates = muon_momentum_(
                params,
                grads,
                bufs,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                momentum=group["momentum"],
                nesterov=group["nesterov"],
            )
            ns_args = (
                group["ns_coefficients"],
                group["ns_steps"],
                group["ns_eps"],
                resolve_ns_dtype(group["ns_dtype"], params[0].device),
            )
            for param, update in zip(params, updates, strict=True):
                view = matrix_view(update, group["chunks"])
                if view.ndim == 2:  # one by one: bitwise torch.optim.Muon
                    apply_orthogonal_(param, newton_schulz(view, *ns_args), group["lr"])
                else:
                    pending.setdefault((*ns_args, param.device), []).append((param, view, group["lr"]))
        for (*ns_args, _device), items in pending.items():
            orthos = orthogonalize_stacks([view for _, view, _ in items], *ns_args)
            for (param, _, lr), ortho in zip(items, orthos, strict=True):
                apply_orthogonal_(param, ortho, lr)

    def _adamw_group(self, group: dict[str, Any]) -> None:
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("MuonClip does not support sparse gradients")
            state = self.state[p]
            if "step" not in state:
                # Same state layout as torch.optim.AdamW: a float CPU tensor step and two moment buffers.
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(int(state["step"].item()))
        adamw_step_(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            steps,
            lr=group["lr"],
            betas=group["betas"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
        )
