"""`loss_agg: record_mean`: each record's mean token NLL, then the mean over records (verl's seq-mean-token-mean),
checked against torch's cross-entropy, and wired into the trainer so that it matches TRL's own loss where the two
must agree (one record per batch) and not where they must differ (records of different lengths in one batch)."""

import pytest
import torch
import torch.nn.functional as F

from agentrl.train.record_mean import record_mean_nll
from agentrl.train.sft import SFTStageConfig, run_sft


def _reference(logits_BTV, labels_BT):
    per_record = []
    for logits_TV, labels_T in zip(logits_BTV, labels_BT, strict=True):
        target = labels_T[1:]
        if (target != -100).any():
            per_record.append(F.cross_entropy(logits_TV[:-1], target, ignore_index=-100))
    return torch.stack(per_record).mean()


def test_record_mean_matches_per_record_cross_entropy():
    torch.manual_seed(0)
    logits_BTV = torch.randn(3, 7, 11)
    labels_BT = torch.randint(0, 11, (3, 7))
    labels_BT[0, :5] = -100  # record 0 supervises 1 token, record 1 all 6, record 2 none
    labels_BT[2, :] = -100
    got = record_mean_nll(logits_BTV, labels_BT)
    torch.testing.assert_close(got, _reference(logits_BTV, labels_BT))
    token_mean = F.cross_entropy(
        logits_BTV[:, :-1].reshape(-1, 11), labels_BT[:, 1:].reshape(-1), ignore_index=-100
    )
    assert not torch.isclose(got, token_mean)  # unequal record lengths: the two aggregations differ


def test_equal_record_lengths_give_the_token_mean():
    torch.manual_seed(1)
    logits_BTV = torch.randn(4, 6, 9)
    labels_BT = torch.randint(0, 9, (4, 6))
    labels_BT[:, :3] = -100
    token_mean = F.cross_entropy(
        logits_BTV[:, :-1].reshape(-1, 9), labels_BT[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(record_mean_nll(logits_BTV, labels_BT), token_mean)


def test_a_batch_without_supervised_tokens_is_a_finite_zero_with_a_gradient():
    logits_BTV = torch.randn(2, 5, 7, requires_grad=True)
    loss = record_mean_nll(logits_BTV, torch.full((2, 5), -100))
    loss.backward()
    assert loss.item() == 0.0 and logits_BTV.grad is not None


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    from agentrl.synth.pipeline import run_synth

    out = tmp_path_factory.mktemp("synth")
    run_synth({"out_dir": str(out), "target": 24, "tasks": {"heldout": 4, "rl": 4}}, echo=None)
    return out / "trajectories.jsonl"


def _weights(tmp_path, name, data, init, **over):
    from safetensors.torch import load_file

    cfg = SFTStageConfig(
        data=str(data),
        init=init,
        out_dir=str(tmp_path / name),
        max_steps=2,
        lr=3e-3,
        warmup_ratio=0.0,
        lr_scheduler="constant",
        **over,
    )
    return load_file(f"{run_sft(cfg, progress=False)['checkpoint']}/model.safetensors")


def _worst(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.slow
def test_trainer_matches_trl_on_one_record_batches_and_differs_on_mixed_lengths(
    synth_data, tiny_checkpoint, tmp_path
):
    trl = _weights(tmp_path, "trl", synth_data, tiny_checkpoint, batch_size=1)
    ours = _weights(tmp_path, "ours", synth_data, tiny_checkpoint, batch_size=1, loss_agg="record_mean")
    assert _worst(trl, ours) < 1e-5  # one record per batch: its token mean is the record mean
    big = _weights(tmp_path, "big", synth_data, tiny_checkpoint, batch_size=2, loss_agg="record_mean")
    assert _worst(big, _weights(tmp_path, "big_trl", synth_data, tiny_checkpoint, batch_size=2)) > 1e-5
