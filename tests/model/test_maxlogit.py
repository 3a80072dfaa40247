"""Max-logit tracking: outputs equal sdpa (bitwise on the "sdpa" strategy, to float rounding on "fused"), and
recorded maxima equal a brute-force computation on both strategies."""

import pytest
import torch
from transformers import AttentionInterface, DeepseekV3ForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

import model.maxlogit as maxlogit
from model.maxlogit import MaxLogitTracker, fused_attention_forward, resolve_strategy
from model.presets import build_config

CAPTURE = "agentrl_test_capture"


def _tiny(seed: int = 0, **overrides) -> DeepseekV3ForCausalLM:
    torch.manual_seed(seed)
    model = DeepseekV3ForCausalLM(build_config("k2-tiny", **overrides)).eval()
    with torch.no_grad():  # larger q/k weights so logits are far from zero and differ per head
        for name, p in model.named_parameters():
            if "q_b_proj" in name or "kv_b_proj" in name:
                p.mul_(8.0)
    return model


def _brute_force_smax(model, input_ids, pad_mask_bs):
    """Capture q/k with a pass-through attention and compute maxima with an independently built mask.

    As in the kernel, padding masks keys only: a padded query row still goes through the softmax.
    """
    captured = {}

    def capture(module, query, key, value, attention_mask, **kwargs):
        captured[module.layer_idx] = (query.detach().clone(), key.detach().clone(), kwargs.get("scaling"))
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register(CAPTURE, capture)
    from transformers import AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionMaskInterface.register(CAPTURE, sdpa_mask)
    model.set_attn_implementation(CAPTURE)
    with torch.no_grad():
        model(input_ids=input_ids, attention_mask=pad_mask_bs)
    model.set_attn_implementation("sdpa")
    batch, seq = input_ids.shape
    out = []
    for layer in sorted(captured):
        q, k, scaling = captured[layer]
        heads = q.shape[1]
        best = torch.full((heads,), float("-inf"))
        for b in range(batch):
            for h in range(heads):
                for i in range(seq):
                    for j in range(i + 1):
                        if (
                            pad_mask_bs[b, j] == 0
                        ):  # padded keys are masked; padded query rows still reach softmax
                            continue
                        logit = float(q[b, h, i].double() @ k[b, h, j].double()) * scaling
                        best[h] = max(best[h], logit)
        out.append(best)
    return torch.stack(out)


@pytest.mark.parametrize("strategy", ["sdpa", "fused"])
def test_outputs_equal_sdpa_and_tracking_off_is_sdpa(strategy):
    model = _tiny()
    ids = torch.randint(0, 2048, (2, 24))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        tracker = MaxLogitTracker(model, track_no_grad=True, strategy=strategy)
        tracker.enable()
        tracked = model(input_ids=ids).logits
        tracker.disable()
        again = model(input_ids=ids).logits
    if strategy == "sdpa":
        assert torch.equal(ref, tracked)
    else:  # one QK^T instead of sdpa's q*sqrt(s) @ (k*sqrt(s))^T: float rounding only
        torch.testing.assert_close(tracked, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(ref, again)
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("strategy", ["sdpa", "fused"])
def test_maxima_equal_brute_force_with_padding(strategy):
    model = _tiny(seed=1)
    ids = torch.randint(0, 2048, (2, 12))
    pad = torch.ones(2, 12, dtype=torch.long)
    pad[1, 9:] = 0  # right padding on the second row
    expected_LH = _brute_force_smax(model, ids, pad)
    tracker = MaxLogitTracker(model, track_no_grad=True, strategy=strategy)
    tracker.enable()
    tracker.reset()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=pad)
    got_LH = tracker.smax()
    assert got_LH.shape == (4, 4)
    torch.testing.assert_close(got_LH, expected_LH.float(), rtol=1e-5, atol=1e-4)
    assert got_LH.max() > 5.0  # the test would be vacuous with tiny logits


def test_auto_strategy_is_fused_on_cpu_and_names_are_checked():
    assert resolve_strategy("auto", torch.device("cpu")) == "fused"
    assert resolve_strategy("auto", torch.device("cuda")) == "sdpa"
    with pytest.raises(ValueError, match="strategy"):
        MaxLogitTracker(_tiny(), strategy="flash")


class _Module(torch.nn.Module):
    def __init__(self, groups: int = 1) -> None:
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = True


def _sdpa(module, q, k, v, mask, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, q, k, v, mask, **kwargs)[0]


def _brute_max(q, k, allowed, scale):
    logits = (q.double() @ k.double().transpose(-1, -2)) * scale
    return logits.masked_fill(~allowed, float("-inf")).amax(dim=(0, 2, 3)).float()


@pytest.mark.parametrize("block", [1 << 18, 64])  # one block, and many query blocks of 4 rows
@pytest.mark.parametrize("case", ["causal", "left_pad", "gqa", "float_mask", "kv_longer", "query_broadcast"])
def test_fused_attention_equals_sdpa_output_grads_and_max(monkeypatch, block, case):
    monkeypatch.setattr(maxlogit, "_FUSED_BLOCK_ELEMENTS", block)
    gen = torch.Generator().manual_seed(7)
    b, heads, q_len, kv_len, d, dv = 2, 4, 9, 9, 24, 8
    groups = 2 if case == "gqa" else 1
    if case == "kv_longer":
        kv_len = 13  # is_causal with a longer key cache: sdpa_attention_forward crops keys to q_len
    q = (3 * torch.randn(b, heads, q_len, d, generator=gen)).requires_grad_()
    k = (3 * torch.randn(b, heads // groups, kv_len, d, generator=gen)).requires_grad_()
    v = torch.randn(b, heads // groups, kv_len, dv, generator=gen).requires_grad_()
    module = _Module(groups)
    mask = None
    if case == "left_pad":  # row 1 has 3 pad tokens on the left: its first query rows see no key at all
        keys_ok = torch.ones(b, kv_len, dtype=torch.bool)
        keys_ok[1, :3] = False
        mask = torch.ones(q_len, kv_len, dtype=torch.bool).tril()[None, None] & keys_ok[:, None, None, :]
    if case == "query_broadcast":  # a [b, 1, 1, kv] key mask shared by every query row (no causal mask)
        keys_ok = torch.ones(b, 1, 1, kv_len, dtype=torch.bool)
        keys_ok[0, ..., 5:] = False
        mask = keys_ok
    if case == "float_mask":
        allowed = torch.ones(q_len, kv_len, dtype=torch.bool).tril()[None, None].expand(b, 1, q_len, kv_len)
        mask = torch.zeros(b, 1, q_len, kv_len).masked_fill(~allowed, torch.finfo(torch.float32).min)
    scale = d**-0.5
    ref = _sdpa(module, q, k, v, mask, scaling=scale)
    out, head_max = fused_attention_forward(module, q, k, v, mask, scaling=scale)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    grads_ref = torch.autograd.grad(ref.square().sum(), (q, k, v))
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # The max over exactly the logits that reach the softmax, from an independent float64 computation.
    k_rep = k.detach().repeat_interleave(groups, dim=1)[
        :, :, : min(kv_len, q_len) if mask is None else kv_len
    ]
    if mask is None:
        allowed_mask = torch.ones(q_len, k_rep.shape[2], dtype=torch.bool).tril()[None, None]
    elif mask.dtype == torch.bool:
        allowed_mask = mask.expand(b, 1, q_len, kv_len)
    else:
        allowed_mask = mask > torch.finfo(torch.float32).min / 2
    torch.testing.assert_close(
        head_max, _brute_max(q.detach(), k_rep, allowed_mask, scale), rtol=1e-6, atol=1e-5
    )
    if case == "left_pad":
        assert torch.isfinite(out).all()  # fully masked rows give zeros, as sdpa's safe softmax does


def test_fused_training_forward_matches_sdpa_loss_and_grads():
    ids = torch.randint(0, 2048, (2, 20), generator=torch.Generator().manual_seed(3))
    losses, grads = [], []
    for track in (False, True):
        model = _tiny(seed=4).train()
        tracker = MaxLogitTracker(model, strategy="fused")
        if track:
            tracker.enable()
            tracker.reset()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        if track:
            assert torch.isfinite(tracker.smax()).all()
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-5)


def test_running_max_over_micro_batches_and_reset():
    model = _tiny(seed=2)
    tracker = MaxLogitTracker(model, track_no_grad=True)
    tracker.enable()
    a, b = torch.randint(0, 2048, (1, 16)), torch.randint(0, 2048, (1, 16))
    with torch.no_grad():
        tracker.reset()
        model(input_ids=a)
        smax_a = tracker.smax()
        tracker.reset()
        model(input_ids=b)
        smax_b = tracker.smax()
        tracker.reset()
        model(input_ids=a)
        model(input_ids=b)
        both = tracker.smax()
    assert torch.equal(both, torch.maximum(smax_a, smax_b))


def test_no_grad_forwards_are_not_recorded_by_default():
    model = _tiny(seed=3)
    tracker = MaxLogitTracker(model)
    tracker.enable()
    tracker.reset()
    ids = torch.randint(0, 2048, (1, 16))
    with torch.no_grad():
        model(input_ids=ids)
    assert torch.isinf(tracker.smax()).all()
    model(input_ids=ids).logits.sum().backward()
    assert torch.isfinite(tracker.smax()).all()


def test_fused_attention_in_bf16_is_as_accurate_as_sdpa():
    # sdpa's CPU math backend computes bf16 attention in fp32; the fused path must not be less accurate.
    gen = torch.Generator().manual_seed(8)
    q, k = (
        (3 * torch.randn(2, 4, 33, 96, generator=gen)).bfloat16(),
        (3 * torch.randn(2, 4, 33, 96, generator=gen)).bfloat16(),
    )
    v = torch.randn(2, 4, 33, 32, generator=gen).bfloat16()
    module, scale = _Module(), 96**-0.5
    exact = _sdpa(module, q.float(), k.float(), v.float(), None, scaling=scale)
    ref = _sdpa(module, q, k, v, None, scaling=scale)
    out, head_max = fused_attention_forward(module, q, k, v, None, scaling=scale)
    assert out.dtype == torch.bfloat16
    assert (out.float() - exact).abs().max() <= 1.5 * (ref.float() - exact).abs().max() + 1e-3
    allowed = torch.ones(33, 33, dtype=torch.bool).tril()[None, None]
    torch.testing.assert_close(
        head_max, _brute_max(q.float(), k.float(), allowed, scale), rtol=1e-5, atol=1e-4
    )
