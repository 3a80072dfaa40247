"""`agentrl bench gpu`: every section runs (k2-tiny on CPU here, so the GPU bench cannot rot where CI has no GPU)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from agentrl.bench import gpu
from agentrl.errors import AgentRLError


@pytest.mark.slow
def test_every_section_runs_on_cpu_with_k2_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "gpu.json"
    results = gpu.run(quick=True, preset="k2-tiny", device="cpu", out_path=str(out))
    assert json.loads(out.read_text()) == results
    for name in gpu.SECTIONS:
        assert "error" not in results[name], results[name]
    train = results["train_k2_small"]
    for opt in ("muonclip", "muonclip_no_qkclip", "adamw_torch_fused"):
        assert train[opt]["tokens_per_s"] > 0 and train[opt]["optimizer_step_s"] > 0
    rl = results["rl_update_k2_small"]
    for precision in ("fp32", "bf16"):
        assert math.isfinite(rl[precision]["loss_rl"]) and math.isfinite(rl[precision]["loss_ptx"])
    # the same update in two precisions: same loss up to bf16 rounding
    assert rl["bf16"]["loss_ptx"] == pytest.approx(rl["fp32"]["loss_ptx"], rel=0.02)
    fsdp = results["fsdp_update_k2_small"]  # the sharded update equals the plain one
    assert fsdp["dtensor_params"] > 0 and fsdp["max_abs_param_diff"] <= 1e-5
    sync = results["weight_sync_trainer_side"]
    assert sync["bytes_bf16"] == 2 * sum(
        p.numel() for p in gpu.Target("k2-tiny", torch.device("cpu")).model().state_dict().values()
    )
    assert results["optim_k2_tiny"]["muon_vs_torch_max_abs_diff"] <= 1e-6


def test_sections_are_checked_and_cuda_is_required(monkeypatch):
    with pytest.raises(AgentRLError, match="unknown gpu bench section"):
        gpu.run(preset="k2-tiny", device="cpu", sections=["train_k2_small", "nope"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(AgentRLError, match="needs a CUDA device"):
        gpu.run()
