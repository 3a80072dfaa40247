"""Trainer invariances: micro-batch accumulation equals one big batch; checkpoint writes are atomic; metrics resume."""

import json

import pytest
import torch

from agentrl.train.checkpoint import latest_checkpoint, load_latest, save_train_state
from agentrl.train.interfaces import RolloutRequest
from agentrl.train.learner import PolicyLearner
from agentrl.train.metrics import MetricsLogger, read_jsonl
from agentrl.train.rl_config import RLConfig
from agentrl.train.schedules import ConstantSchedule
from agentrl.train.sources import FixedPoolRollout
from tests.train.helpers import PAD, pool_tasks, tiny_model
from tests.train.test_ptx import GradCapture


def _grads(**cfg_kw):
    model = tiny_model()
    cfg = RLConfig.model_validate({"optimizer": {"grad_clip": None}, "tasks_per_step": 3, **cfg_kw})
    opt = GradCapture(model.parameters())
    learner = PolicyLearner(model, opt, cfg.objective.build(), cfg, PAD, ConstantSchedule(1.0))
    torch.manual_seed(0)
    trajs = FixedPoolRollout()(RolloutRequest(0, 0, pool_tasks(3), 4, 0.8, 0))
    # Shuffle so groups arrive interleaved: the learner must regroup them.
    trajs = [trajs[i] for i in torch.randperm(len(trajs), generator=torch.Generator().manual_seed(1))]
    metrics = learner.update(trajs, [t.reward for t in trajs], step=0, temperature=0.8)
    return opt.grads, metrics


@pytest.mark.parametrize("objective", [{"name": "k2", "tau": 0.3}, {"name": "ppo_clip"}])
def test_microbatch_accumulation_equals_full_batch(objective):
    full, m_full = _grads(objective=objective)
    micro, m_micro = _grads(objective=objective, groups_per_microbatch=1)
    for a, b in zip(full, micro, strict=True):
        assert torch.allclose(a, b, atol=1e-7, rtol=1e-4)
    assert m_micro["loss/rl"] == pytest.approx(m_full["loss/rl"], rel=1e-5)
    assert any(g.abs().sum() > 0 for g in full)


def _mixed_width_trajs():
    """Two groups with short prompts, two with long ones: micro-batches of one group run at different widths."""
    tasks = pool_tasks(2, prompt_len=8) + [
        t.model_copy(update={"id": f"long{i}"}) for i, t in enumerate(pool_tasks(2, seed=5, prompt_len=30))
    ]
    torch.manual_seed(0)
    return FixedPoolRollout()(RolloutRequest(0, 0, tasks, 4, 0.8, 0))


def test_trimmed_microbatches_equal_the_full_padded_batch_with_and_without_routing_replay():
    trajs = _mixed_width_trajs()
    assert len({len(t.token_ids) for t in trajs}) > 2
    results = {}
    for name, kw in {
        "full": {},
        "micro": {"groups_per_microbatch": 1},
        "micro_replay": {"groups_per_microbatch": 1, "routing": {"replay": "score"}},
    }.items():
        results[name] = _update(trajs, tasks_per_step=4, **kw)
    full, m_full = results["full"]
    for name in ("micro", "micro_replay"):
        grads, m = results[name]
        for a, b in zip(full, grads, strict=True):
            assert torch.allclose(a, b, atol=1e-7, rtol=1e-4), name
        assert m["loss/rl"] == pytest.approx(m_full["loss/rl"], rel=1e-5)
        # Expert ids captured from trimmed passes are laid out at the batch width: they line up exactly.
        assert m["routing/mismatch_score_vs_train"] == 0.0
        assert m["moe/max_over_mean_load"] == pytest.approx(m_full["moe/max_over_mean_load"])


def test_routing_replay_of_the_scoring_pass_leaves_the_first_update_unchanged():
    plain, _ = _grads()
    replayed, m = _grads(routing={"replay": "score"})
    for a, b in zip(plain, replayed, strict=True):
        assert torch.allclose(a, b, atol=1e-7, rtol=1e-5)
    assert m["routing/mismatch_score_vs_train"] == 0.0


def test_checkpoint_partial_write_never_replaces_the_last_good_one(tmp_path, monkeypatch):
    root = tmp_path / "ckpt"
    save_train_state(root, 1, {"step": 1, "w": torch.ones(3)})
    real_save = torch.save

    def crash(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_train_state(root, 2, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.setattr(torch, "save", real_save)
    assert latest_checkpoint(root).name == "step-000001"
    assert load_latest(root)["step"] == 1
    # A stale `latest` pointing at a pruned directory falls back to the newest complete one.
    (root / "latest").write_text("step-000009")
    assert load_latest(root)["step"] == 1
    # The next save cleans the leftover temp dir and prunes to `keep`.
    for step in (2, 3, 4):
        save_train_state(root, step, {"step": step}, keep=2)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-000003", "step-000004"]
    assert load_latest(root)["step"] == 4
    assert load_latest(tmp_path / "none") is None


def test_metrics_resume_drops_rows_after_the_checkpoint(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    for step in (1, 2, 3):
        log.log(step, {"loss": float(step), "per_layer": [1.0, 2.0], "flag": True, "text": "skipped"})
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "loss": ')  # torn by a kill
    resumed = MetricsLogger(tmp_path, tensorboard=False, resume_step=2)
    resumed.log(3, {"loss": 30.0})
    resumed.close()
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 1.0), (2, 2.0), (3, 30.0)]
    assert rows[0]["per_layer"] == [1.0, 2.0] and rows[0]["flag"] == 1.0 and "text" not in rows[0]
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1


def _with_engine_routing(trajs, model, shift=0):
    """Attach expert ids as an engine would report them ([token][layer][k], all hidden layers, from position 0),
    here taken from the trainer's own forward of each sequence (optionally shifted to fake a mismatch)."""
    from agentrl.train.routing import RouterCapture

    out = []
    for t in trajs:
        with RouterCapture(model) as cap, torch.no_grad():
            model(input_ids=torch.tensor([t.token_ids]))
        moe_TK = (cap.layers()[0] + shift) % 16
        ids = [[[0, 0], moe_TK[i].tolist()] for i in range(len(t.token_ids) - 1)]  # layer 0 is dense
        out.append(t.model_copy(update={"metadata": {"routed_experts": {"start": 0, "ids": ids}}}))
    return out


def _update(trajs, **cfg_kw):
    model = tiny_model()
    cfg = RLConfig.model_validate({"optimizer": {"grad_clip": None}, "tasks_per_step": 3} | cfg_kw)
    opt = GradCapture(model.parameters())
    learner = PolicyLearner(model, opt, cfg.objective.build(), cfg, PAD, ConstantSchedule(1.0))
    metrics = learner.update(trajs, [t.reward for t in trajs], step=0, temperature=0.8)
    return opt.grads, metrics


def test_rollout_routing_mismatch_and_replay():
    torch.manual_seed(0)
    trajs = FixedPoolRollout()(RolloutRequest(0, 0, pool_tasks(3), 4, 0.8, 0))
    model = tiny_model()
    same = _with_engine_routing(trajs, model)
    _, m = _update(same)
    # Same weights, one sequence at a time vs the padded batch: identical routing on every reported position.
    assert m["routing/mismatch_rollout_vs_train"] == 0.0
    shifted = _with_engine_routing(trajs, model, shift=3)
    plain, m_shift = _update(shifted)
    assert m_shift["routing/mismatch_rollout_vs_train"] == 1.0
    replayed, _ = _update(shifted, routing={"replay": "rollout"})
    assert any(not torch.allclose(a, b) for a, b in zip(plain, replayed, strict=True))
    with pytest.raises(ValueError, match="routed_experts"):
        _update(trajs, routing={"replay": "rollout"})


def test_bf16_precision_autocasts_the_update_and_keeps_fp32_weights():
    full, _ = _grads()
    half, metrics = _grads(precision="bf16")
    flat_full = torch.cat([g.flatten() for g in full])
    flat_half = torch.cat([g.flatten() for g in half])
    assert all(g.dtype == torch.float32 for g in half)  # master weights (and their grads) stay fp32
    assert not torch.equal(flat_full, flat_half)  # the forward really ran in bf16
    cosine = torch.nn.functional.cosine_similarity(flat_full, flat_half, dim=0)
    assert cosine > 0.99 and torch.isfinite(torch.tensor(metrics["loss/rl"]))
