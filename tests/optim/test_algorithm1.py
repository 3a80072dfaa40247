"""Weight decay and lr follow K2 Algorithm 1: W <- W - lr * (0.2 sqrt(max(A,B)) NS(M) + wd * W)."""

import math

import torch

from agentrl.optim import MuonClip
from agentrl.optim.muon import newton_schulz


def test_weight_decay_uses_plain_lr_not_the_shape_factor():
    w = torch.nn.Parameter(torch.randn(64, 16))
    start = w.detach().clone()
    opt = MuonClip([{"params": [w], "kind": "muon"}], lr=0.1, weight_decay=0.5)
    w.grad = torch.zeros_like(w)  # NS(0) = 0, so only the decay acts
    opt.step()
    torch.testing.assert_close(w.detach(), start * (1 - 0.1 * 0.5), rtol=0, atol=0)


def test_update_is_k2_sum_momentum_nesterov_with_rms_match_scale():
    # K2 writes M_t = mu M_{t-1} + G_t; Moonlight feeds NS with G_t + mu M_t. Our EMA buffers must give the same
    # update after NS's normalisation.
    lr, wd, mu = 0.03, 0.1, 0.95
    w = torch.nn.Parameter(torch.randn(24, 40, generator=torch.Generator().manual_seed(0)))
    opt = MuonClip([{"params": [w], "kind": "muon"}], lr=lr, weight_decay=wd, momentum=mu, ns_dtype="float32")
    expected = w.detach().clone()
    m = torch.zeros_like(expected)
    for step in range(4):
        g = torch.randn(24, 40, generator=torch.Generator().manual_seed(10 + step))
        w.grad = g.clone()
        opt.step()
        m = mu * m + g
        update = newton_schulz(g + mu * m, dtype=torch.float32) * 0.2 * math.sqrt(40)
        expected = expected - lr * (update + wd * expected)
        torch.testing.assert_close(w.detach(), expected, rtol=0, atol=2e-6)


def test_lr_scheduler_scales_both_halves():
    w = torch.nn.Parameter(torch.randn(32, 32))
    b = torch.nn.Parameter(torch.randn(32))
    opt = MuonClip(
        [{"params": [w], "kind": "muon"}, {"params": [b], "kind": "adamw"}], lr=0.01, weight_decay=0.0
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5**step)
    deltas = []
    for step in range(2):
        before = (w.detach().clone(), b.detach().clone())
        w.grad = torch.randn(32, 32, generator=torch.Generator().manual_seed(step))
        b.grad = torch.ones(32)
        opt.step()
        sched.step()
        deltas.append(((w - before[0]).pow(2).mean().sqrt().item(), (b - before[1]).abs().mean().item()))
    assert 0.45 < deltas[1][0] / deltas[0][0] < 0.55  # Muon step halves with lr
    assert abs(deltas[1][1] / deltas[0][1] - 0.5) < 1e-3  # constant grad: each AdamW step moves by lr
