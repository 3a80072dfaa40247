"""Auxiliary-loss-free MoE load balancing (DeepSeek-V3 §2.1.2; Moonlight App. C; k2.md §1.5, §2.3).

Each router selects experts by `sigmoid(logits) + e_score_correction_bias` (the combine weights use the unbiased
scores), so moving the bias shifts load without a gradient. After every optimizer step, per MoE layer:

    load_i = tokens routed to expert i during the step's training forward passes (top-k assignments)
    e_i    = mean_j(load_j) - load_i                      # violation: > 0 under-loaded, < 0 over-loaded
    b_i   += u * (sign(e_i) - mean_j sign(e_j))          # Moonlight's zero-mean form of DeepSeek-V3's rule

u defaults to 1e-3 (Moonlight); 0 disables. K2 does not state its rate. Loads are counted by forward hooks on the
routers (`mlp.gate`, which returns `(router_logits, topk_weights, topk_indices)`), only while grad is enabled so
evaluation and no-grad scoring passes do not count; a gradient-checkpoint recompute counts every token twice,
which leaves the signs unchanged. Counts are summed over ranks when torch.distributed is initialised.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agentrl.errors import ConfigError


def find_routers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The MoE routers of a model in layer order: modules with an `e_score_correction_bias` buffer."""
    return [m for m in model.modules() if isinstance(getattr(m, "e_score_correction_bias", None), Tensor)]


def bias_update(load_E: Tensor, rate: float) -> Tensor:
    """The bias increment for one layer's expert loads: rate * (sign(mean - load) - mean(sign))."""
    sign_E = torch.sign(load_E.float().mean() - load_E.float())
    return rate * (sign_E - sign_E.mean())


class ExpertLoadBalancer:
    """Counts expert loads with router hooks and moves each router's correction bias after every step."""

    def __init__(self, model: torch.nn.Module, rate: float = 1e-3, process_group=None) -> None:
        if rate < 0:
            raise ConfigError(f"aux-free bias update rate must be >= 0, got {rate}")
        self.routers = find_routers(model)
        if not self.routers:
            raise ConfigError(
                "aux-free balancing needs MoE routers with e_score_correction_bias; the model has none"
            )
        self.rate = float(rate)
        self.process_group = process_group
        # Counts live next to the biases so the hooks never synchronise with the host.
        self.loads: list[Tensor] = [
            torch.zeros_like(r.e_score_correction_bias, dtype=torch.float32) for r in self.routers
        ]
        self._handles = [r.register_forward_hook(self._make_hook(i)) for i, r in enumerate(self.routers)]

    def _make_hook(self, layer: int):
        def hook(module: torch.nn.Module, args, output) -> None:
            if not torch.is_grad_enabled():
                return
            topk_indices = output[2]
            counts_E = torch.bincount(topk_indices.detach().reshape(-1), minlength=self.loads[layer].numel())
            self.loads[layer] += counts_E.to(self.loads[layer].device, torch.float32)

        return hook

    def _reduced_loads(self) -> Tensor:
        loads_LE = torch.stack(self.loads)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(
                loads_LE, op=torch.distributed.ReduceOp.SUM, group=self.process_group
            )
        return loads_LE

    @torch.no_grad()
    def update(self) -> dict[str, list[float] | list[int]]:
        """Move the biases by the loads counted since the last update, reset the counts, return per-layer stats.

        Stats: `balance/max_over_mean_load` and `balance/dead_experts` (experts that got no token), per layer.
        Layers that saw no tokens report 0 and are not moved.
        """
        loads_LE = self._reduced_loads()
        max_over_mean: list[float] = []
        dead: list[int] = []
        for router, load_E in zip(self.routers, loads_LE, strict=True):
            mean = float(load_E.mean())
            if mean == 0:
                max_over_mean.append(0.0)
                dead.append(0)
                continue
            max_over_mean.append(float(load_E.max()) / mean)
            dead.append(int((load_E == 0).sum()))
            if self.rate > 0:
                bias = router.e_score_correction_bias
                bias.add_(bias_update(load_E, self.rate).to(bias.device, bias.dtype))
        for load in self.loads:
            load.zero_()
        return {"balance/max_over_mean_load": max_over_mean, "balance/dead_experts": dead}

    def remove(self) -> None:
        """Detach the router hooks."""
        for handle in self._handles:
            handle.remove()
