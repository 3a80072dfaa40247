"""Two gloo ranks: QK-Clip takes the MAX of S_max over ranks, the balancer SUMs expert loads over ranks."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, init_file: str, out: dict) -> None:
    from agentrl.optim import ExpertLoadBalancer, QKClip
    from model.maxlogit import MaxLogitTracker
    from tests.optim.helpers import batch, tiny_model

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        model = tiny_model(seed=0, boost_qk=8.0)
        tracker = MaxLogitTracker(model)
        tracker.enable()
        balancer = ExpertLoadBalancer(model, rate=1e-3)
        ids = batch(seed=rank)  # each rank sees different data
        model(input_ids=ids)
        local_smax = tracker.smax()
        local_loads = torch.stack([load.clone() for load in balancer.loads])
        reduced = QKClip(tracker, tau=1.0).reduced_smax()
        stats = QKClip(tracker, tau=float(reduced.median())).apply(reduced)
        balancer.update()
        out[rank] = {
            "local_smax": local_smax,
            "reduced_smax": reduced,
            "local_loads": local_loads,
            "bias": torch.stack([r.e_score_correction_bias.clone() for r in balancer.routers]),
            "kv_b": model.model.layers[1].self_attn.kv_b_proj.weight.detach().clone(),
            "clipped": stats["qk_clip/heads_clipped"],
        }
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_reductions_over_two_ranks(tmp_path):
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(str(tmp_path / "init"), out), nprocs=2, join=True)
        results = dict(out)
    r0, r1 = results[0], results[1]
    assert not torch.equal(r0["local_smax"], r1["local_smax"])
    expected = torch.maximum(r0["local_smax"], r1["local_smax"])
    assert torch.equal(r0["reduced_smax"], expected) and torch.equal(r1["reduced_smax"], expected)
    assert r0["clipped"] == r1["clipped"] > 0
    assert torch.equal(r0["kv_b"], r1["kv_b"])  # both ranks clip identically
    # Biases moved by the summed loads, identically on both ranks.
    from agentrl.optim.balance import bias_update

    total = r0["local_loads"] + r1["local_loads"]
    expected_bias = torch.stack([bias_update(load, 1e-3) for load in total])
    torch.testing.assert_close(r0["bias"], expected_bias)
    assert torch.equal(r0["bias"], r1["bias"])
