"""Per-token log-probs under the trainer's policy, the train/inference gap, and truncated IS weights.

Temperature rule (issue #8 §4; docs/rl.md): the engine reports vLLM `processed_logprobs`, i.e.
log_softmax(logits / T) of the distribution the token was actually sampled from. The trainer therefore scores
every trajectory at the temperature *that trajectory was sampled with* (`Trajectory.sampling["temperature"]`, per
row), never at T = 1 and never at the current schedule value. π_old and π_θ in the objective are both
log_softmax(logits / T) with that same T, so the log-ratio is a ratio of the sampling distributions.

Shape legend: B = sequences, T = positions, V = vocabulary. `logprobs_BT[:, t]` scores token t given tokens < t;
position 0 has no prediction and is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from agentrl.schemas.trajectory import Trajectory


@dataclass
class TokenBatch:
    input_ids_BT: Tensor  # long, right-padded with pad_id
    attention_mask_BT: Tensor  # long, 1 on real tokens
    loss_mask_BT: Tensor  # float, 1 on generated tokens
    rollout_logprobs_BT: Tensor  # float, the engine's logprobs (0 where absent)
    has_rollout_lp_BT: Tensor  # bool, True where the engine reported a logprob on a generated token
    temperature_B: Tensor  # float, the sampling temperature of each row

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(*(getattr(self, f.name).to(device) for f in fields(self)))


def collate(trajectories: Sequence[Trajectory], pad_id: int, default_temperature: float = 1.0) -> TokenBatch:
    """Right-pad trajectories into a `TokenBatch`. A generated token at position 0 is rejected (nothing predicts it)."""
    if not trajectories:
        raise ValueError("collate needs at least one trajectory")
    width = max(len(t.token_ids) for t in trajectories)
    n = len(trajectories)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    loss_mask = torch.zeros((n, width), dtype=torch.float32)
    rollout_lp = torch.zeros((n, width), dtype=torch.float32)
    has_lp = torch.zeros((n, width), dtype=torch.bool)
    temps = torch.empty(n, dtype=torch.float32)
    for i, traj in enumerate(trajectories):
        length = len(traj.token_ids)
        if length and traj.loss_mask[0]:
            raise ValueError(f"trajectory {traj.id}: loss_mask[0] is 1 but the first token has no context")
        input_ids[i, :length] = torch.tensor(traj.token_ids, dtype=torch.long)
        attention[i, :length] = 1
        loss_mask[i, :length] = torch.tensor(traj.loss_mask, dtype=torch.float32)
        for t, (lp, m) in enumerate(zip(traj.logprobs, traj.loss_mask, strict=True)):
            if m and lp is not None:
                rollout_lp[i, t] = lp
                has_lp[i, t] = True
        temps[i] = float(traj.sampling.get("temperature", default_temperature))
    if bool((temps <= 0).any()):
        raise ValueError("sampling temperature must be > 0 to score log-probs (greedy has no distribution)")
    return TokenBatch(input_ids, attention, loss_mask, rollout_lp, has_lp, temps)


def token_logprobs(
    model: torch.nn.Module, input_ids_BT: Tensor, attention_mask_BT: Tensor, temperature_B: Tensor
) -> Tensor:
    """log_softmax(logits / T_b) of each actual token, [B, T], 0 at position 0 and at trailing padding.
    Differentiable.

    Columns after the rows' last real token are cut before the forward pass: a micro-batch of short rows cut from a
    wide batch then costs its own width, not the batch's (the forward sees `[B, W]`, W ≤ T)."""
    width = int(attention_mask_BT.any(0).nonzero().max()) + 1 if bool(attention_mask_BT.any()) else 1
    ids_BW = input_ids_BT[:, :width]
    logits_BWV = model(input_ids=ids_BW, attention_mask=attention_mask_BT[:, :width]).logits
    scaled_BWV = logits_BWV[:, :-1].float() / temperature_B.to(logits_BWV.device)[:, None, None]
    targets_BW = ids_BW[:, 1:].unsqueeze(-1)
    # log_softmax(x)[y] = x[y] - logsumexp(x): avoids materialising a second [B, W, V] tensor.
    lp_BW = scaled_BWV.gather(-1, targets_BW).squeeze(-1) - scaled_BWV.logsumexp(-1)
    return torch.nn.functional.pad(lp_BW, (1, input_ids_BT.shape[1] - width))


def gap_metrics(train_lp_BT: Tensor, batch: TokenBatch) -> dict[str, float]:
    """Train/inference log-prob gap on generated tokens where the engine reported a logprob.

    `gap/logprob_abs_max|mean`: |log π_train − log π_rollout|; `gap/kl_k1`: mean(log π_rollout − log π_train), an
    estimate of KL(rollout ‖ train). Empty when the rollout carried no logprobs.
    """
    sel = batch.has_rollout_lp_BT & (batch.loss_mask_BT > 0)
    if not bool(sel.any()):
        return {}
    diff = train_lp_BT.detach().float()[sel] - batch.rollout_logprobs_BT[sel]
    return {
        "gap/logprob_abs_max": float(diff.abs().max()),
        "gap/logprob_abs_mean": float(diff.abs().mean()),
        "gap/kl_k1": float((-diff).mean()),
    }


def truncated_is_weights(
    train_lp_BT: Tensor, batch: TokenBatch, cap: float
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """Truncated importance weights min(π_train / π_rollout, C), per token and per sequence.

    Corrects for the rollout being sampled by the engine while the objective's π_old is the trainer's score of
    the same weights (numerical and kernel differences, stale weights). Tokens without an engine logprob get 1.
    The sequence weight is min(exp(Σ_t log ratio), C). Both are constants (detached).
    """
    sel_BT = batch.has_rollout_lp_BT & (batch.loss_mask_BT > 0)
    log_ratio_BT = (train_lp_BT.detach().float() - batch.rollout_logprobs_BT) * sel_BT
    token_w_BT = log_ratio_BT.exp().clamp(max=cap)
    seq_w_B = log_ratio_BT.sum(-1).exp().clamp(max=cap)
    metrics = {
        "tis/token_weight_mean": float(token_w_BT[sel_BT].mean()) if bool(sel_BT.any()) else 1.0,
        "tis/seq_weight_mean": float(seq_w_B.mean()),
        "tis/seq_capped_frac": float((log_ratio_BT.sum(-1).exp() > cap).float().mean()),
    }
    return token_w_BT, seq_w_B, metrics
