"""The policy update of one RL iteration: score π_old, then minibatch optimizer steps on objective + β·PTX.

Order inside `update`:
1. Sort samples by group and right-pad them once. Each micro-batch's forward runs at its own rows' width
   (`token_logprobs` cuts trailing padding); expert ids are laid back out at the batch width, so per-token ids of
   different passes line up.
2. π_old: a no-grad pass at each sample's own sampling temperature (logprobs.py rule), recording the routing.
   The train/inference gap and the truncated IS weights compare it with the engine's logprobs.
3. For each pass over the batch and each minibatch of whole groups: micro-batches of whole groups accumulate the
   objective's gradient (weighted so the sum equals one big batch), PTX adds β·∇L_PTX once per minibatch, then
   gradient clipping, the lr schedule, and `optimizer.step()` (MuonClip runs QK-Clip and the bias update inside).

Groups are never split, so r̄ and the group std are always over all K samples of a prompt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from agentrl.schemas.trajectory import Trajectory
from agentrl.train.aux_loss import AuxLoss
from agentrl.train.logprobs import TokenBatch, collate, gap_metrics, token_logprobs, truncated_is_weights
from agentrl.train.losses import Objective, RLBatch
from agentrl.train.ptx import PTXSampler, ptx_loss
from agentrl.train.rl_config import RLConfig
from agentrl.train.routing import RouterCapture, RoutingReplay, rollout_routing, routing_mismatch
from agentrl.train.schedules import Schedule


def group_indices(trajectories: Sequence[Trajectory]) -> list[int]:
    """Group index per sample, numbered by first appearance; samples without a group id form their own group."""
    seen: dict[str, int] = {}
    out = []
    for t in trajectories:
        key = t.group_id if t.group_id is not None else f"__solo__{t.id}"
        out.append(seen.setdefault(key, len(seen)))
    return out


def _slices(groups_R: list[int], per_chunk: int | None) -> list[slice]:
    """Contiguous row slices covering `per_chunk` whole groups each (rows are sorted by group)."""
    bounds = [0] + [i for i in range(1, len(groups_R)) if groups_R[i] != groups_R[i - 1]] + [len(groups_R)]
    num_groups = len(bounds) - 1
    step = per_chunk or num_groups
    return [slice(bounds[g], bounds[min(g + step, num_groups)]) for g in range(0, num_groups, step)]


class PolicyLearner:
    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        objective: Objective,
        config: RLConfig,
        pad_id: int,
        lr_schedule: Schedule,
        ptx: PTXSampler | None = None,
        reference: torch.nn.Module | None = None,
        rank: int = 0,
        world_size: int = 1,
        aux_losses: Sequence[AuxLoss] = (),
    ) -> None:
        if getattr(objective, "needs_reference", False) and reference is None:
            raise ValueError(f"objective {objective.name} needs a reference model")
        self.model, self.optimizer, self.objective = model, optimizer, objective
        self.config, self.pad_id, self.lr_schedule = config, pad_id, lr_schedule
        self.ptx, self.reference = ptx, reference
        self.aux_losses = list(aux_losses)
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.routers = RouterCapture(model)
        # Data parallel (FSDP2, train/distributed.py): every rank gets the whole batch and trains the groups
        # g with g % world_size == rank; gradients are averaged across ranks by FSDP.
        self.rank, self.world_size = rank, world_size

    def _autocast(self) -> torch.autocast:
        """bf16 autocast around every forward when `precision="bf16"` (fp32 master weights and optimizer)."""
        device = next(self.model.parameters()).device
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16")

    def _score(self, model: torch.nn.Module, batch: TokenBatch, rows: list[slice]) -> torch.Tensor:
        with torch.no_grad(), self._autocast():
            return torch.cat(
                [
                    token_logprobs(
                        model, batch.input_ids_BT[r], batch.attention_mask_BT[r], batch.temperature_B[r]
                    )
                    for r in rows
                ]
            )

    def update(
        self, trajectories: Sequence[Trajectory], rewards: Sequence[float], step: int, temperature: float
    ) -> dict[str, Any]:
        cfg = self.config
        first_groups = group_indices(trajectories)
        order_all = sorted(range(len(trajectories)), key=lambda i: first_groups[i])
        groups_all = [first_groups[i] for i in order_all]
        minis_all = _slices(groups_all, cfg.groups_per_minibatch)
        # Global (all-rank) denominators, so accumulated gradients equal one big batch's.
        self._denoms = [
            (m.stop - m.start, sum(trajectories[order_all[i]].num_generated for i in range(m.start, m.stop)))
            for m in minis_all
        ]
        keep = [i for i, g in enumerate(groups_all) if g % self.world_size == self.rank]
        minis = []
        for m in minis_all:
            if len(set(groups_all[m])) % self.world_size:
                raise ValueError(
                    f"{len(set(groups_all[m]))} groups per minibatch do not split evenly over {self.world_size} ranks"
                )
            local = [j for j, i in enumerate(keep) if m.start <= i < m.stop]
            minis.append(slice(local[0], local[-1] + 1))
        order = [order_all[i] for i in keep]
        trajs = [trajectories[i] for i in order]
        groups_R = [groups_all[i] for i in keep]
        device = next(self.model.parameters()).device
        batch = collate(trajs, self.pad_id, default_temperature=temperature).to(device)
        rewards_B = torch.tensor([float(rewards[i]) for i in order], dtype=torch.float32, device=device)
        group_B = torch.tensor(groups_R, dtype=torch.long, device=device)
        micro_rows = [s for m in minis for s in self._micro(groups_R, m)]
        self.routers.width = batch.input_ids_BT.shape[1]
        metrics: dict[str, Any] = {}

        self.model.train()
        with self.routers:
            train_old_BT = self._score(self.model, batch, micro_rows)
        score_ids = self.routers.layers() if self.routers.routers else []
        rollout_ids = None
        if score_ids:
            layer_ids = [self._layer_index(r) for r in self.routers.routers]
            rollout_ids = rollout_routing(trajs, batch.input_ids_BT.shape[1], layer_ids)
            if rollout_ids is not None:
                rollout_ids = ([x.to(device) for x in rollout_ids[0]], rollout_ids[1].to(device))
            if rollout_ids is not None:
                ids, known_N = rollout_ids
                metrics["routing/mismatch_rollout_vs_train"] = routing_mismatch(
                    ids, score_ids, known_N & batch.attention_mask_BT.reshape(-1).bool()
                )
            elif cfg.routing.replay == "rollout":
                raise ValueError(
                    "routing.replay=rollout but the trajectories carry no metadata['routed_experts']"
                )
            num_experts = [int(r.e_score_correction_bias.numel()) for r in self.routers.routers]
            metrics.update(expert_load(score_ids, batch.attention_mask_BT.reshape(-1), num_experts))
        metrics.update(gap_metrics(train_old_BT, batch))
        token_w_BT = seq_w_B = None
        if cfg.tis_cap is not None:
            token_w_BT, seq_w_B, tis = truncated_is_weights(train_old_BT, batch, cfg.tis_cap)
            metrics.update(tis)
        if cfg.old_logprobs == "rollout":
            missing = (batch.loss_mask_BT > 0) & ~batch.has_rollout_lp_BT
            if bool(missing.any()):
                raise ValueError("old_logprobs=rollout but some generated tokens have no engine logprob")
            old_BT = batch.rollout_logprobs_BT
        else:
            old_BT = train_old_BT
        ref_BT = self._score(self.reference, batch, micro_rows) if self.reference is not None else None

        scale = self.lr_schedule.value(step)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * scale
        sums: dict[str, float] = {}
        opt_steps = 0
        for epoch in range(cfg.updates_per_batch):
            train_ids: list[list[torch.Tensor]] = [[] for _ in score_ids]
            for mini_idx, mini in enumerate(minis):
                self.optimizer.zero_grad(set_to_none=True)
                for rows in self._micro(groups_R, mini):
                    weight = self._weight(batch, rows, mini_idx)
                    with (
                        self._replay(self._replay_ids(score_ids, rollout_ids), batch, rows),
                        self.routers,
                        self._autocast(),
                    ):
                        lp_BT = token_logprobs(
                            self.model,
                            batch.input_ids_BT[rows],
                            batch.attention_mask_BT[rows],
                            batch.temperature_B[rows],
                        )
                    if epoch == 0 and score_ids:
                        for layer, ids in enumerate(self.routers.layers()):
                            train_ids[layer].append(ids)
                    rl_batch = RLBatch(
                        logprobs_BT=lp_BT,
                        old_logprobs_BT=old_BT[rows],
                        mask_BT=batch.loss_mask_BT[rows],
                        rewards_B=rewards_B[rows],
                        group_B=group_B[rows] - int(group_B[rows].min()),
                        ref_logprobs_BT=None if ref_BT is None else ref_BT[rows],
                        is_weight_B=None if seq_w_B is None else seq_w_B[rows],
                        is_weight_BT=None if token_w_BT is None else token_w_BT[rows],
                    )
                    loss, loss_metrics = self.objective.loss(rl_batch)
                    (loss * weight).backward()
                    for k, v in loss_metrics.items():
                        sums[k] = sums.get(k, 0.0) + v * weight
                if self.ptx is not None and cfg.ptx.beta > 0:
                    ids, attn, mask = (x.to(device) for x in self.ptx.next_batch())
                    with self._autocast():
                        loss_ptx = ptx_loss(self.model, ids, attn, mask)
                    (cfg.ptx.beta * loss_ptx).backward()
                    sums["loss/ptx"] = sums.get("loss/ptx", 0.0) + float(loss_ptx.detach())
                for aux in self.aux_losses:
                    if aux.beta <= 0 or (aux_batch := aux.next_batch()) is None:
                        continue
                    loss_aux = self._aux_loss(aux, aux_batch, device)
                    (aux.beta * loss_aux).backward()
                    key = f"loss/{aux.name}"
                    sums[key] = sums.get(key, 0.0) + float(loss_aux.detach())
                grad_norm = self._clip()
                sums["grad_norm"] = sums.get("grad_norm", 0.0) + grad_norm
                self.optimizer.step()
                opt_steps += 1
            if epoch == 0 and score_ids and cfg.routing.measure:
                trained = [torch.cat(chunks) for chunks in train_ids]
                metrics["routing/mismatch_score_vs_train"] = routing_mismatch(
                    score_ids, trained, batch.attention_mask_BT.reshape(-1)
                )
        for k, v in sums.items():
            metrics[k] = v / opt_steps
        metrics.update(self._solo_aux_steps(device))
        metrics["loss/total"] = (
            metrics.get("loss/rl", 0.0)
            + cfg.ptx.beta * metrics.get("loss/ptx", 0.0)
            + sum(a.beta * metrics.get(f"loss/{a.name}", 0.0) for a in self.aux_losses)
        )
        metrics["lr_scale"] = scale
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        metrics.update(getattr(self.optimizer, "last_stats", {}) or {})
        if cfg.routing.after_update and score_ids:
            metrics["routing/mismatch_after_update"] = self._mismatch_after_update(
                batch, micro_rows, score_ids
            )
        metrics["tokens/trained"] = float(batch.attention_mask_BT.sum())
        metrics["tokens/generated"] = float(batch.loss_mask_BT.sum())
        return metrics

    def _solo_aux_steps(self, device: torch.device) -> dict[str, float]:
        """`aux.solo_steps` optimizer steps on each auxiliary loss alone, after the RL update: the RL step gives an
        auxiliary loss one batch per update, too few for a skill the RL loss does not train (the critic)."""
        metrics: dict[str, float] = {}
        for aux in self.aux_losses:
            losses = []
            for _ in range(aux.solo_steps if aux.beta > 0 else 0):
                if (aux_batch := aux.next_batch()) is None:
                    break
                self.optimizer.zero_grad(set_to_none=True)
                loss_aux = self._aux_loss(aux, aux_batch, device)
                loss_aux.backward()
                self._clip()
                self.optimizer.step()
                losses.append(float(loss_aux.detach()))
            if losses:
                self.optimizer.zero_grad(set_to_none=True)
                metrics[f"loss/{aux.name}_solo"] = sum(losses) / len(losses)
        return metrics

    def _aux_loss(self, aux: AuxLoss, batch: tuple[torch.Tensor, ...], device: torch.device) -> torch.Tensor:
        ids, attn, mask = (x.to(device) for x in batch)
        with self._autocast():
            return aux.loss(self.model, ids, attn, mask)

    def _micro(self, groups_R: list[int], mini: slice) -> list[slice]:
        inner = _slices(groups_R[mini], self.config.groups_per_microbatch)
        return [slice(mini.start + s.start, mini.start + s.stop) for s in inner]

    def _weight(self, batch: TokenBatch, rows: slice, mini_idx: int) -> float:
        """This micro-batch's share of its (global) minibatch, times world_size to undo FSDP's gradient averaging."""
        samples, tokens = self._denoms[mini_idx]
        if getattr(self.objective, "reduction", "sample") == "token":
            return self.world_size * float(batch.loss_mask_BT[rows].sum()) / max(float(tokens), 1.0)
        return self.world_size * (rows.stop - rows.start) / samples

    def _replay_ids(self, score_ids: list[torch.Tensor], rollout_ids) -> list[torch.Tensor]:
        if self.config.routing.replay != "rollout" or rollout_ids is None:
            return score_ids
        ids, known_N = rollout_ids
        return [torch.where(known_N[:, None], r, s) for r, s in zip(ids, score_ids, strict=True)]

    def _layer_index(self, router: torch.nn.Module) -> int:
        for name, module in self.model.named_modules():
            if module is router:
                return int(name.split("layers.")[1].split(".")[0])
        raise ValueError("router not found in the model")

    def _replay(self, replay_ids: list[torch.Tensor], batch: TokenBatch, rows: slice):
        if self.config.routing.replay == "off" or not replay_ids:
            return _NullContext()
        width = batch.input_ids_BT.shape[1]
        sliced = [ids.view(-1, width, ids.shape[-1])[rows].reshape(-1, ids.shape[-1]) for ids in replay_ids]
        return RoutingReplay(self.model, sliced)

    def _clip(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.config.optimizer.grad_clip
        if max_norm is None:
            norms = [p.grad.detach().norm() for p in params]
            norms = [n.full_tensor() if hasattr(n, "full_tensor") else n for n in norms]
            return float(torch.stack(norms).norm()) if norms else 0.0
        total = torch.nn.utils.clip_grad_norm_(params, max_norm)
        norm = float(total.full_tensor() if hasattr(total, "full_tensor") else total)  # DTensor under FSDP2
        return norm if math.isfinite(norm) else float("nan")

    def _mismatch_after_update(
        self, batch: TokenBatch, rows: list[slice], score_ids: list[torch.Tensor]
    ) -> float:
        with self.routers:
            self._score(self.model, batch, rows)
        qk_clip = getattr(self.optimizer, "qk_clip", None)
        if qk_clip is not None:  # this probe must not count toward the next step's S_max
            qk_clip.tracker.reset()
        return routing_mismatch(score_ids, self.routers.layers(), batch.attention_mask_BT.reshape(-1))


def expert_load(
    ids: list[torch.Tensor], token_mask_N: torch.Tensor, num_experts: list[int]
) -> dict[str, list[float]]:
    """Per MoE layer: max/mean tokens per expert and the number of experts that got no token (real tokens only)."""
    max_over_mean, dead = [], []
    for ids_NK, n in zip(ids, num_experts, strict=True):
        counts_E = torch.bincount(ids_NK[token_mask_N.bool()].reshape(-1), minlength=n).float()
        max_over_mean.append(float(counts_E.max() / counts_E.mean().clamp(min=1e-9)))
        dead.append(float((counts_E == 0).sum()))
    return {"moe/max_over_mean_load": max_over_mean, "moe/dead_experts": dead}


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
