"""The trainer learns: k2-tiny sampled in-process (TorchSamplerRollout) on a verifiable toy task improves fast."""

import pytest
import torch

from agentrl.train.metrics import read_jsonl
from agentrl.train.rl_config import RLConfig
from agentrl.train.rl_loop import RLTrainer
from agentrl.train.sync import ModuleSync
from agentrl.train.torch_rollout import PromptTask, TokenSetReward, TorchSamplerRollout
from tests.train.helpers import PAD, tiny_model


@pytest.mark.slow
def test_k2_objective_raises_success_on_a_verifiable_task(tmp_path):
    g = torch.Generator().manual_seed(0)
    tasks = [
        PromptTask(id=f"p{i}", prompt=torch.randint(3, 256, (6,), generator=g).tolist()) for i in range(8)
    ]
    cfg = RLConfig.model_validate(
        {
            "run_dir": str(tmp_path),
            "steps": 10,
            "tasks_per_step": 4,
            "samples_per_task": 4,
            "temperature": {"kind": "constant", "start": 1.0},
            "budget": {"default": 14, "penalty": 0.0},
            "optimizer": {"muonclip": {"lr": 2e-2, "weight_decay": 0.0}},
            "metrics": {"progress": False, "tensorboard": False, "report": False},
        }
    )
    model, replica = tiny_model(), tiny_model(seed=5)
    sync = ModuleSync(replica)  # the trainer syncs the replica before the first rollout
    reward = TokenSetReward(lambda tok: tok < 32)  # 1/8 of the vocabulary: ~0.125 at random init
    trainer = RLTrainer(
        cfg, model, tasks, TorchSamplerRollout(replica), reward, cfg.objective.build(),
        cfg.optimizer.build(), pad_id=PAD, weight_sync=sync,
    )  # fmt: skip
    trainer.run()
    rows = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "reward/mean" in r]
    rewards = [r["reward/mean"] for r in rows]
    assert rewards[0] < 0.3
    assert sum(rewards[-3:]) / 3 > 0.6, rewards
    assert rows[-1]["success/mean"] > rows[0]["success/mean"]
    # Sampler logprobs (KV-cached, log_softmax(logits / T)) equal the trainer's scores: the temperature rule holds.
    assert max(r["gap/logprob_abs_max"] for r in rows) < 1e-4
