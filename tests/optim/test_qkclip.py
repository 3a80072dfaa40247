"""QK-Clip: row map, exactness (S_max = tau after clipping), untouched rows, stats and misconfiguration errors."""

import pytest
import torch
from pydantic import ValidationError

from agentrl.errors import ConfigError
from agentrl.optim import MuonClipConfig, QKClip, build_muonclip
from model.maxlogit import MaxLogitTracker
from model.qkclip_rows import MLAHeadDims, head_rows, qkclip_row_scales, query_weight
from tests.optim.helpers import batch, tiny_model


def test_row_scales_follow_the_mla_layout():
    dims = MLAHeadDims(num_heads=3, qk_nope_head_dim=4, qk_rope_head_dim=2, v_head_dim=5)
    gamma = torch.tensor([1.0, 0.25, 0.64], dtype=torch.float64)
    q_scale, kv_scale = qkclip_row_scales(gamma, dims)
    assert q_scale.shape == (18,) and kv_scale.shape == (27,)
    for h in range(3):
        rows = head_rows(dims, h)
        assert torch.all(q_scale[rows["q_nope"].start : rows["q_nope"].stop] == gamma[h].sqrt())
        assert torch.all(q_scale[rows["q_rope"].start : rows["q_rope"].stop] == gamma[h])
        assert torch.all(kv_scale[rows["k_nope"].start : rows["k_nope"].stop] == gamma[h].sqrt())
        assert torch.all(kv_scale[rows["v"].start : rows["v"].stop] == 1.0)
    assert head_rows(dims, 1)["q_rope"] == range(10, 12) and head_rows(dims, 2)["v"] == range(22, 27)


def _tracked_smax(model, tracker, ids):
    tracker.reset()
    with torch.no_grad():
        model(input_ids=ids)
    return tracker.smax()


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("q_lora_rank", [96, None])
def test_rerun_after_clip_gives_tau_for_clipped_heads(q_lora_rank):
    # One layer, so re-running the whole batch sees the same attention inputs (k2.md §1.4 "exactness").
    model = tiny_model(seed=0, boost_qk=8.0, num_hidden_layers=1, q_lora_rank=q_lora_rank)
    ids = batch(seed=0)
    tracker = MaxLogitTracker(model, track_no_grad=True)
    tracker.enable()
    before = _tracked_smax(model, tracker, ids)[0]
    tau = float(before.median())  # clips about half of the heads
    clipped = before > tau
    assert 0 < int(clipped.sum()) < before.numel()
    weights = _snapshot(model)
    stats = QKClip(tracker, tau=tau).apply(before[None])
    assert stats["qk_clip/heads_clipped"] == int(clipped.sum())
    after = _tracked_smax(model, tracker, ids)[0]
    torch.testing.assert_close(after[clipped], torch.full_like(after[clipped], tau), rtol=1e-3, atol=0)
    assert torch.equal(after[~clipped], before[~clipped])

    attn = tracker.attn_modules[0]
    q_name = "q_b_proj" if q_lora_rank else "q_proj"
    q_before = weights[f"model.layers.0.self_attn.{q_name}.weight"]
    kv_before = weights["model.layers.0.self_attn.kv_b_proj.weight"]
    dims = QKClip(tracker, tau=tau).dims[0]
    for h in range(dims.num_heads):
        rows = head_rows(dims, h)
        q_rows = slice(rows["q_nope"].start, rows["q_rope"].stop)
        k_rows = slice(rows["k_nope"].start, rows["k_nope"].stop)
        v_rows = slice(rows["v"].start, rows["v"].stop)
        assert torch.equal(attn.kv_b_proj.weight[v_rows], kv_before[v_rows])  # values never touched
        if not clipped[h]:
            assert torch.equal(query_weight(attn)[q_rows], q_before[q_rows])
            assert torch.equal(attn.kv_b_proj.weight[k_rows], kv_before[k_rows])
        else:
            assert not torch.equal(query_weight(attn)[q_rows], q_before[q_rows])
    for name, value in model.named_parameters():
        if not any(key in name for key in (q_name, "kv_b_proj")):
            # shared rope key + latent (kv_a_proj_with_mqa), q_a_proj, norms, MLP: bitwise unchanged
            assert torch.equal(value, weights[name]), name


def test_every_layer_exact_when_replayed_on_its_own_inputs():
    # With several layers, clipping layer l changes the inputs of layer l+1; each layer is exact on its own inputs.
    model = tiny_model(seed=1, boost_qk=8.0)
    ids = batch(seed=1)
    tracker = MaxLogitTracker(model, track_no_grad=True)
    tracker.enable()
    captured = {}

    def capture(module, args, kwargs):
        captured[module.layer_idx] = (args, kwargs)

    hooks = [m.register_forward_pre_hook(capture, with_kwargs=True) for m in tracker.attn_modules]
    before = _tracked_smax(model, tracker, ids)
    for h in hooks:
        h.remove()
    tau = float(before.median())
    clipped = before > tau
    stats = QKClip(tracker, tau=tau).apply(before)
    assert stats["qk_clip/heads_clipped"] == int(clipped.sum()) > 0
    tracker.reset()
    with torch.no_grad():
        for attn in tracker.attn_modules:
            args, kwargs = captured[attn.layer_idx]
            attn(*args, **kwargs)
    after = tracker.smax()
    torch.testing.assert_close(after[clipped], torch.full_like(after[clipped], tau), rtol=1e-3, atol=0)
    assert torch.equal(after[~clipped], before[~clipped])


def test_optimizer_step_clips_with_the_steps_smax_and_reports_stats():
    model = tiny_model(seed=2, boost_qk=8.0)
    ids = batch(seed=2)
    optimizer = build_muonclip(model, MuonClipConfig(lr=1e-3, qk_clip_tau=1.0))
    model(input_ids=ids, labels=ids).loss.backward()
    recorded = optimizer.qk_clip.tracker.smax()
    optimizer.step()
    stats = optimizer.last_stats
    assert stats["qk_clip/heads_clipped"] == int((recorded > 1.0).sum()) > 0
    assert stats["qk_clip/max_logit_per_layer"] == pytest.approx(recorded.amax(dim=1).tolist())
    assert stats["qk_clip/max_logit"] == pytest.approx(float(recorded.max()))
    assert torch.all(optimizer.qk_clip.tracker.smax() == float("-inf"))  # reset for the next step


def test_no_forward_means_no_clip():
    model = tiny_model(seed=3, boost_qk=8.0)
    tracker = MaxLogitTracker(model, track_no_grad=True)
    weights = _snapshot(model)
    stats = QKClip(tracker, tau=1.0).apply()
    assert stats["qk_clip/heads_clipped"] == 0
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())


def test_tau_must_be_positive():
    tracker = MaxLogitTracker(tiny_model(num_hidden_layers=1))
    for tau in (0.0, -5.0):
        with pytest.raises(ConfigError, match="tau must be > 0"):
            QKClip(tracker, tau=tau)
    with pytest.raises(ValidationError, match="qk_clip_tau"):
        MuonClipConfig(qk_clip_tau=0)


def test_qk_clip_on_a_model_without_mla_is_a_clear_error():
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
        )
    )
    with pytest.raises(ConfigError, match=r"Multi-head Latent Attention.*LlamaAttention.*kv_b_proj"):
        build_muonclip(llama, MuonClipConfig())
    assert llama.config._attn_implementation != "agentrl_maxlogit"  # refused before switching the model
    optimizer = build_muonclip(llama, MuonClipConfig(qk_clip=False))  # fine without QK-Clip
    assert optimizer.qk_clip is None and optimizer.balancer is None
