"""Objective maths: autograd gradients equal the hand-derived closed forms on tiny tensors."""

import math

import pytest
import torch

from agentrl.errors import ConfigError
from agentrl.train.losses import (
    K2Objective,
    ObjectiveConfig,
    PPOClipObjective,
    RLBatch,
    group_mean,
    group_std,
)
from agentrl.train.rl_config import RLConfig


def _batch(lp, old, mask, rewards, groups, **kw):
    lp = torch.tensor(lp, dtype=torch.float64, requires_grad=True)
    return lp, RLBatch(
        logprobs_BT=lp,
        old_logprobs_BT=torch.tensor(old, dtype=torch.float64),
        mask_BT=torch.tensor(mask, dtype=torch.float64),
        rewards_B=torch.tensor(rewards, dtype=torch.float64),
        group_B=torch.tensor(groups),
        **kw,
    )


def test_group_stats():
    v = torch.tensor([1.0, 3.0, 10.0, 20.0, 30.0])
    g = torch.tensor([0, 0, 1, 1, 1])
    assert group_mean(v, g).tolist() == [2.0, 2.0, 20.0, 20.0, 20.0]
    assert torch.allclose(
        group_std(v, g), torch.tensor([1.0, 1.0, (200 / 3) ** 0.5, (200 / 3) ** 0.5, (200 / 3) ** 0.5])
    )


def test_k2_loss_value_and_gradient_match_closed_form():
    tau = 0.5
    mask = [[0, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 0, 0]]
    lp_v = [[9.0, -0.5, -1.0, 7.0], [3.0, -0.2, -0.3, -0.4], [0.0, 5.0, -2.0, -1.0], [0.0, -0.7, 4.0, 4.0]]
    old_v = [[0.0, -0.6, -0.9, 0.0], [0.0, -0.3, -0.3, -0.2], [0.0, 0.0, -1.5, -1.0], [0.0, -0.4, 0.0, 0.0]]
    rewards = [1.0, 0.0, 0.5, 0.3]
    groups = [0, 0, 1, 1]
    lp, batch = _batch(lp_v, old_v, mask, rewards, groups)
    loss, metrics = K2Objective(tau).loss(batch)
    loss.backward()
    # Hand computation: sequence log-ratios over masked tokens only.
    seq = [sum(lp_v[i][t] * mask[i][t] for t in range(4)) for i in range(4)]
    seq_old = [sum(old_v[i][t] * mask[i][t] for t in range(4)) for i in range(4)]
    rbar = [0.5, 0.5, 0.4, 0.4]
    resid = [rewards[i] - rbar[i] - tau * (seq[i] - seq_old[i]) for i in range(4)]
    assert loss.item() == pytest.approx(sum(r * r for r in resid) / 4, rel=1e-12)
    expected = torch.tensor(
        [[2 * resid[i] * (-tau) * mask[i][t] / 4 for t in range(4)] for i in range(4)], dtype=torch.float64
    )
    assert torch.allclose(lp.grad, expected, atol=1e-12)
    assert metrics["loss/rl"] == pytest.approx(loss.item())


def test_k2_gradient_at_old_policy_is_reinforce_with_mean_baseline():
    # At θ = θ_old, ∇L = -2τ/N Σ (r_i - r̄) ∇log π(y_i): k1.5 eq. 3 scaled by -2τ.
    tau = 0.1
    lp, batch = _batch(
        [[0.0, -1.0, -2.0], [0.0, -0.5, -0.5]],
        [[0.0, -1.0, -2.0], [0.0, -0.5, -0.5]],
        [[0, 1, 1], [0, 1, 1]],
        [1.0, 0.0],
        [0, 0],
    )
    K2Objective(tau).loss(batch)[0].backward()
    assert torch.allclose(
        lp.grad, torch.tensor([[0, -0.05, -0.05], [0, 0.05, 0.05]], dtype=torch.float64) * 1.0
    )


def test_k2_sequence_importance_weight_scales_each_sample():
    lp, batch = _batch(
        [[0.0, -1.0], [0.0, -2.0]],
        [[0.0, -1.0], [0.0, -2.0]],
        [[0, 1], [0, 1]],
        [1.0, 0.0],
        [0, 0],
        is_weight_B=torch.tensor([2.0, 0.5], dtype=torch.float64),
    )
    K2Objective(1.0).loss(batch)[0].backward()
    # resid = ±0.5; grad = 2*resid*(-tau)*w/N
    assert torch.allclose(
        lp.grad[:, 1], torch.tensor([2 * 0.5 * -1 * 2.0 / 2, 2 * -0.5 * -1 * 0.5 / 2], dtype=torch.float64)
    )


def test_ppo_clip_gradient_matches_closed_form_inside_and_outside_clip():
    eps = 0.2
    # group 0: rewards 1, 0 -> advantages ±1 (std 0.5, scaled); group 1 rewards equal -> advantage 0
    lp_v = [[0.0, 0.1, -0.5], [0.0, -0.4, 0.05], [0.0, 0.3, -0.1]]
    old_v = [[0.0, 0.0, -0.5], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    mask = [[0, 1, 1], [0, 1, 1], [0, 1, 0]]
    lp, batch = _batch(lp_v, old_v, mask, [1.0, 0.0, 0.7], [0, 0, 1])
    obj = PPOClipObjective(clip_eps=eps, scale_by_std=True, eps=1e-6)
    loss, metrics = obj.loss(batch)
    loss.backward()
    adv = [0.5 / (0.5 + 1e-6), -0.5 / (0.5 + 1e-6), 0.0]  # (r - r̄) / (σ + ε); a lone sample has A = 0
    n_tokens = 5
    expected = torch.zeros(3, 3, dtype=torch.float64)
    total = 0.0
    for i in range(3):
        for t in range(3):
            if not mask[i][t]:
                continue
            ratio = math.exp(lp_v[i][t] - old_v[i][t])
            clipped = min(max(ratio, 1 - eps), 1 + eps)
            surr = min(ratio * adv[i], clipped * adv[i])
            total += -surr
            # gradient flows only through the unclipped branch when it is the minimum
            active = ratio * adv[i] <= clipped * adv[i]
            expected[i, t] = (-ratio * adv[i] if active else 0.0) / n_tokens
    assert loss.item() == pytest.approx(total / n_tokens, rel=1e-9)
    assert torch.allclose(lp.grad, expected, atol=1e-12)
    # token (1, 1): ratio e^-0.4 < 0.8 with A < 0 -> clipped branch is the min -> zero gradient
    assert lp.grad[1, 1].item() == 0.0
    assert metrics["loss/clip_frac"] == pytest.approx(2 / 5)  # ratios e^-0.4 and e^0.3 lie outside [0.8, 1.2]


def test_ppo_k3_kl_gradient_matches_closed_form():
    lp_v = [[0.0, -0.3, -0.8], [0.0, -1.0, -0.2]]
    ref_v = [[0.0, -0.5, -0.6], [0.0, -0.9, -0.9]]
    mask = [[0, 1, 1], [0, 1, 1]]
    lp, batch = _batch(
        lp_v, lp_v, mask, [1.0, 1.0], [0, 1], ref_logprobs_BT=torch.tensor(ref_v, dtype=torch.float64)
    )
    beta = 0.3
    loss, metrics = PPOClipObjective(kl_coef=beta).loss(
        batch
    )  # equal rewards -> advantage 0, only KL remains
    loss.backward()
    n = 4
    exp_loss = (
        sum(
            beta * (math.exp(ref_v[i][t] - lp_v[i][t]) - (ref_v[i][t] - lp_v[i][t]) - 1)
            for i in range(2)
            for t in (1, 2)
        )
        / n
    )
    assert loss.item() == pytest.approx(exp_loss, rel=1e-9)
    # d/dlp [e^(ref-lp) - (ref-lp) - 1] = 1 - e^(ref-lp)
    expected = torch.tensor(
        [[0.0] + [beta * (1 - math.exp(ref_v[i][t] - lp_v[i][t])) / n for t in (1, 2)] for i in range(2)],
        dtype=torch.float64,
    )
    assert torch.allclose(lp.grad, expected, atol=1e-12)
    assert metrics["loss/kl_ref"] > 0


def test_ppo_kl_without_reference_is_an_error():
    _, batch = _batch([[0.0, -1.0]], [[0.0, -1.0]], [[0, 1]], [1.0], [0])
    with pytest.raises(ValueError, match="ref_logprobs"):
        PPOClipObjective(kl_coef=0.1).loss(batch)


def test_bad_objective_configs_fail_with_clear_messages():
    with pytest.raises(ConfigError, match="tau"):
        K2Objective(-0.1)
    with pytest.raises(ValueError, match="greater than 0"):
        RLConfig.model_validate({"objective": {"tau": -1.0}})
    with pytest.raises(ValueError, match="'k2' or 'ppo_clip'"):
        RLConfig.model_validate({"objective": {"name": "dpo"}})
    assert isinstance(ObjectiveConfig(name="ppo_clip").build(), PPOClipObjective)
