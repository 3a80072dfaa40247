"""A short real RL run on k2-tiny: every parameter that received gradient changed, metrics are finite, the report
renders; bad configs fail before any work."""

import json
import math
from pathlib import Path

import pytest
import torch

from agentrl.config.loader import load_config
from agentrl.errors import ConfigError
from agentrl.train.budget import RunBudgetConfig
from agentrl.train.rl_config import RLConfig
from agentrl.train.rl_loop import RLTrainer
from agentrl.train.sources import FixedPoolRollout, PrecomputedReward
from agentrl.train.sync import ModuleSync
from tests.train.helpers import PAD, pool_tasks, tiny_model
from tests.train.rl_worker import PTX

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path, **kw):
    base = {
        "run_dir": str(tmp_path / "run"),
        "steps": 3,
        "tasks_per_step": 3,
        "samples_per_task": 4,
        "temperature": {"kind": "linear", "start": 1.0, "end": 0.5, "steps": 3},
        "optimizer": {"muonclip": {"lr": 5e-3, "weight_decay": 0.0, "bias_update_rate": 0.0}},
        "ptx": {"beta": 0.1, "batch_size": 2},
        "tis_cap": 2.0,
        "routing": {"after_update": True},
        "budget": {"default": 64, "per_task": {"math": 16}, "penalty": -0.5},
        "metrics": {"progress": False},
    }
    return RLConfig.model_validate({**base, **kw})


class Evaluator:
    """Held-out 'evaluation': mean log-prob of a fixed sequence (real forward, no grad)."""

    def __call__(self, model, step):
        ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1).gather(
                -1, ids[0, 1:, None]
            )
        return {"fixed_seq_logprob": float(lp.mean())}


def test_short_rl_run_updates_every_parameter_and_logs_finite_metrics(tmp_path):
    cfg = _config(tmp_path, eval_every=2)
    model = tiny_model(seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    replica = tiny_model(seed=1)
    sync = ModuleSync(replica)
    # Record which experts ever receive a nonzero gradient. Experts can be routed tokens and still get none
    # legitimately: in the last MoE layer only positions whose next token is scored (generated or PTX-assistant
    # tokens) feed the loss; prompt and padding positions do not.
    got_grad = {}
    for name, p in model.named_parameters():
        if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            got_grad[name] = torch.zeros(p.shape[0], dtype=torch.bool)

            def hook(g, name=name):
                got_grad[name] |= (g != 0).flatten(1).any(1)

            p.register_hook(hook)
    trainer = RLTrainer(
        cfg,
        model,
        pool_tasks(6, logprobs=True),
        FixedPoolRollout(),
        PrecomputedReward(),
        cfg.objective.build(),
        cfg.optimizer.build(),
        pad_id=PAD,
        weight_sync=sync,
        evaluator=Evaluator(),
        ptx_examples=PTX,
    )
    result = trainer.run()
    assert result.steps == 3 and result.stop_reason == "completed"

    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n]) and p.requires_grad]
    assert unchanged == []
    # Routed experts are fused [E, ...] stacks: expert e must have moved iff it ever received a gradient.
    for name, p in model.named_parameters():
        if name in got_grad:
            moved = (p.detach() != before[name]).flatten(1).any(1)
            assert torch.equal(moved, got_grad[name]), (name, moved, got_grad[name])
            assert int(got_grad[name].sum()) >= 10, name  # most experts trained: the check is not vacuous
    assert sync.version == 3
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), replica.state_dict().values(), strict=True)
    )

    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss/rl" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    expected = [
        "loss/rl",
        "loss/ptx",
        "loss/total",
        "reward/mean",
        "reward/math",
        "success/tool_use",
        "temperature",
        "budget/truncation_rate",
        "budget/use",
        "qk_clip/max_logit",
        "qk_clip/heads_clipped",
        "moe/max_over_mean_load",
        "moe/dead_experts",
        "time/weight_sync_s",
        "gap/logprob_abs_max",
        "tis/seq_weight_mean",
        "routing/mismatch_score_vs_train",
        "routing/mismatch_after_update",
        "grad_norm",
        "run_budget/tokens",
    ]
    for key in expected:
        assert key in steps[-1], key
    for row in rows:
        for key, value in row.items():
            for v in value if isinstance(value, list) else [value]:
                assert math.isfinite(v), (row["step"], key, v)
    assert [r["temperature"] for r in steps] == pytest.approx([1.0, 5 / 6, 2 / 3])
    # The fixed pool has responses of 6..9 tokens after 8-token prompts: math (budget 16) gets truncated.
    assert steps[0]["budget/truncation_rate/math"] > 0 and steps[0]["budget/truncation_rate/tool_use"] == 0
    assert steps[0]["routing/mismatch_score_vs_train"] == 0.0  # same weights, same rows: identical routing
    assert any("eval/fixed_seq_logprob" in r for r in rows)
    assert 0 < steps[0]["gap/logprob_abs_mean"] < 1.0  # vs the pool's near-uniform "engine" logprobs
    report = tmp_path / "run" / "report" / "index.html"
    html = report.read_text()
    for fig in (
        "reward",
        "success",
        "temperature",
        "budget",
        "loss",
        "qk_clip",
        "expert_load",
        "weight_sync",
    ):
        assert f'src="{fig}.png"' in html
        assert (report.parent / f"{fig}.png").stat().st_size > 5000
    assert (tmp_path / "run" / "tb").is_dir() and any((tmp_path / "run" / "tb").iterdir())
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_run_budget_stops_cleanly_with_a_checkpoint_and_reason(tmp_path):
    cfg = _config(tmp_path, steps=10, run_budget=RunBudgetConfig(max_tokens=100), ptx={"beta": 0.0})
    trainer = RLTrainer(
        cfg,
        tiny_model(),
        pool_tasks(4),
        FixedPoolRollout(),
        PrecomputedReward(),
        cfg.objective.build(),
        lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3),
        pad_id=PAD,
    )
    result = trainer.run()
    # Each step trains 12 samples of 14..17 tokens (> 100), so the budget runs out after step 1.
    assert result.steps == 1
    assert "token budget used up" in result.stop_reason
    state = torch.load(tmp_path / "run" / "checkpoints" / "step-000001" / "state.pt", weights_only=False)
    assert state["step"] == 1 and state["run_budget"]["tokens"] > 100


def test_bad_configs_fail_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="objective.tau"):
        load_config(RLConfig, overrides=["objective.tau=-0.5"])
    with pytest.raises(ConfigError, match="objective.name"):
        load_config(RLConfig, overrides=["objective.name=reinforce++"])
    with pytest.raises(ConfigError, match="samples_per_task"):
        load_config(RLConfig, overrides=["samples_per_task=1"])
    calls = []

    def factory(model):
        calls.append(model)
        return torch.optim.AdamW(model.parameters())

    cfg = _config(tmp_path, budget={"default": 64, "per_task": {"math": 8}})  # prompts are 8 tokens
    with pytest.raises(ConfigError, match="budget 8 for task type 'math' is not above its longest prompt"):
        RLTrainer(
            cfg,
            tiny_model(),
            pool_tasks(4),
            FixedPoolRollout(),
            PrecomputedReward(),
            cfg.objective.build(),
            factory,
            pad_id=PAD,
        )
    assert calls == [] and not (tmp_path / "run").exists()


def test_shipped_config_loads():
    cfg = load_config(RLConfig, [ROOT / "configs" / "rl.yaml"], ["steps=3"])
    assert cfg.objective.name == "k2" and cfg.temperature.kind == "linear" and cfg.steps == 3


class _Flaky(FixedPoolRollout):
    """A fixed pool whose first sample fails and second is left unfinished (partial), as a real agent loop may."""

    def __call__(self, request):
        trajs = super().__call__(request)
        trajs[0] = trajs[0].model_copy(update={"status": "failed", "failure_reason": "env timed out"})
        trajs[1] = trajs[1].model_copy(update={"status": "partial"})
        return trajs


def test_failed_and_partial_rollouts_are_counted_not_trained(tmp_path):
    cfg = _config(tmp_path, steps=1, ptx={"beta": 0.0}, metrics={"progress": False, "report": False})
    seen = []

    class Reward(PrecomputedReward):
        def __call__(self, trajectories):
            seen.extend(t.status.value for t in trajectories)
            return super().__call__(trajectories)

    trainer = RLTrainer(
        cfg, tiny_model(), pool_tasks(4), _Flaky(), Reward(), cfg.objective.build(),
        lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3), pad_id=PAD,
    )  # fmt: skip
    result = trainer.run()
    assert len(seen) == 10 and "failed" not in seen and "partial" not in seen
    assert result.last_metrics["rollout/failed_frac"] == pytest.approx(1 / 12)
    assert result.last_metrics["rollout/partial_frac"] == pytest.approx(1 / 12)
