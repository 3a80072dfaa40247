"""`agentrl bench rl`: agentrl's RL loop vs TRL's GRPOTrainer, same tiny model, task, seed and samples per step.

Setup (both sides): k2-tiny with 2 layers (1 dense + one 16-expert MoE layer) over a 512-token BPE trained here,
the same initial weights, 8 prompts, 4 prompts x 4 samples per step, at most 8 new tokens at T = 1, and a
verifiable toy reward: the fraction of generated tokens whose id is below 128 (1/4 of the vocabulary; ~0.25 at
init). Both sample with HF-style decoding in process on CPU (TRL: `model.generate`; agentrl:
`TorchSamplerRollout`). Each side uses its own default algorithm and optimizer: agentrl the K2 objective with
MuonClip (lr 2e-2), TRL GRPO (DAPO loss) with AdamW (lr 1e-3; its default 1e-6 learns nothing in N steps).

Step time is training wall time / steps (generation included). Success after N steps is measured the same way for
both final models: 8 samples per prompt at T = 1 with a fixed seed, success = reward >= 0.5.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

PROMPTS = [
    "list the files",
    "what is the weather",
    "book a table for two",
    "check my balance",
    "turn on the lights",
    "find a doctor",
    "order a pizza",
    "send the report",
]
MAX_NEW = 8
K = 4
TASKS_PER_STEP = 4
TARGET = 128


def _success(model: Any, prompts: list[list[int]], stop_ids: list[int]) -> float:
    import torch

    from agentrl.train.interfaces import RolloutRequest
    from agentrl.train.torch_rollout import PromptTask, TokenSetReward, TorchSamplerRollout

    tasks = [PromptTask(id=f"e{i}", prompt=p) for i, p in enumerate(prompts)]
    sampler = TorchSamplerRollout(model, stop_ids=stop_ids, max_new_tokens=MAX_NEW)
    torch.manual_seed(123)
    trajs = sampler(RolloutRequest(0, 0, tasks, 8, 1.0, seed=999, default_budget=10_000))
    out = TokenSetReward(lambda tok: tok < TARGET)(trajs)
    return sum(out.success) / len(out.success)


def _agentrl(
    model: Any, prompts: list[list[int]], stop_ids: list[int], steps: int, pad_id: int, run_dir: str
) -> float:
    import copy

    from agentrl.train.rl_config import RLConfig
    from agentrl.train.rl_loop import RLTrainer
    from agentrl.train.sync import ModuleSync
    from agentrl.train.torch_rollout import PromptTask, TokenSetReward, TorchSamplerRollout

    cfg = RLConfig.model_validate(
        {
            "run_dir": run_dir,
            "steps": steps,
            "tasks_per_step": TASKS_PER_STEP,
            "samples_per_task": K,
            "temperature": {"kind": "constant", "start": 1.0},
            "budget": {"default": 10_000, "penalty": 0.0},
            "optimizer": {"muonclip": {"lr": 2e-2, "weight_decay": 0.0}},
            "routing": {"measure": False},
            "checkpoint": {"every": steps},  # TRL saves nothing mid-run either (save_strategy="no")
            "metrics": {"progress": False, "tensorboard": False, "report": False},
        }
    )
    replica = copy.deepcopy(model)
    tasks = [PromptTask(id=f"p{i}", prompt=p) for i, p in enumerate(prompts)]
    trainer = RLTrainer(
        cfg,
        model,
        tasks,
        TorchSamplerRollout(replica, stop_ids=stop_ids, max_new_tokens=MAX_NEW),
        TokenSetReward(lambda tok: tok < TARGET),
        cfg.objective.build(),
        cfg.optimizer.build(),
        pad_id=pad_id,
        weight_sync=ModuleSync(replica),
        resume=False,
    )
    t0 = time.perf_counter()
    trainer.run()
    return (time.perf_counter() - t0) / steps


def _trl(model: Any, tokenizer: Any, steps: int, out_dir: str) -> float:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    def reward(completions: list[Any], completion_ids: list[list[int]], **_: Any) -> list[float]:
        return [sum(t < TARGET for t in ids) / max(len(ids), 1) for ids in completion_ids]

    args = GRPOConfig(
        output_dir=out_dir,
        use_cpu=True,
        max_steps=steps,
        per_device_train_batch_size=TASKS_PER_STEP * K,
        num_generations=K,
        max_completion_length=MAX_NEW,
        temperature=1.0,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
        dataloader_num_workers=0,
    )
    data = Dataset.from_list([{"prompt": p} for p in PROMPTS])
    trainer = GRPOTrainer(
        model=model, reward_funcs=reward, args=args, train_dataset=data, processing_class=tokenizer
    )
    t0 = time.perf_counter()
    trainer.train()
    return (time.perf_counter() - t0) / steps


def run(quick: bool = False) -> dict[str, Any]:
    import copy

    import torch

    from model.checkpoint import build_model
    from model.special_tokens import IM_END
    from model.tokenizer import default_corpus, train_tokenizer

    steps = 4 if quick else 12
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same for both sides; tiny ops gain nothing from threads on shared cores
    try:
        tokenizer = train_tokenizer(default_corpus(), vocab_size=512)
        base = build_model("k2-tiny", tokenizer, seed=0, num_hidden_layers=2, vocab_size=len(tokenizer))
        prompts = [tokenizer.encode(p, add_special_tokens=False) for p in PROMPTS]
        stop_ids = [tokenizer.convert_tokens_to_ids(IM_END)]
        success_init = _success(base, prompts, stop_ids)
        with tempfile.TemporaryDirectory() as tmp:
            ours = copy.deepcopy(base)
            agentrl_step_s = _agentrl(
                ours, prompts, stop_ids, steps, tokenizer.pad_token_id, str(Path(tmp) / "a")
            )
            theirs = copy.deepcopy(base)
            trl_step_s = _trl(theirs, tokenizer, steps, str(Path(tmp) / "t"))
        return {
            "steps": steps,
            "agentrl_step_s": round(agentrl_step_s, 4),
            "trl_step_s": round(trl_step_s, 4),
            "step_time_ratio": round(agentrl_step_s / trl_step_s, 3),
            "success_init": round(success_init, 4),
            "agentrl_success": round(_success(ours, prompts, stop_ids), 4),
            "trl_success": round(_success(theirs.to("cpu"), prompts, stop_ids), 4),
            "samples_per_step": TASKS_PER_STEP * K,
        }
    finally:
        torch.set_num_threads(threads)
