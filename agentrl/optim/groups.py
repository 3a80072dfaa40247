"""Split a K2 (HF DeepseekV3) model's parameters into MuonClip param groups (k2.md §1.3).

Moonlight's split (what K2 inherits): Muon on every matrix except `embed_tokens` and `lm_head`; AdamW on those
and on all 1-D parameters (RMSNorm gains, biases). On top of that:

- fused experts: `mlp.experts.gate_up_proj` [E, 2I, H] -> Muon with chunks=2 (gate and up are separate
  matrices); `mlp.experts.down_proj` [E, H, I] -> Muon with chunks=1;
- the router `mlp.gate.weight` [E, H]: K2 does not say. Default `router="muon"`, Moonlight's rule (every non-
  embedding matrix goes to Muon, and K2 is Moonlight's recipe scaled up); `router="adamw"` is DeepSeek-V3's
  choice. The router's `e_score_correction_bias` is a buffer, moved by `ExpertLoadBalancer`, never by gradient.

Anything else (a 3-D tensor that is not an expert stack, a 4-D conv kernel) is an error naming the parameter,
and `check_coverage` errors for a trainable parameter that is in no group.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from agentrl.errors import ConfigError

RouterGroup = Literal["muon", "adamw"]


def classify(name: str, param: torch.Tensor, router: RouterGroup = "muon") -> tuple[str, str, int]:
    """(group name, kind, chunks) for one named parameter; ConfigError if it fits no group."""
    if "embed_tokens" in name or "lm_head" in name:
        return "adamw", "adamw", 1
    if param.ndim == 1:
        return "adamw", "adamw", 1
    if name.endswith("mlp.gate.weight") and param.ndim == 2:
        return ("router", router, 1)
    if name.endswith("experts.gate_up_proj") and param.ndim == 3:
        return "muon_experts_gate_up", "muon", 2
    if name.endswith("experts.down_proj") and param.ndim == 3:
        return "muon_experts_down", "muon", 1
    if param.ndim == 2:
        return "muon", "muon", 1
    raise ConfigError(
        f"parameter {name} of shape {tuple(param.shape)} fits no MuonClip group: Muon takes 2-D matrices and the "
        "fused expert stacks experts.gate_up_proj/down_proj; AdamW takes embeddings, lm_head and 1-D parameters"
    )


def build_param_groups(
    model: torch.nn.Module,
    *,
    router: RouterGroup = "muon",
    adamw_lr: float | None = None,
    adamw_weight_decay: float | None = None,
) -> list[dict[str, Any]]:
    """MuonClip param groups for every trainable parameter. AdamW groups may override lr / weight decay."""
    if router not in ("muon", "adamw"):
        raise ConfigError(f"router group must be 'muon' or 'adamw', got {router!r}")
    groups: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group_name, kind, chunks = classify(name, param, router)
        group = groups.setdefault(
            group_name, {"name": group_name, "kind": kind, "chunks": chunks, "params": [], "names": []}
        )
        group["params"].append(param)
        group["names"].append(name)
    for group in groups.values():
        if group["kind"] == "adamw":
            if adamw_lr is not None:
                group["lr"] = adamw_lr
            if adamw_weight_decay is not None:
                group["weight_decay"] = adamw_weight_decay
    return list(groups.values())


def check_coverage(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """ConfigError naming every trainable parameter of `model` that is in no param group of `optimizer`."""
    covered = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ConfigError(f"{len(missing)} trainable parameter(s) are in no optimizer group: {shown}")
