"""Temperature rule: trainer log-probs at the sampling temperature equal the sampler's; TIS and gap metrics."""

import pytest
import torch

from agentrl.train.logprobs import collate, gap_metrics, token_logprobs, truncated_is_weights
from tests.train.helpers import PAD, sample, tiny_model


@pytest.fixture(scope="module")
def sampled():
    model = tiny_model().eval()
    gen = torch.Generator().manual_seed(3)
    trajs = [
        sample(model, [5, 6, 7, 8], 6, temperature=0.7, gen=gen),
        sample(model, [9, 10], 3, temperature=0.7, gen=gen),  # shorter: exercises right padding
        sample(model, [11, 12, 13], 5, temperature=1.3, gen=gen),  # rows may differ in temperature
    ]
    return model, trajs


def test_trainer_logprobs_at_sampling_temperature_match_the_sampler(sampled):
    model, trajs = sampled
    batch = collate(trajs, PAD)
    assert batch.temperature_B.tolist() == pytest.approx([0.7, 0.7, 1.3])
    with torch.no_grad():
        lp = token_logprobs(model, batch.input_ids_BT, batch.attention_mask_BT, batch.temperature_B)
    gap = gap_metrics(lp, batch)
    assert gap["gap/logprob_abs_max"] < 1e-4
    # Scoring at T = 1 instead (the bug this rule prevents) gives a visible gap.
    with torch.no_grad():
        lp1 = token_logprobs(model, batch.input_ids_BT, batch.attention_mask_BT, torch.ones(3))
    assert gap_metrics(lp1, batch)["gap/logprob_abs_max"] > 1e-2
    # Padding and prompt positions carry no score in the mask.
    assert batch.loss_mask_BT[1, 5:].sum() == 0 and batch.has_rollout_lp_BT[1].sum() == 3


def test_trailing_padding_is_cut_before_the_forward_and_changes_no_log_prob(sampled):
    model, trajs = sampled
    batch = collate(trajs[1:2], PAD)  # the short row alone, then with 7 extra padding columns
    wide_ids = torch.nn.functional.pad(batch.input_ids_BT, (0, 7), value=PAD)
    wide_attn = torch.nn.functional.pad(batch.attention_mask_BT, (0, 7))
    seen = []
    hook = model.model.embed_tokens.register_forward_hook(lambda m, a, o: seen.append(a[0].shape[1]))
    with torch.no_grad():
        lp = token_logprobs(model, batch.input_ids_BT, batch.attention_mask_BT, batch.temperature_B)
        lp_wide = token_logprobs(model, wide_ids, wide_attn, batch.temperature_B)
    hook.remove()
    width = batch.input_ids_BT.shape[1]
    assert seen == [width, width]  # the model never sees the extra columns
    assert lp_wide.shape == (1, width + 7)
    assert torch.equal(lp_wide[:, :width], lp) and lp_wide[:, width:].abs().sum() == 0


def test_truncated_is_weights(sampled):
    _, trajs = sampled
    batch = collate(trajs, PAD)
    train = batch.rollout_logprobs_BT.clone()
    train[0, 4] += 2.0  # π_train / π_rollout = e^2 on one token -> capped
    train[1, 2] -= 1.0  # e^-1 on another
    token_w, seq_w, metrics = truncated_is_weights(train, batch, cap=2.0)
    assert token_w[0, 4].item() == pytest.approx(2.0)
    assert token_w[1, 2].item() == pytest.approx(torch.e**-1)
    assert token_w[2].tolist() == pytest.approx([1.0] * token_w.shape[1])
    assert seq_w.tolist() == pytest.approx([2.0, torch.e**-1, 1.0])
    assert metrics["tis/seq_capped_frac"] == pytest.approx(1 / 3)


def test_collate_rejects_bad_rows(sampled):
    _, trajs = sampled
    bad = trajs[0].model_copy(update={"loss_mask": [1] + trajs[0].loss_mask[1:]})
    with pytest.raises(ValueError, match="loss_mask\\[0\\]"):
        collate([bad], PAD)
    greedy = trajs[0].model_copy(update={"sampling": {"temperature": 0.0}})
    with pytest.raises(ValueError, match="temperature must be > 0"):
        collate([greedy], PAD)
