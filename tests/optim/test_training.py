"""MuonClip on the tiny K2 model: loss falls, two identical runs are bitwise equal, checkpoints resume exactly."""

import torch

from agentrl.optim import MuonClipConfig, build_muonclip
from tests.optim.helpers import batch, tiny_model

CONFIG = MuonClipConfig(lr=0.02, qk_clip_tau=0.3)  # the tiny model starts near 0.27: the clip takes part


def _train(steps: int, seed: int = 0, model=None, optimizer=None):
    model = model if model is not None else tiny_model(seed=seed)
    optimizer = optimizer if optimizer is not None else build_muonclip(model, CONFIG)
    ids = batch(seed=seed, rows=2, seq=24)
    losses, clipped = [], 0
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        clipped += optimizer.last_stats["qk_clip/heads_clipped"]
    return model, optimizer, losses, clipped


def test_loss_falls_on_a_fixed_batch():
    _, optimizer, losses, clipped = _train(steps=10)
    assert losses[-1] < 0.6 * losses[0], losses
    assert clipped > 0
    assert optimizer.last_stats["qk_clip/max_logit"] > 0


def test_two_identical_runs_are_bitwise_equal():
    model_a, _, losses_a, _ = _train(steps=3, seed=1)
    model_b, _, losses_b, _ = _train(steps=3, seed=1)
    assert losses_a == losses_b
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_state_dict_resume_matches_an_uninterrupted_run():
    straight, _, _, _ = _train(steps=3, seed=2)
    model, optimizer, _, _ = _train(steps=2, seed=2)
    model_state = {k: v.clone() for k, v in model.state_dict().items()}
    optim_state = optimizer.state_dict()
    resumed = tiny_model(seed=99)  # different init, overwritten by the checkpoint
    resumed.load_state_dict(model_state)  # includes the routers' correction biases
    resumed_optimizer = build_muonclip(resumed, CONFIG)
    resumed_optimizer.load_state_dict(optim_state)
    _, _, _, clipped = _train(steps=1, seed=2, model=resumed, optimizer=resumed_optimizer)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert clipped > 0  # the resumed step went through QK-Clip too
