"""Max-logit tracking: outputs equal sdpa exactly; recorded maxima equal a brute-force computation."""

import torch
from transformers import AttentionInterface, DeepseekV3ForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from model.maxlogit import MaxLogitTracker
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


def test_outputs_equal_sdpa_and_tracking_off_is_sdpa():
    model = _tiny()
    ids = torch.randint(0, 2048, (2, 24))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        tracker = MaxLogitTracker(model, track_no_grad=True)
        tracker.enable()
        tracked = model(input_ids=ids).logits
        tracker.disable()
        again = model(input_ids=ids).logits
    assert torch.equal(ref, tracked)
    assert torch.equal(ref, again)
    assert model.config._attn_implementation == "sdpa"


def test_maxima_equal_brute_force_with_padding():
    model = _tiny(seed=1)
    ids = torch.randint(0, 2048, (2, 12))
    pad = torch.ones(2, 12, dtype=torch.long)
    pad[1, 9:] = 0  # right padding on the second row
    expected_LH = _brute_force_smax(model, ids, pad)
    tracker = MaxLogitTracker(model, track_no_grad=True)
    tracker.enable()
    tracker.reset()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=pad)
    got_LH = tracker.smax()
    assert got_LH.shape == (4, 4)
    torch.testing.assert_close(got_LH, expected_LH.float(), rtol=1e-5, atol=1e-4)
    assert got_LH.max() > 5.0  # the test would be vacuous with tiny logits


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
