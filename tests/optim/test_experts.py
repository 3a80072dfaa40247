"""Fused expert stacks: the batched path equals a per-expert loop over separate 2-D matrices."""

import pytest
import torch

from agentrl.optim import MuonClip

E, INTER, H = 4, 12, 20


def _step_both(stack_shape, chunks, steps=3):
    gen = torch.Generator().manual_seed(0)
    stack = torch.nn.Parameter(torch.randn(stack_shape, generator=gen))
    # The same weights as separate 2-D matrices: [E * chunks] of [rows / chunks, cols].
    pieces = [torch.nn.Parameter(m.clone()) for m in stack.detach().reshape(E * chunks, -1, stack_shape[-1])]
    # fp32 Newton-Schulz: this checks the chunking, not bf16 kernels. On CPUs with AMX, bf16 bmm and mm accumulate
    # in different orders, and three steps of lr 0.02 grow that to ~3e-4 (a chunking bug gives > 1e-3).
    batched = MuonClip([{"params": [stack], "kind": "muon", "chunks": chunks}], lr=0.02, ns_dtype="float32")
    looped = MuonClip([{"params": pieces, "kind": "muon"}], lr=0.02, ns_dtype="float32")
    for step in range(steps):
        grad = torch.randn(stack_shape, generator=torch.Generator().manual_seed(100 + step))
        stack.grad = grad.clone()
        for p, g in zip(pieces, grad.reshape(E * chunks, -1, stack_shape[-1]), strict=True):
            p.grad = g.clone()
        batched.step()
        looped.step()
    return stack.detach(), torch.stack([p.detach() for p in pieces]).reshape(stack_shape)


def test_gate_up_stack_equals_separate_gate_and_up_matrices():
    batched, looped = _step_both((E, 2 * INTER, H), chunks=2)
    torch.testing.assert_close(batched, looped, rtol=0, atol=1e-6)


def test_down_stack_equals_per_expert_matrices():
    batched, looped = _step_both((E, H, INTER), chunks=1)
    torch.testing.assert_close(batched, looped, rtol=0, atol=1e-6)


def test_gate_up_as_one_matrix_would_differ():
    # Guard against a vacuous test: orthogonalising [2I, H] jointly gives a different update.
    joint, _ = _step_both((E, 2 * INTER, H), chunks=1)
    split, _ = _step_both((E, 2 * INTER, H), chunks=2)
    assert (joint - split).abs().max() > 1e-3


def test_expert_matrix_matches_torch_muon_per_expert():
    # Per-matrix scale 0.2 * sqrt(max(INTER, H)) as torch.optim.Muon(match_rms_adamw) applies to each [INTER, H].
    gen = torch.Generator().manual_seed(5)
    stack = torch.nn.Parameter(torch.randn(E, 2 * INTER, H, generator=gen))
    refs = [torch.nn.Parameter(m.clone()) for m in stack.detach().reshape(2 * E, INTER, H)]
    ours = MuonClip([{"params": [stack], "kind": "muon", "chunks": 2}], lr=0.05, ns_dtype="bfloat16")
    ref = torch.optim.Muon(refs, lr=0.05, adjust_lr_fn="match_rms_adamw")
    grad = torch.randn(E, 2 * INTER, H, generator=gen)
    stack.grad = grad
    for p, g in zip(refs, grad.reshape(2 * E, INTER, H), strict=True):
        p.grad = g.clone()
    ours.step()
    ref.step()
    torch.testing.assert_close(
        stack.detach(), torch.stack([p.detach() for p in refs]).reshape(E, 2 * INTER, H), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("block_elements", [3 * INTER * H, 1 << 28])
def test_all_expert_stacks_of_a_model_pooled_equal_the_loop(monkeypatch, block_elements):
    # Several layers' gate_up and down stacks in two groups. A large block budget pools all of them, across the
    # two groups and with the down stacks transposed, into one Newton-Schulz batch; a budget of 3 matrices splits
    # every stack into blocks of its own. Both must equal the per-matrix loop.
    import agentrl.optim.muon as muon

    monkeypatch.setattr(muon, "NS_BLOCK_ELEMENTS_CPU", block_elements)
    gen = torch.Generator().manual_seed(9)
    shapes = [((E, 2 * INTER, H), 2), ((E, 2 * INTER, H), 2), ((E, H, INTER), 1), ((E, H, INTER), 1)]
    stacks = [torch.nn.Parameter(torch.randn(shape, generator=gen)) for shape, _ in shapes]
    groups = [
        {"params": stacks[:2], "kind": "muon", "chunks": 2},
        {"params": stacks[2:], "kind": "muon", "chunks": 1},
    ]
    pieces = [
        torch.nn.Parameter(m.clone())
        for p, (shape, chunks) in zip(stacks, shapes, strict=True)
        for m in p.detach().reshape(E * chunks, -1, shape[-1])
    ]
    batched = MuonClip(groups, lr=0.02, ns_dtype="float32")
    looped = MuonClip([{"params": pieces, "kind": "muon"}], lr=0.02, ns_dtype="float32")
    for step in range(2):
        grads = [
            torch.randn(p.shape, generator=torch.Generator().manual_seed(200 + step + 10 * i))
            for i, p in enumerate(stacks)
        ]
        piece_grads = [
            m
            for grad, (shape, chunks) in zip(grads, shapes, strict=True)
            for m in grad.reshape(E * chunks, -1, shape[-1])
        ]
        for p, grad in zip(stacks + pieces, grads + piece_grads, strict=True):
            p.grad = grad.clone()
        batched.step()
        looped.step()
    got = torch.cat([p.detach().reshape(-1) for p in stacks])
    want = torch.cat([p.detach().reshape(-1) for p in pieces])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
