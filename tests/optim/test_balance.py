"""Aux-loss-free balancing: counts from router hooks, Moonlight's zero-mean sign update, stats, and its effect."""

import pytest
import torch

from agentrl.errors import ConfigError
from agentrl.optim import ExpertLoadBalancer
from agentrl.optim.balance import bias_update
from tests.optim.helpers import batch, tiny_model


def test_bias_update_rule():
    load = torch.tensor([10.0, 0.0, 5.0, 5.0, 1.0])  # mean 4.2
    delta = bias_update(load, rate=1e-3)
    signs = torch.tensor([-1.0, 1.0, -1.0, -1.0, 1.0])
    torch.testing.assert_close(delta, 1e-3 * (signs - signs.mean()))
    assert abs(float(delta.sum())) < 1e-9
    assert torch.all(bias_update(torch.full((4,), 3.0), rate=1e-3) == 0)  # balanced: no move


def test_hooks_count_training_forwards_only():
    model = tiny_model()
    balancer = ExpertLoadBalancer(model, rate=1e-3)
    ids = batch(rows=2, seq=16)
    with torch.no_grad():
        model(input_ids=ids)
    assert all(float(load.sum()) == 0 for load in balancer.loads)
    model(input_ids=ids)
    top_k = model.config.num_experts_per_tok
    assert [float(load.sum()) for load in balancer.loads] == [2 * 16 * top_k] * 3  # 3 MoE layers
    balancer.remove()
    model(input_ids=ids)
    assert [float(load.sum()) for load in balancer.loads] == [2 * 16 * top_k] * 3


def test_update_moves_biases_against_the_load_and_reports_stats():
    model = tiny_model()
    balancer = ExpertLoadBalancer(model, rate=0.01)
    model(input_ids=batch(rows=1, seq=4))  # 8 assignments over 16 experts: many dead experts
    loads = [load.clone() for load in balancer.loads]
    stats = balancer.update()
    for router, load, dead, ratio in zip(
        balancer.routers,
        loads,
        stats["balance/dead_experts"],
        stats["balance/max_over_mean_load"],
        strict=True,
    ):
        bias = router.e_score_correction_bias
        assert dead == int((load == 0).sum()) >= 8
        assert ratio == pytest.approx(float(load.max() / load.mean()))
        assert torch.all(bias[load > load.mean()] < 0) and torch.all(bias[load == 0] > 0)
    assert all(float(load.sum()) == 0 for load in balancer.loads)  # counts reset


def test_rate_zero_leaves_biases_alone_but_still_reports():
    model = tiny_model()
    balancer = ExpertLoadBalancer(model, rate=0.0)
    model(input_ids=batch())
    stats = balancer.update()
    assert all(torch.all(r.e_score_correction_bias == 0) for r in balancer.routers)
    assert all(ratio >= 1.0 for ratio in stats["balance/max_over_mean_load"])


def test_repeated_updates_even_out_a_skewed_router():
    model = tiny_model(seed=4)
    balancer = ExpertLoadBalancer(model, rate=0.03)
    with torch.no_grad():
        for router in balancer.routers:
            router.e_score_correction_bias[:2] = 0.2  # experts 0 and 1 win every token
    ids = batch(seed=5, rows=4, seq=32)
    ratios = []
    for _ in range(15):
        model(input_ids=ids)
        per_layer = balancer.update()["balance/max_over_mean_load"]
        ratios.append(sum(per_layer) / len(per_layer))
    assert ratios[0] > 6.0  # two experts take (almost) all top-2 slots: up to 8x the mean load
    assert sorted(ratios[-5:])[2] < ratios[0] / 2, ratios


def test_model_without_routers_or_negative_rate_is_refused():
    with pytest.raises(ConfigError, match="needs MoE routers"):
        ExpertLoadBalancer(torch.nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="rate must be >= 0"):
        ExpertLoadBalancer(tiny_model(), rate=-1.0)
