"""The optimizer benches run and print their keys (values are reported, never asserted on timing)."""

import pytest


@pytest.mark.slow
def test_qkclip_bench_keys_and_figure(tmp_path):
    from agentrl.bench.qkclip import run

    result = run(quick=True, out_dir=str(tmp_path))
    for key in (
        "tau",
        "max_logit_no_clip",
        "max_logit_clip",
        "final_loss_no_clip",
        "final_loss_clip",
        "heads_clipped_total",
    ):
        assert key in result
    assert result["max_logit_no_clip"] > 2 * result["tau"]  # without the clip the logits run away
    assert result["max_logit_clip"] < result["max_logit_no_clip"] and result["heads_clipped_total"] > 0
    assert (tmp_path / "qkclip.png").stat().st_size > 10_000


@pytest.mark.slow
def test_optim_bench_keys():
    from agentrl.bench.optim import run

    result = run(quick=True)
    for key in (
        "muon_vs_torch_max_abs_diff",
        "step_time_ratio_vs_torch",
        "expert_batched_speedup",
        "qk_tracking_overhead",
    ):
        assert key in result
    assert result["muon_vs_torch_max_abs_diff"] <= 1e-6  # a correctness number, not a timing
