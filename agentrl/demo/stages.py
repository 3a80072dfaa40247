"""The demo's evaluation and RL stages: vLLM engine + token-in/token-out agent loop over in-process tool_world.

Reward for the demo's RL is tool_world's verifiable reward (final-state check + required outputs, tau-bench style),
read from the trajectory (`env_reward`), plus K2's self-critique rubric reward with the policy as critic (forced
choice through the same vLLM engine, `EngineCritic`) at a small weight; truncated samples get the budget penalty
inside the trainer. Closed-loop critic refinement trains the critic on pairs whose verdict the verifiable reward
knows (`CriticRefinementLoss`), and the critic's held-out pairwise accuracy is tracked during RL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentrl.schemas.trajectory import Trajectory


def load_tasks(path: str | Path, limit: int) -> list[dict[str, Any]]:
    tasks = []
    with Path(path).open() as fh:
        for line in fh:
            if line.strip():
                tasks.append(json.loads(line))
            if len(tasks) >= limit:
                break
    return tasks


class EnvReward:
    """`RewardFn`: the environment's own verifiable reward; success = reward 1 on a finished episode."""

    def __call__(self, trajectories: Sequence[Trajectory]) -> Any:
        from agentrl.train.interfaces import RewardOutput

        rewards = [float(t.env_reward or 0.0) for t in trajectories]
        success = [
            r >= 1.0 - 1e-9 and t.status.value == "ok" for r, t in zip(rewards, trajectories, strict=True)
        ]
        return RewardOutput(rewards=rewards, success=success)


def build_rewards(
    engine: Any,
    tokenizer: Any,
    critic_cfg: Any,
    max_model_len: int,
    seed: int,
    critic_warm: Sequence[Any] = (),
) -> dict[str, Any]:
    """{"reward_fn", "aux_losses", "critic"}: env reward alone, or env + self-critique with critic refinement;
    `critic_warm`: critic examples the refinement buffer starts with (synth pairs), before any on-policy pair."""
    if not critic_cfg.enabled:
        return {"reward_fn": EnvReward(), "aux_losses": [], "critic": None}
    from agentrl.rewards.compose import ComposeConfig, TaskRewardSpec
    from agentrl.rewards.engine_critic import EngineCritic
    from agentrl.rewards.reward_fn import StackRewardFn
    from agentrl.rewards.self_critique import SelfCritiqueConfig
    from agentrl.rewards.stack import RewardsConfig, RewardStack
    from agentrl.train.aux_loss import CriticRefinementLoss

    critic = EngineCritic(engine, tokenizer, max_prompt_tokens=max_model_len - 1, verdict=critic_cfg.verdict)
    weights = {"env": 1.0}
    if critic_cfg.reward_weight > 0:
        weights["self_critique"] = critic_cfg.reward_weight
    compose = ComposeConfig(
        task_types={
            "tool_use": TaskRewardSpec(weights=weights, verifiable=["env"], subjective=["self_critique"])
        }
    )
    config = RewardsConfig(self_critique=SelfCritiqueConfig(prompt=critic_cfg.prompt), compose=compose)
    reward_fn = StackRewardFn(
        RewardStack(config, critic_fn=critic),
        critic_fn=critic,
        holdout_fraction=critic_cfg.holdout_fraction,
        max_heldout=critic_cfg.max_heldout,
        critic_eval_every=critic_cfg.eval_every,
        max_pairs_per_group=critic_cfg.max_pairs_per_group,
        seed=seed,
    )
    refine = CriticRefinementLoss(
        reward_fn.drain_critic_examples,
        tokenizer,
        beta=critic_cfg.refine_beta,
        batch_size=critic_cfg.refine_batch_size,
        max_tokens=max_model_len,
        buffer_size=critic_cfg.buffer_size,
        seed=seed,
        verdict_loss=critic_cfg.refine_loss,
        solo_steps=critic_cfg.refine_solo_steps,
    )
    refine.add(critic_warm)
    return {"reward_fn": reward_fn, "aux_losses": [refine], "critic": critic}


def ptx_records(path: str | Path, limit: int) -> list[dict[str, Any]]:
    """The first `limit` SFT records (`synth/trajectories.jsonl`), as they are: PTX keeps the policy near its SFT
    distribution (format, tool and argument names, copying) while RL moves it; a curated subset would also teach."""
    records = []
    with Path(path).open() as fh:
        for line in fh:
            if len(records) >= limit:
                break
            if line.strip():
                rec = json.loads(line)
                records.append({"messages": rec["messages"], "tools": rec.get("tools") or []})
    return records


def make_engine(checkpoint: str, max_model_len: int, seed: int) -> Any:
    from agentrl.engine.vllm_engine import VLLMEngine

    return VLLMEngine(checkpoint, max_model_len=max_model_len, seed=seed)


def run_eval(engine: Any, tokenizer: Any, tasks: list[dict[str, Any]], max_tokens: int) -> dict[str, Any]:
    from agentrl.eval.tool_use import evaluate_tool_use
    from agentrl.rollout.envs import LocalEnv
    from environments.tool_world.server import ToolWorldEnv

    summary, _ = evaluate_tool_use(engine, tokenizer, tasks, LocalEnv(ToolWorldEnv), max_tokens=max_tokens)
    return summary


class HeldoutEvaluator:
    """`Evaluator`: held-out success and tool-call validity through the engine, which holds the synced weights."""

    def __init__(self, engine: Any, tokenizer: Any, tasks: list[dict[str, Any]], max_tokens: int) -> None:
        self.engine, self.tokenizer, self.tasks, self.max_tokens = engine, tokenizer, tasks, max_tokens
        self.last: tuple[int, dict[str, Any]] | None = None
        """(step, full summary) of the latest evaluation."""

    def __call__(self, model: Any, step: int) -> dict[str, float]:
        summary = run_eval(self.engine, self.tokenizer, self.tasks, self.max_tokens)
        self.last = (step, summary)
        return {"success": summary["success"], "tool_call_validity": summary["tool_call_validity"]}


def run_rl(
    engine: Any,
    checkpoint: str,
    rl_tasks: list[dict[str, Any]],
    rl_config: Any,
    eval_tasks: list[dict[str, Any]] | None = None,
    eval_max_tokens: int = 384,
    critic_cfg: Any = None,
    max_model_len: int = 1024,
    ptx: list[dict[str, Any]] | None = None,
    critic_warm: Sequence[Any] = (),
) -> dict[str, Any]:
    """RL from `checkpoint`, rolling out with `engine` (weights synced after every update); `ptx`: SFT-format
    records for the PTX loss (used when `rl_config.ptx.beta > 0`); `critic_warm`: critic examples that start the
    refinement buffer."""
    from agentrl.rollout.agent_loop import AgentLoop, LoopConfig
    from agentrl.rollout.envs import LocalEnv
    from agentrl.train.agent_rollout import AgentLoopRollout, RLTask
    from agentrl.train.rl_loop import RLTrainer
    from agentrl.train.sync import EngineSync
    from environments.tool_world.server import ToolWorldEnv
    from model.checkpoint import load_checkpoint

    model, tokenizer = load_checkpoint(checkpoint)
    eval_fn = HeldoutEvaluator(engine, tokenizer, eval_tasks, eval_max_tokens) if eval_tasks else None
    env = LocalEnv(ToolWorldEnv)
    loop = AgentLoop(engine, tokenizer, LoopConfig(max_turns=8, max_context_tokens=1024))
    tasks = [RLTask(id=t["id"], task_type="tool_use", env="tool_world", spec=t) for t in rl_tasks]
    if critic_cfg is None:
        from agentrl.demo.config import DemoCriticConfig

        critic_cfg = DemoCriticConfig(enabled=False)
    rewards = build_rewards(engine, tokenizer, critic_cfg, max_model_len, rl_config.seed, critic_warm)
    ptx_examples = []
    if ptx and rl_config.ptx.beta > 0:
        from agentrl.train.ptx import ptx_examples_from_records

        ptx_examples = ptx_examples_from_records(ptx, tokenizer, max_model_len)
    trainer = RLTrainer(
        rl_config,
        model,
        tasks,
        AgentLoopRollout(loop, env_for=lambda _task: env),
        rewards["reward_fn"],
        rl_config.objective.build(),
        rl_config.optimizer.build(),
        pad_id=tokenizer.pad_token_id,
        weight_sync=EngineSync(engine),
        evaluator=eval_fn,
        ptx_examples=ptx_examples,
        resume=False,
        aux_losses=rewards["aux_losses"],
    )
    result = trainer.run()
    return {
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "model": model,
        "tokenizer": tokenizer,
        "reward_fn": rewards["reward_fn"],
        "critic": rewards["critic"],
        # the held-out summary of the final weights, when the loop's last evaluation was at its last step
        "final_eval": eval_fn.last[1]
        if eval_fn and eval_fn.last and eval_fn.last[0] == result.steps
        else None,
    }
