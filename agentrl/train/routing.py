"""MoE routing: capture the trainer's expert choices, measure mismatch between passes, replay choices.

Train/inference routing mismatch (issue #8 §6). The real measurement compares the experts the engine chose while
sampling with the trainer's: `routing/mismatch_rollout_vs_train`, computed whenever trajectories carry the
engine's expert ids in `metadata["routed_experts"]` (`{"start": first covered position, "ids": [token][layer][k]}`,
layer = the model's hidden-layer index, dense layers included; this is the layout of vLLM's
`CompletionOutput.routed_experts` when the engine runs with `enable_return_routed_experts=True`). Which rollouts
carry it is up to the engine. Two trainer-side mismatches are always available (docs/rl.md):

- `routing/mismatch_score_vs_train`: the π_old scoring pass (no grad, the full rollout batch) against the training
  forward (grad on, per minibatch). With one update per batch these run the same weights on different batch
  compositions, so it is ~0 unless numerics differ with the batch; with several updates per batch later
  minibatches run updated weights and it measures real policy drift.
- `routing/mismatch_after_update` (optional, one extra no-grad forward): the same batch routed by θ_t and by
  θ_{t+1}: how much the routing the next rollout will use has moved in one step, the quantity that makes a
  rollout's expert choices stale.

A mismatch is the fraction of (token, layer) pairs, over real tokens, whose top-k expert *set* differs.

Routing replay: transformers' DeepseekV3 has no argument to pass expert choices in, but its router
(`mlp.gate`) returns `(router_logits, topk_weights, topk_indices)` and the MoE block uses exactly that. A forward
hook that replaces the indices (and recomputes the weights from the router's own sigmoid scores at the given
indices, so the router still gets a gradient) replays choices cleanly. `RoutingReplay` does that with ids captured
from another trainer pass (the π_old scoring pass) or from the rollout (`rollout_routing`; positions the engine did
not report, such as the last sampled token, keep the scoring pass's choice).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from agentrl.optim.balance import find_routers
from agentrl.schemas.trajectory import Trajectory


class RouterCapture:
    """Records each router's top-k ids for the forward passes run inside `with capture:` (one tensor per layer)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.routers = find_routers(model)
        self.ids: list[Tensor | None] = [None] * len(self.routers)
        self.width: int | None = None
        """Lay each pass's ids out at this sequence width (0 past a pass's own width), so passes over trimmed
        micro-batches (`token_logprobs` cuts trailing padding) line up with the full padded batch."""
        self._handles: list = []

    def __enter__(self) -> RouterCapture:
        self.ids = [None] * len(self.routers)
        self._handles = [r.register_forward_hook(self._hook(i)) for i, r in enumerate(self.routers)]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, layer: int):
        def hook(module: torch.nn.Module, args, output) -> None:
            ids_NK = output[2].detach()
            hidden = args[0]
            if self.width is not None and hidden.dim() == 3 and hidden.shape[1] < self.width:
                batch, width = hidden.shape[:2]
                ids_BWK = ids_NK.view(batch, width, -1)
                ids_NK = torch.nn.functional.pad(ids_BWK, (0, 0, 0, self.width - width)).reshape(
                    -1, ids_NK.shape[1]
                )
            prev = self.ids[layer]
            self.ids[layer] = ids_NK if prev is None else torch.cat([prev, ids_NK])

        return hook

    def layers(self) -> list[Tensor]:
        if any(x is None for x in self.ids):
            raise RuntimeError("RouterCapture: no forward pass was recorded")
        return [x for x in self.ids if x is not None]


def routing_mismatch(ids_a: list[Tensor], ids_b: list[Tensor], token_mask: Tensor | None = None) -> float:
    """Fraction of (token, layer) pairs whose top-k expert sets differ; `token_mask` [N] selects real tokens."""
    if len(ids_a) != len(ids_b):
        raise ValueError(f"layer counts differ: {len(ids_a)} vs {len(ids_b)}")
    differ, total = 0, 0
    for a_NK, b_NK in zip(ids_a, ids_b, strict=True):
        if a_NK.shape != b_NK.shape:
            raise ValueError(f"routing shapes differ: {tuple(a_NK.shape)} vs {tuple(b_NK.shape)}")
        diff_N = (a_NK.sort(-1).values != b_NK.sort(-1).values).any(-1)
        if token_mask is not None:
            diff_N = diff_N[token_mask.reshape(-1).bool()]
        differ += int(diff_N.sum())
        total += diff_N.numel()
    return differ / max(total, 1)


class RoutingReplay:
    """Forces each router's top-k ids to given ones inside `with replay:`; weights come from live scores."""

    def __init__(self, model: torch.nn.Module, ids: list[Tensor]) -> None:
        self.routers = find_routers(model)
        if len(ids) != len(self.routers):
            raise ValueError(f"{len(ids)} layers of expert ids for {len(self.routers)} routers")
        self.ids = ids
        self._handles: list = []

    def __enter__(self) -> RoutingReplay:
        # prepend: run before every other router hook (load counting, capture), so they see the replayed ids.
        self._handles = [
            r.register_forward_hook(self._hook(i), prepend=True) for i, r in enumerate(self.routers)
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, layer: int):
        def hook(module: torch.nn.Module, args, output):
            router_logits_NE = output[0]
            ids_NK = self.ids[layer].to(router_logits_NE.device)
            hidden = args[0]
            if hidden.dim() == 3 and ids_NK.shape[0] % hidden.shape[0] == 0:
                # ids may be laid out at the full batch width while this pass is trimmed to its rows' width
                batch, width = hidden.shape[:2]
                ids_NK = ids_NK.view(batch, -1, ids_NK.shape[1])[:, :width].reshape(-1, ids_NK.shape[1])
            if ids_NK.shape[0] != router_logits_NE.shape[0]:
                raise ValueError(
                    f"routing replay layer {layer}: {ids_NK.shape[0]} tokens recorded, {router_logits_NE.shape[0]} now"
                )
            # Same weight formula as DeepseekV3TopkRouter.forward, at the replayed indices.
            weights_NK = router_logits_NE.sigmoid().gather(1, ids_NK)
            if module.norm_topk_prob:
                weights_NK = weights_NK / (weights_NK.sum(-1, keepdim=True) + 1e-20)
            return router_logits_NE, weights_NK * module.routed_scaling_factor, ids_NK

        return hook


def rollout_routing(
    trajectories: Sequence[Trajectory], width: int, layer_ids: list[int]
) -> tuple[list[Tensor], Tensor] | None:
    """The engine's expert ids laid out like a `RouterCapture` of the padded batch, plus a [B·W] mask of the
    positions the engine reported; None unless every trajectory carries `metadata["routed_experts"]`.

    `layer_ids` are the hidden-layer indices of the model's MoE layers, in router order.
    """
    if not trajectories or any("routed_experts" not in t.metadata for t in trajectories):
        return None
    k = None
    per_layer: list[Tensor] | None = None
    known_BW = torch.zeros((len(trajectories), width), dtype=torch.bool)
    for b, traj in enumerate(trajectories):
        entry = traj.metadata["routed_experts"]
        ids_TLK = torch.as_tensor(entry["ids"], dtype=torch.long)
        start = int(entry.get("start", 0))
        if ids_TLK.ndim != 3 or start < 0 or start + ids_TLK.shape[0] > width:
            raise ValueError(
                f"trajectory {traj.id}: routed_experts must be [tokens, layers, k] within the sequence"
            )
        if per_layer is None:
            k = ids_TLK.shape[2]
            per_layer = [torch.zeros((len(trajectories), width, k), dtype=torch.long) for _ in layer_ids]
        for i, layer in enumerate(layer_ids):
            per_layer[i][b, start : start + ids_TLK.shape[0]] = ids_TLK[:, layer]
        known_BW[b, start : start + ids_TLK.shape[0]] = True
    assert per_layer is not None and k is not None
    return [x.reshape(-1, k) for x in per_layer], known_BW.reshape(-1)
