"""MuonClip against torch: Muon half vs torch.optim.Muon(match_rms_adamw), AdamW half vs torch.optim.AdamW."""

import pytest
import torch

from agentrl.optim import MuonClip
from tests.optim.helpers import random_grads

SHAPES_2D = [(64, 32), (32, 64), (48, 48), (8, 96)]


def _clones(params):
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_matches_torch_muon_over_steps(nesterov):
    gen = torch.Generator().manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES_2D]
    theirs = _clones(ours)
    opt = MuonClip(
        [{"params": ours, "kind": "muon"}], lr=0.02, weight_decay=0.1, nesterov=nesterov, ns_dtype="bfloat16"
    )
    ref = torch.optim.Muon(
        theirs, lr=0.02, weight_decay=0.1, nesterov=nesterov, adjust_lr_fn="match_rms_adamw"
    )
    for step in range(6):
        for p, q, g in zip(ours, theirs, random_grads(ours, seed=step), strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    start = [torch.randn(s, generator=torch.Generator().manual_seed(0)) for s in SHAPES_2D]
    assert all(not torch.equal(p, s) for p, s in zip(ours, start, strict=True))  # training moved them
    diff = max((p - q).abs().max().item() for p, q in zip(ours, theirs, strict=True))
    assert diff <= 1e-6


def test_adamw_matches_torch_adamw_with_missing_grads():
    gen = torch.Generator().manual_seed(1)
    ours = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in [(64,), (32, 16), (5,), (7, 3)]]
    theirs = _clones(ours)
    opt = MuonClip(
        [{"params": ours, "kind": "adamw"}], lr=3e-3, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8
    )
    ref = torch.optim.AdamW(theirs, lr=3e-3, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8)
    for step in range(6):
        for i, (p, q, g) in enumerate(zip(ours, theirs, random_grads(ours, seed=10 + step), strict=True)):
            if step % 2 and i == 2:  # a parameter without a gradient this step keeps its own step count
                p.grad = q.grad = None
            else:
                p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    assert opt.state[ours[2]]["step"].item() == ref.state[theirs[2]]["step"].item() == 3


def test_mixed_groups_match_torch_muon_plus_adamw():
    # One MuonClip over an MLP == torch.optim.Muon on its matrices + torch.optim.AdamW on its biases.
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    ref_net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    ref_net.load_state_dict(net.state_dict())
    mats = [p for p in net.parameters() if p.ndim == 2]
    vecs = [p for p in net.parameters() if p.ndim == 1]
    opt = MuonClip(
        [{"params": mats, "kind": "muon"}, {"params": vecs, "kind": "adamw", "lr": 1e-3}],
        lr=0.02,
        ns_dtype="bfloat16",
    )
    ref = [
        torch.optim.Muon(
            [p for p in ref_net.parameters() if p.ndim == 2], lr=0.02, adjust_lr_fn="match_rms_adamw"
        ),
        torch.optim.AdamW(
            [p for p in ref_net.parameters() if p.ndim == 1], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1
        ),
    ]
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(3))
    for _ in range(4):
        for model, opts in ((net, [opt]), (ref_net, ref)):
            model(x).pow(2).mean().backward()
            for o in opts:
                o.step()
                o.zero_grad()
    for p, q in zip(net.parameters(), ref_net.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
