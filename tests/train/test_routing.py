"""Router capture, mismatch measurement and routing replay on the real DeepseekV3 MoE block."""

import pytest
import torch

from agentrl.train.routing import RouterCapture, RoutingReplay, routing_mismatch
from tests.train.helpers import tiny_model


@pytest.fixture
def model_and_input():
    model = tiny_model(layers=3)  # two MoE layers
    ids = torch.randint(3, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    return model, ids


def test_capture_and_mismatch(model_and_input):
    model, ids = model_and_input
    with RouterCapture(model) as cap, torch.no_grad():
        model(input_ids=ids)
    first = cap.layers()
    assert len(first) == 2 and first[0].shape == (24, 2)
    with RouterCapture(model) as cap2, torch.no_grad():
        model(input_ids=ids)
    assert routing_mismatch(first, cap2.layers()) == 0.0
    # Hooks are gone after the context: no more recording.
    assert all(len(r._forward_hooks) == 0 for r in cap.routers)
    # Perturb one token's experts in one layer: 1 of 48 (token, layer) pairs differs.
    other = [x.clone() for x in first]
    other[1][5] = torch.tensor([(int(first[1][5, 0]) + 1) % 16, int(first[1][5, 0])])
    if set(other[1][5].tolist()) == set(first[1][5].tolist()):
        other[1][5] = torch.tensor([(int(first[1][5, 0]) + 2) % 16, (int(first[1][5, 0]) + 3) % 16])
    assert routing_mismatch(first, other) == pytest.approx(1 / 48)
    mask = torch.ones(24, dtype=torch.bool)
    mask[5] = False  # a padding token is not counted
    assert routing_mismatch(first, other, mask) == 0.0
    # Order within the top-k set does not matter.
    assert routing_mismatch(first, [x.flip(-1) for x in first]) == 0.0


def test_replaying_own_choices_is_exact_and_other_choices_change_the_output(model_and_input):
    model, ids = model_and_input
    with RouterCapture(model) as cap:
        base = model(input_ids=ids).logits
    recorded = cap.layers()
    with RoutingReplay(model, recorded):
        replayed = model(input_ids=ids).logits
    assert torch.equal(base, replayed)
    shifted = [(x + 1) % 16 for x in recorded]
    with RoutingReplay(model, shifted), RouterCapture(model) as cap2:
        out = model(input_ids=ids).logits
        out.sum().backward()
    assert not torch.allclose(base, out)
    assert routing_mismatch(shifted, cap2.layers()) == 0.0  # capture sees the replayed ids
    router = RouterCapture(model).routers[0]
    assert router.weight.grad is not None and router.weight.grad.abs().sum() > 0  # router still trains
    with pytest.raises(ValueError, match="tokens recorded"), RoutingReplay(model, [x[:5] for x in recorded]):
        model(input_ids=ids)
